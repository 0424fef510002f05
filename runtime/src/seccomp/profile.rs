//! Seccomp profiles as container engines write them (Docker's format: OCI fields plus
//! `archMap` and per-rule `includes`/`excludes` on capabilities, architectures and the
//! kernel version), resolved for one container into an OCI `LinuxSeccomp`.
//!
//! [`Profile::runtime_default`] is Kubernetes' `RuntimeDefault`: an allowlist of the
//! syscalls container engines allow by default, written by peapod as data in
//! `runtime_default.json`, with the capability-conditional extras (e.g. `mount` and
//! `unshare` only with CAP_SYS_ADMIN). A plain OCI `linux.seccomp` document is a valid
//! profile too, so `Localhost` profiles may be written in either form.

use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompFilterFlag, LinuxSyscall,
};
use serde::{Deserialize, Serialize};

/// The `RuntimeDefault` profile's data.
const RUNTIME_DEFAULT: &str = include_str!("runtime_default.json");

/// Why a profile could not be read.
#[derive(Debug, thiserror::Error)]
#[error("seccomp profile: {0}")]
pub struct ProfileError(String);

/// A seccomp profile before it is resolved for a container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Profile {
    /// What happens to a syscall no rule matches.
    pub default_action: LinuxSeccompAction,
    /// The errno of a default `SCMP_ACT_ERRNO`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_errno_ret: Option<u32>,
    /// Architectures to cover, when `archMap` is not given.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub architectures: Vec<Arch>,
    /// For each native architecture, the others its processes may use (e.g. x86 on x86_64).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub arch_map: Vec<ArchMap>,
    /// The rules.
    #[serde(default)]
    pub syscalls: Vec<SyscallRule>,
    /// `SECCOMP_FILTER_FLAG_*` flags.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub flags: Vec<LinuxSeccompFilterFlag>,
}

/// One `archMap` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArchMap {
    /// The native architecture.
    pub architecture: Arch,
    /// The architectures added on it.
    #[serde(default)]
    pub sub_architectures: Vec<Arch>,
}

/// One rule of a profile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SyscallRule {
    /// The syscalls.
    #[serde(default)]
    pub names: Vec<String>,
    /// A single syscall (the older form of `names`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// What to do.
    pub action: LinuxSeccompAction,
    /// The errno of `SCMP_ACT_ERRNO`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errno_ret: Option<u32>,
    /// Argument conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<LinuxSeccompArg>,
    /// The rule applies only when all of these hold.
    #[serde(default)]
    pub includes: Conditions,
    /// The rule does not apply when any of these holds.
    #[serde(default)]
    pub excludes: Conditions,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

/// When a rule applies.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Conditions {
    /// Capabilities (`CAP_*`) of the container's bounding set.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub caps: Vec<String>,
    /// Architectures by Go's names (`amd64`, `arm64`, `s390x`, ...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub arches: Vec<String>,
    /// A kernel version, `major.minor`, the host must have at least.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_kernel: Option<String>,
}

/// What a profile is resolved against: the container's capabilities and the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target<'a> {
    /// The container's bounding capabilities (`CAP_*`).
    pub capabilities: &'a [String],
    /// The host architecture by Go's name (see [`host_arch`]).
    pub arch: &'a str,
    /// The host kernel's (major, minor).
    pub kernel: (u32, u32),
}

impl Profile {
    /// Kubernetes' `RuntimeDefault` profile.
    pub fn runtime_default() -> Profile {
        serde_json::from_str(RUNTIME_DEFAULT).expect("runtime_default.json is a valid profile")
    }

    /// Read a profile from JSON (e.g. a `Localhost` profile file).
    pub fn from_json(text: &str) -> Result<Profile, ProfileError> {
        let de = &mut serde_json::Deserializer::from_str(text);
        serde_path_to_error::deserialize(de).map_err(|e| ProfileError(e.to_string()))
    }

    /// The OCI filter for a container: the rules that apply to `target`, and the
    /// architectures its native architecture maps to.
    pub fn resolve(&self, target: &Target) -> LinuxSeccomp {
        let native = oci_arch(target.arch);
        let arches: Vec<Arch> = if self.arch_map.is_empty() {
            self.architectures.clone()
        } else {
            self.arch_map
                .iter()
                .filter(|m| Some(m.architecture) == native)
                .flat_map(|m| std::iter::once(m.architecture).chain(m.sub_architectures.clone()))
                .collect()
        };
        let syscalls: Vec<LinuxSyscall> = self
            .syscalls
            .iter()
            .filter(|rule| applies(rule, target))
            .map(|rule| {
                let mut names = rule.names.clone();
                names.extend(rule.name.clone());
                let mut out = LinuxSyscall::default();
                out.set_names(names);
                out.set_action(rule.action);
                out.set_errno_ret(rule.errno_ret);
                out.set_args((!rule.args.is_empty()).then(|| rule.args.clone()));
                out
            })
            .collect();
        let mut seccomp = LinuxSeccomp::default();
        seccomp.set_default_action(self.default_action);
        seccomp.set_default_errno_ret(self.default_errno_ret);
        seccomp.set_architectures((!arches.is_empty()).then_some(arches));
        seccomp.set_flags((!self.flags.is_empty()).then(|| self.flags.clone()));
        seccomp.set_syscalls(Some(syscalls));
        seccomp
    }
}

/// Whether `rule` applies: all its `includes` hold and none of its `excludes` does.
fn applies(rule: &SyscallRule, target: &Target) -> bool {
    let has_cap = |c: &String| target.capabilities.iter().any(|have| have == c);
    let inc = &rule.includes;
    let included = inc.caps.iter().all(has_cap)
        && (inc.arches.is_empty() || inc.arches.iter().any(|a| a == target.arch))
        && inc
            .min_kernel
            .as_deref()
            .is_none_or(|min| parse_kernel(min).is_some_and(|min| target.kernel >= min));
    let exc = &rule.excludes;
    let excluded = exc.caps.iter().any(has_cap)
        || exc.arches.iter().any(|a| a == target.arch)
        || exc
            .min_kernel
            .as_deref()
            .and_then(parse_kernel)
            .is_some_and(|min| target.kernel >= min);
    included && !excluded
}

/// `major.minor[.patch][-extra]` → (major, minor).
pub fn parse_kernel(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(['.', '-', '+']);
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// The running kernel's (major, minor), from `uname`.
pub fn host_kernel() -> (u32, u32) {
    nix::sys::utsname::uname()
        .ok()
        .and_then(|u| parse_kernel(&u.release().to_string_lossy()))
        .unwrap_or((0, 0))
}

/// The host architecture by Go's name, as profiles spell architectures.
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "x86" => "386",
        "aarch64" => "arm64",
        "arm" => "arm",
        "powerpc64" => "ppc64le",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        "mips64" => "mips64le",
        other => other,
    }
}

/// The libseccomp architecture of a Go architecture name.
fn oci_arch(go: &str) -> Option<Arch> {
    Some(match go {
        "amd64" => Arch::ScmpArchX86_64,
        "386" => Arch::ScmpArchX86,
        "arm64" => Arch::ScmpArchAarch64,
        "arm" => Arch::ScmpArchArm,
        "ppc64le" => Arch::ScmpArchPpc64le,
        "s390x" => Arch::ScmpArchS390x,
        "riscv64" => Arch::ScmpArchRiscv64,
        "mips64le" => Arch::ScmpArchMipsel64,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names_with(seccomp: &LinuxSeccomp, action: LinuxSeccompAction) -> Vec<String> {
        seccomp
            .syscalls()
            .iter()
            .flatten()
            .filter(|s| s.action() == action && s.args().is_none())
            .flat_map(|s| s.names().clone())
            .collect()
    }

    fn target(caps: &[String]) -> Target<'_> {
        Target {
            capabilities: caps,
            arch: "amd64",
            kernel: (6, 1),
        }
    }

    #[test]
    fn runtime_default_denies_namespaces_and_mounts_without_sys_admin() {
        let caps = vec!["CAP_CHOWN".to_string(), "CAP_SYS_CHROOT".to_string()];
        let s = Profile::runtime_default().resolve(&target(&caps));
        assert_eq!(s.default_action(), LinuxSeccompAction::ScmpActErrno);
        assert_eq!(s.default_errno_ret(), Some(1));
        let allowed = names_with(&s, LinuxSeccompAction::ScmpActAllow);
        for name in ["read", "execve", "ptrace", "arch_prctl", "chroot", "setuid"] {
            assert!(
                allowed.contains(&name.to_string()),
                "{name} should be allowed"
            );
        }
        for name in [
            "mount",
            "unshare",
            "setns",
            "reboot",
            "init_module",
            "cacheflush",
        ] {
            assert!(
                !allowed.contains(&name.to_string()),
                "{name} should be denied"
            );
        }
        let clone3 = s
            .syscalls()
            .iter()
            .flatten()
            .find(|r| r.names() == &["clone3"])
            .unwrap();
        assert_eq!(clone3.errno_ret(), Some(libc::ENOSYS as u32));
        assert_eq!(
            s.architectures().as_deref(),
            Some(&[Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32][..])
        );
    }

    #[test]
    fn capabilities_add_their_syscalls() {
        let caps = vec!["CAP_SYS_ADMIN".to_string(), "CAP_SYS_TIME".to_string()];
        let s = Profile::runtime_default().resolve(&target(&caps));
        let allowed = names_with(&s, LinuxSeccompAction::ScmpActAllow);
        for name in ["mount", "unshare", "clone", "clone3", "settimeofday"] {
            assert!(
                allowed.contains(&name.to_string()),
                "{name} should be allowed"
            );
        }
        assert!(!s
            .syscalls()
            .iter()
            .flatten()
            .any(|r| r.action() == LinuxSeccompAction::ScmpActErrno));
    }

    #[test]
    fn kernel_and_arch_conditions() {
        let old = Target {
            capabilities: &[],
            arch: "arm64",
            kernel: (4, 4),
        };
        let s = Profile::runtime_default().resolve(&old);
        let allowed = names_with(&s, LinuxSeccompAction::ScmpActAllow);
        assert!(!allowed.contains(&"ptrace".to_string()));
        assert!(allowed.contains(&"cacheflush".to_string()));
        assert!(!allowed.contains(&"arch_prctl".to_string()));
        assert_eq!(parse_kernel("6.1.0-18-amd64"), Some((6, 1)));
        assert_eq!(parse_kernel("x"), None);
    }

    #[test]
    fn a_plain_oci_document_is_a_profile() {
        let p = Profile::from_json(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","architectures":["SCMP_ARCH_X86_64"],
                "syscalls":[{"names":["mkdir"],"action":"SCMP_ACT_ERRNO","errnoRet":1}]}"#,
        )
        .unwrap();
        let s = p.resolve(&target(&[]));
        assert_eq!(
            s.architectures().as_deref(),
            Some(&[Arch::ScmpArchX86_64][..])
        );
        assert_eq!(s.syscalls().as_ref().unwrap()[0].names(), &["mkdir"]);
        let err = Profile::from_json(r#"{"defaultAction":"SCMP_ACT_NOPE"}"#).unwrap_err();
        assert!(err.to_string().contains("defaultAction"), "{err}");
    }

    #[test]
    fn the_default_profile_compiles_here() {
        let caps: Vec<String> = crate::capability::known();
        for caps in [Vec::new(), caps] {
            let s = Profile::runtime_default().resolve(&Target {
                capabilities: &caps,
                arch: host_arch(),
                kernel: host_kernel(),
            });
            super::super::Filter::compile(&s).unwrap();
        }
    }
}
