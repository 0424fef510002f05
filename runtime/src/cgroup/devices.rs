//! The device allowlist: which device nodes a container may create (`m`), read and
//! write, as `linux.resources.devices` rules in order.
//!
//! runc appends two things to the config's rules, and so do we: an allow rule for each
//! `linux.devices` node, and its default allowlist (the standard /dev nodes, ptys,
//! mknod of any device), so a config that denies everything still gets a usable /dev.
//!
//! cgroup v1 takes the rules as lines in `devices.allow`/`devices.deny`; cgroup v2 takes them
//! as an eBPF program ([`super::device_filter`]) attached to the container's directory.

use std::path::Path;

use oci_spec::runtime::{LinuxDevice, LinuxDeviceCgroup, LinuxDeviceType, LinuxResources};

use super::file::write;
use super::CgroupError;

/// One allow or deny rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRule {
    /// Allow (true) or deny.
    pub allow: bool,
    /// `a` (all), `c` (char) or `b` (block).
    pub kind: char,
    /// Major number; None: any.
    pub major: Option<i64>,
    /// Minor number; None: any.
    pub minor: Option<i64>,
    /// Some of `r`, `w`, `m`.
    pub access: String,
}

impl DeviceRule {
    /// The line cgroup v1 takes in `devices.allow` / `devices.deny`.
    pub fn v1_line(&self) -> String {
        let num = |n: Option<i64>| n.map_or("*".to_string(), |n| n.to_string());
        format!(
            "{} {}:{} {}",
            self.kind,
            num(self.major),
            num(self.minor),
            self.access
        )
    }
}

/// runc's default allowlist: (kind, major, minor, access).
const DEFAULTS: &[(char, Option<i64>, Option<i64>, &str)] = &[
    ('c', None, None, "m"),
    ('b', None, None, "m"),
    ('c', Some(1), Some(3), "rwm"),    // /dev/null
    ('c', Some(1), Some(8), "rwm"),    // /dev/random
    ('c', Some(1), Some(7), "rwm"),    // /dev/full
    ('c', Some(5), Some(0), "rwm"),    // /dev/tty
    ('c', Some(1), Some(5), "rwm"),    // /dev/zero
    ('c', Some(1), Some(9), "rwm"),    // /dev/urandom
    ('c', Some(5), Some(1), "rwm"),    // /dev/console
    ('c', Some(136), None, "rwm"),     // /dev/pts/*
    ('c', Some(5), Some(2), "rwm"),    // /dev/ptmx
    ('c', Some(10), Some(200), "rwm"), // /dev/net/tun
];

fn kind_of(typ: LinuxDeviceType) -> Option<char> {
    match typ {
        LinuxDeviceType::A => Some('a'),
        LinuxDeviceType::C | LinuxDeviceType::U => Some('c'),
        LinuxDeviceType::B => Some('b'),
        // FIFOs are not devices to the device controller.
        LinuxDeviceType::P => None,
    }
}

fn access(field: &'static str, access: Option<&str>) -> Result<String, CgroupError> {
    let access = access.filter(|a| !a.is_empty()).unwrap_or("rwm");
    if access.chars().all(|c| matches!(c, 'r' | 'w' | 'm')) {
        Ok(access.to_string())
    } else {
        Err(CgroupError::InvalidValue {
            field,
            value: access.to_string(),
            reason: "device access is made of r, w and m",
        })
    }
}

/// `resources` with an allow rule added for each `linux.devices` node.
pub fn with_device_nodes(
    resources: Option<&LinuxResources>,
    devices: &[LinuxDevice],
) -> LinuxResources {
    let mut resources = resources.cloned().unwrap_or_default();
    if devices.is_empty() {
        return resources;
    }
    let mut rules = resources.devices().clone().unwrap_or_default();
    for device in devices {
        let mut rule = LinuxDeviceCgroup::default();
        rule.set_allow(true);
        rule.set_typ(Some(device.typ()));
        rule.set_major(Some(device.major()));
        rule.set_minor(Some(device.minor()));
        rule.set_access(Some("rwm".into()));
        rules.push(rule);
    }
    resources.set_devices(Some(rules));
    resources
}

/// The container's rules: the config's (with its `linux.devices` nodes, see
/// [`with_device_nodes`]), then the defaults.
pub fn rules(config: &[LinuxDeviceCgroup]) -> Result<Vec<DeviceRule>, CgroupError> {
    let mut out = Vec::new();
    for rule in config {
        let Some(kind) = kind_of(rule.typ().unwrap_or(LinuxDeviceType::A)) else {
            continue;
        };
        out.push(DeviceRule {
            allow: rule.allow(),
            kind,
            major: rule.major(),
            minor: rule.minor(),
            access: access("linux.resources.devices[].access", rule.access().as_deref())?,
        });
    }
    for &(kind, major, minor, access) in DEFAULTS {
        out.push(DeviceRule {
            allow: true,
            kind,
            major,
            minor,
            access: access.to_string(),
        });
    }
    check_no_holes(&out)?;
    Ok(out)
}

/// Refuse a rule that narrows an earlier wildcard rule of the opposite kind (e.g. allow
/// `b *:* rwm`, then deny `b 7:1 rwm`): cgroup v1 keeps a list of exact exceptions and
/// silently ignores such a rule, so the container would get access the config denies. runc
/// refuses these too. The v2 filter would honour them, but the two must agree.
fn check_no_holes(rules: &[DeviceRule]) -> Result<(), CgroupError> {
    use std::collections::HashMap;
    // The v1 state: the default (allow or deny) and the exceptions to it with their access.
    let mut default_allow = false;
    let mut exceptions: HashMap<(char, Option<i64>, Option<i64>), String> = HashMap::new();
    for rule in rules {
        if rule.kind == 'a' {
            default_allow = rule.allow;
            exceptions.clear();
            continue;
        }
        let key = (rule.kind, rule.major, rule.minor);
        if rule.allow != default_allow {
            let entry = exceptions.entry(key).or_default();
            for c in rule.access.chars() {
                if !entry.contains(c) {
                    entry.push(c);
                }
            }
            continue;
        }
        // This rule removes access from the exceptions: only an exact one is touched.
        let wider = [
            (rule.kind, None, rule.minor),
            (rule.kind, rule.major, None),
            (rule.kind, None, None),
        ];
        for wide in wider.into_iter().filter(|w| *w != key) {
            let Some(access) = exceptions.get(&wide) else {
                continue;
            };
            if access.chars().any(|c| rule.access.contains(c)) {
                let wide = DeviceRule {
                    allow: !rule.allow,
                    kind: wide.0,
                    major: wide.1,
                    minor: wide.2,
                    access: access.clone(),
                };
                return Err(CgroupError::Unsupported {
                    field: "devices",
                    reason: format!(
                        "the rule {} {:?} cannot narrow the earlier wildcard rule {} {:?}: \
                         the devices cgroup would ignore it (list the allowed devices instead)",
                        if rule.allow { "allow" } else { "deny" },
                        rule.v1_line(),
                        if wide.allow { "allow" } else { "deny" },
                        wide.v1_line(),
                    ),
                });
            }
        }
        if let Some(access) = exceptions.get_mut(&key) {
            access.retain(|c| !rule.access.contains(c));
            if access.is_empty() {
                exceptions.remove(&key);
            }
        }
    }
    Ok(())
}

/// Write the rules, in order, into a v1 devices cgroup/// Write the rules, in order, into a v1 devices cgroup: the kernel applies each to
/// the list the previous ones left, so the order of the config is kept.
pub fn apply_v1(dir: &Path, rules: &[DeviceRule]) -> Result<(), CgroupError> {
    for rule in rules {
        let file = if rule.allow {
            "devices.allow"
        } else {
            "devices.deny"
        };
        write(dir, file, &rule.v1_line())?;
    }
    Ok(())
}

/// Put the rules on a cgroup v2 directory as a device filter program (see
/// [`super::device_filter`]), beside any filter already there: all of them must allow an
/// access. The program stays attached until the cgroup is removed.
pub fn apply_v2(dir: &Path, rules: &[DeviceRule]) -> Result<(), CgroupError> {
    let program = super::device_filter::program(rules)?;
    super::bpf::DeviceProgram::load(&program)?.attach(dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{LinuxDeviceBuilder, LinuxDeviceCgroupBuilder, LinuxResourcesBuilder};

    #[test]
    fn config_rules_come_first_then_devices_then_defaults() {
        let deny_all = LinuxDeviceCgroupBuilder::default()
            .allow(false)
            .access("rwm")
            .build()
            .unwrap();
        let fuse = LinuxDeviceBuilder::default()
            .path("/dev/fuse")
            .typ(LinuxDeviceType::C)
            .major(10)
            .minor(229)
            .build()
            .unwrap();
        let resources = LinuxResourcesBuilder::default()
            .devices(vec![deny_all])
            .build()
            .unwrap();
        let resources = with_device_nodes(Some(&resources), &[fuse]);
        let rules = rules(resources.devices().as_ref().unwrap()).unwrap();
        assert_eq!(rules[0].v1_line(), "a *:* rwm");
        assert!(!rules[0].allow);
        assert_eq!(rules[1].v1_line(), "c 10:229 rwm");
        assert_eq!(rules[2].v1_line(), "c *:* m");
        assert!(rules.iter().any(|r| r.v1_line() == "c 136:* rwm"));
        assert_eq!(rules.len(), 2 + DEFAULTS.len());
    }

    #[test]
    fn a_rule_that_narrows_an_earlier_wildcard_is_refused() {
        let rule = |allow: bool, typ, major: Option<i64>, minor: Option<i64>, access: &str| {
            let mut b = LinuxDeviceCgroupBuilder::default()
                .allow(allow)
                .typ(typ)
                .access(access);
            if let Some(m) = major {
                b = b.major(m);
            }
            if let Some(m) = minor {
                b = b.minor(m);
            }
            b.build().unwrap()
        };
        let (a, b) = (LinuxDeviceType::A, LinuxDeviceType::B);
        let hole = [
            rule(false, a, None, None, "rwm"),
            rule(true, b, None, None, "rwm"),
            rule(false, b, Some(7), Some(1), "r"),
        ];
        let err = rules(&hole).unwrap_err().to_string();
        assert!(err.contains("\"b 7:1 r\" cannot narrow"), "{err}");
        assert!(err.contains("allow \"b *:* rwm\""), "{err}");
        // Exceptions in a deny-by-default list, or to an allow-all one, are fine, and so is
        // taking back exactly what was given.
        let fine = [
            [
                rule(true, a, None, None, "rwm"),
                rule(false, b, Some(7), Some(1), "rwm"),
                rule(false, b, Some(7), None, "rwm"),
            ],
            [
                rule(false, a, None, None, "rwm"),
                rule(true, b, Some(7), None, "rwm"),
                rule(false, b, Some(7), None, "w"),
            ],
        ];
        for case in fine {
            rules(&case).unwrap();
        }
        // No access left in the wildcard once it was taken back: no hole then.
        let taken_back = [
            rule(false, a, None, None, "rwm"),
            rule(true, b, None, None, "r"),
            rule(false, b, None, None, "r"),
            rule(false, b, Some(7), Some(1), "r"),
        ];
        rules(&taken_back).unwrap();
    }

    #[test]
    fn bad_access_is_refused() {
        let rule = LinuxDeviceCgroupBuilder::default()
            .allow(true)
            .access("rwx")
            .build()
            .unwrap();
        let err = rules(&[rule]).unwrap_err().to_string();
        assert!(err.contains("rwx"), "{err}");
    }

    #[test]
    fn rules_are_written_in_order() {
        let dir = tempfile::tempdir().unwrap();
        for f in ["devices.allow", "devices.deny"] {
            std::fs::write(dir.path().join(f), "").unwrap();
        }
        let rules = rules(&[]).unwrap();
        apply_v1(dir.path(), &rules[..1]).unwrap();
        let allow = std::fs::read_to_string(dir.path().join("devices.allow")).unwrap();
        assert_eq!(allow, "c *:* m");
    }
}
