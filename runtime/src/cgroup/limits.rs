//! The `linux.resources` a container's cgroup enforces: validated and converted, without I/O.
//!
//! Values keep the OCI conventions (0: unset, -1: unlimited) and runc's rules; the
//! conversions cgroup v2 needs (shares to weight, memory+swap to swap) live here as pure
//! functions so they are tested without a cgroup filesystem.

use cgroups_rs::fs::MaxValue;
use oci_spec::runtime::{LinuxRdma, LinuxResources};

use super::blkio::BlockIo;
use super::hierarchy::Version;
use super::hugetlb::HugePageLimit;
use super::unified::Unified;
use super::CgroupError;

/// The kernel's bounds on cgroup v1 `cpu.shares`.
const SHARES: std::ops::RangeInclusive<u64> = 2..=262_144;
/// The kernel's bounds on a CFS period, in microseconds (1 ms to 1 s).
const PERIOD_US: std::ops::RangeInclusive<u64> = 1_000..=1_000_000;
/// The kernel's smallest CFS quota, in microseconds.
const MIN_QUOTA_US: i64 = 1_000;

/// Memory limits in bytes. 0: unset (leave the kernel's value); -1: unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Memory {
    /// Hard limit (`memory.limit`).
    pub limit: i64,
    /// Soft limit / protection (`memory.reservation`).
    pub reservation: i64,
    /// Memory plus swap (`memory.swap`), as OCI and cgroup v1 count it.
    pub swap: i64,
    /// How eagerly the kernel swaps the cgroup's pages, 0-100 (v1 only).
    pub swappiness: Option<u64>,
    /// Pause instead of OOM-killing when the limit is hit (v1 only).
    pub disable_oom_killer: bool,
    /// Kernel TCP buffer limit (`memory.kmem.tcp.limit_in_bytes`, v1 only); 0: unset.
    pub kernel_tcp: i64,
}

impl Memory {
    /// Whether anything is to be written.
    pub fn is_set(&self) -> bool {
        self.limit != 0
            || self.reservation != 0
            || self.swap != 0
            || self.swappiness.is_some()
            || self.disable_oom_killer
            || self.kernel_tcp != 0
    }
}

/// CPU limits. 0 and `None`: unset.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cpu {
    /// Relative weight, in cgroup v1 shares (`cpu.shares`).
    pub shares: u64,
    /// CFS quota in microseconds per period; -1: unlimited.
    pub quota: i64,
    /// CFS period in microseconds.
    pub period: u64,
    /// CPUs the container may run on (`0-3,6`).
    pub cpus: Option<String>,
    /// Memory nodes the container may use.
    pub mems: Option<String>,
}

impl Cpu {
    /// Whether the cpu controller has anything to write.
    pub fn has_bandwidth(&self) -> bool {
        self.shares != 0 || self.quota != 0 || self.period != 0
    }

    /// Whether the cpuset controller has anything to write.
    pub fn has_cpuset(&self) -> bool {
        self.cpus.is_some() || self.mems.is_some()
    }
}

/// Validated limits for one container.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Limits {
    /// Memory limits.
    pub memory: Memory,
    /// CPU limits.
    pub cpu: Cpu,
    /// `pids.limit`, if given: >0 a limit, otherwise unlimited.
    pub pids: Option<i64>,
    /// Device rules in order: v1 `devices.allow`/`devices.deny` lines, or the v2 device
    /// filter program.
    pub devices: Vec<super::devices::DeviceRule>,
    /// Block IO weights and throttles.
    pub block_io: BlockIo,
    /// Huge page limits.
    pub hugepages: Vec<HugePageLimit>,
    /// `net_cls.classid` (v1 only).
    pub net_class: Option<u32>,
    /// `net_prio.ifpriomap` lines, `<interface> <priority>` (v1 only).
    pub net_priorities: Vec<String>,
    /// `rdma.max` lines, `<device> hca_handle=N hca_object=M`, sorted by device.
    pub rdma: Vec<String>,
    /// cgroup v2 files written as given (v2 only).
    pub unified: Unified,
    /// Whether the limits are for cgroup v2 (names the block IO controller `io`).
    pub v2: bool,
    /// The `linux.resources` fields that were set but are not applied by this module.
    pub ignored: Vec<&'static str>,
}

impl Limits {
    /// Validate `resources` for controllers of `version`, as runc would before writing.
    pub fn new(
        resources: Option<&LinuxResources>,
        version: Version,
    ) -> Result<Limits, CgroupError> {
        let Some(resources) = resources else {
            return Ok(Limits::default());
        };
        let mut limits = Limits {
            v2: version == Version::V2,
            ..Limits::default()
        };
        if let Some(memory) = resources.memory() {
            limits.memory = Memory {
                limit: bytes("memory.limit", memory.limit())?,
                reservation: bytes("memory.reservation", memory.reservation())?,
                swap: bytes("memory.swap", memory.swap())?,
                ..Memory::default()
            };
            check_swap(&limits.memory)?;
            let v1 = version == Version::V1;
            if v1 {
                limits.memory.swappiness = memory
                    .swappiness()
                    .map(|s| match s {
                        0..=100 => Ok(s),
                        _ => Err(invalid("memory.swappiness", s, "expected 0 to 100")),
                    })
                    .transpose()?;
                limits.memory.disable_oom_killer = memory.disable_oom_killer() == Some(true);
                limits.memory.kernel_tcp = bytes("memory.kernelTCP", memory.kernel_tcp())?;
            }
            // Kernels since 5.16 accept but ignore a kernel memory limit, and runc 1.1 ignores
            // it (with a warning); cgroup v2 has no TCP buffer limit of its own.
            let ignored = [
                ("memory.kernel", memory.kernel().is_some()),
                ("memory.kernelTCP", !v1 && memory.kernel_tcp().is_some()),
                ("memory.swappiness", !v1 && memory.swappiness().is_some()),
                (
                    "memory.disableOOMKiller",
                    !v1 && memory.disable_oom_killer().is_some(),
                ),
            ];
            limits.ignore(&ignored);
        }
        if let Some(cpu) = resources.cpu() {
            limits.cpu = Cpu {
                shares: shares(cpu.shares().unwrap_or(0), version)?,
                quota: quota(cpu.quota().unwrap_or(0))?,
                period: period(cpu.period().unwrap_or(0))?,
                cpus: list("cpu.cpus", cpu.cpus().as_deref())?,
                mems: list("cpu.mems", cpu.mems().as_deref())?,
            };
            let ignored = [
                ("cpu.idle", cpu.idle().is_some()),
                ("cpu.burst", cpu.burst().is_some()),
                ("cpu.realtimeRuntime", cpu.realtime_runtime().is_some()),
                ("cpu.realtimePeriod", cpu.realtime_period().is_some()),
            ];
            limits.ignore(&ignored);
        }
        limits.pids = resources.pids().map(|p| p.limit());
        let device_rules = resources.devices().as_deref().unwrap_or_default();
        // Without rules the container keeps its parent's list: nothing to write.
        if !device_rules.is_empty() {
            limits.devices = super::devices::rules(device_rules)?;
        }
        if let Some(io) = resources.block_io() {
            limits.block_io = BlockIo::new(io)?;
        }
        if let Some(pages) = resources.hugepage_limits() {
            limits.hugepages = super::hugetlb::limits(pages)?;
        }
        if let Some(network) = resources.network() {
            if version == Version::V1 {
                limits.net_class = network.class_id().filter(|&c| c != 0);
                limits.net_priorities = network
                    .priorities()
                    .iter()
                    .flatten()
                    .map(|p| format!("{} {}", p.name(), p.priority()))
                    .collect();
            } else {
                // runc ignores it on v2 too: there is no net_cls/net_prio there.
                limits.ignore(&[("network", true)]);
            }
        }
        if let Some(rdma) = resources.rdma() {
            limits.rdma = rdma_lines(rdma);
        }
        if let Some(unified) = resources.unified().as_ref().filter(|u| !u.is_empty()) {
            if version == Version::V1 {
                return Err(CgroupError::Unsupported {
                    field: "unified",
                    reason: "this host runs cgroup v1 (or hybrid), which has no unified \
                             resources; runc refuses them too"
                        .into(),
                });
            }
            limits.unified = Unified::new(unified)?;
        }
        Ok(limits)
    }

    /// The v1 controller names (also the v2 ones) that must be present to apply these limits.
    /// On v2, `devices` is not a controller (the filter is a BPF program) and is left out;
    /// the `unified` keys add theirs.
    pub fn controllers(&self) -> Vec<&str> {
        let io = if self.v2 { "io" } else { "blkio" };
        let wanted = [
            ("memory", self.memory.is_set()),
            ("cpu", self.cpu.has_bandwidth()),
            ("cpuset", self.cpu.has_cpuset()),
            ("pids", self.pids.is_some()),
            ("devices", !self.v2 && !self.devices.is_empty()),
            (io, self.block_io.is_set()),
            ("hugetlb", !self.hugepages.is_empty()),
            ("net_cls", self.net_class.is_some()),
            ("net_prio", !self.net_priorities.is_empty()),
            ("rdma", !self.rdma.is_empty()),
        ];
        let mut out: Vec<&str> = wanted.iter().filter(|(_, w)| *w).map(|(c, _)| *c).collect();
        for controller in self.unified.controllers() {
            if !out.contains(&controller) {
                out.push(controller);
            }
        }
        out
    }

    fn ignore(&mut self, fields: &[(&'static str, bool)]) {
        let set = fields.iter().filter(|(_, set)| *set).map(|(f, _)| *f);
        self.ignored.extend(set);
    }
}

/// The `rdma.max` lines: `<device>` then the limits given, sorted by device.
fn rdma_lines(rdma: &std::collections::HashMap<String, LinuxRdma>) -> Vec<String> {
    let mut lines: Vec<String> = rdma
        .iter()
        .filter(|(_, l)| l.hca_handles().is_some() || l.hca_objects().is_some())
        .map(|(device, limit)| {
            let mut line = device.clone();
            if let Some(n) = limit.hca_handles() {
                line.push_str(&format!(" hca_handle={n}"));
            }
            if let Some(n) = limit.hca_objects() {
                line.push_str(&format!(" hca_object={n}"));
            }
            line
        })
        .collect();
    lines.sort();
    lines
}

/// A byte count: 0 (unset), -1 (unlimited) or positive.
fn bytes(field: &'static str, value: Option<i64>) -> Result<i64, CgroupError> {
    match value.unwrap_or(0) {
        v if v >= -1 => Ok(v),
        v => Err(invalid(
            field,
            v,
            "use a positive byte count, or -1 for unlimited",
        )),
    }
}

/// runc's rules for memory+swap: it needs a real memory limit, and cannot be below it.
fn check_swap(memory: &Memory) -> Result<(), CgroupError> {
    let Memory { limit, swap, .. } = *memory;
    if swap <= 0 {
        return Ok(());
    }
    if limit <= 0 {
        return Err(CgroupError::SwapWithoutLimit { swap });
    }
    if swap < limit {
        return Err(CgroupError::SwapBelowLimit { swap, limit });
    }
    Ok(())
}

/// cgroup v1 rejects shares the kernel would clamp (as runc does); v2 converts any value.
fn shares(shares: u64, version: Version) -> Result<u64, CgroupError> {
    if version == Version::V1 && shares != 0 && !SHARES.contains(&shares) {
        return Err(invalid(
            "cpu.shares",
            shares,
            "the kernel accepts 2 to 262144",
        ));
    }
    Ok(shares)
}

fn quota(quota: i64) -> Result<i64, CgroupError> {
    if quota == 0 || quota == -1 || quota >= MIN_QUOTA_US {
        return Ok(quota);
    }
    Err(invalid(
        "cpu.quota",
        quota,
        "use at least 1000 (µs), or -1 for unlimited",
    ))
}

fn period(period: u64) -> Result<u64, CgroupError> {
    if period == 0 || PERIOD_US.contains(&period) {
        return Ok(period);
    }
    Err(invalid(
        "cpu.period",
        period,
        "the kernel accepts 1000 to 1000000 (µs)",
    ))
}

/// A cpu or memory-node list such as `0-3,6`; an empty list means unset.
fn list(field: &'static str, value: Option<&str>) -> Result<Option<String>, CgroupError> {
    let Some(value) = value.map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    let number = |s: &str| s.parse::<u32>().ok();
    let valid = value.split(',').all(|item| match item.split_once('-') {
        Some((from, to)) => matches!((number(from), number(to)), (Some(f), Some(t)) if f <= t),
        None => number(item).is_some(),
    });
    if !valid {
        return Err(invalid(field, value, "use a list such as 0-3,6"));
    }
    Ok(Some(value.to_owned()))
}

fn invalid(field: &'static str, value: impl ToString, reason: &'static str) -> CgroupError {
    CgroupError::InvalidValue {
        field,
        value: value.to_string(),
        reason,
    }
}

/// Convert v1 cpu shares to v2 `cpu.weight` with runc's linear formula: maps [2, 262144] onto
/// [1, 10000], so the default 1024 becomes 39. 0 stays 0 (unset).
pub fn cpu_weight(shares: u64) -> u64 {
    match shares {
        0 => 0,
        s if s <= *SHARES.start() => 1,
        s if s >= *SHARES.end() => 10_000,
        s => 1 + ((s - 2) * 9_999) / 262_142,
    }
}

/// The value for v2 `memory.swap.max` (swap alone) from OCI's memory+swap, as runc computes
/// it. 0: leave unset; -1: unlimited. Call on validated limits.
pub fn swap_v2(memory: &Memory) -> i64 {
    let Memory { limit, swap, .. } = *memory;
    match swap {
        // Unlimited memory with swap unset means "unlimited swap too", as on cgroup v1.
        0 if limit == -1 => -1,
        -1 | 0 => swap,
        _ => swap - limit,
    }
}

/// An OCI byte value as a cgroups-rs value: 0 (unset) is `None`, -1 is `max`.
pub fn max_value(value: i64) -> Option<MaxValue> {
    match value {
        0 => None,
        v if v < 0 => Some(MaxValue::Max),
        v => Some(MaxValue::Value(v)),
    }
}

/// The `pids.max` value: a positive limit, or `max` for 0 and -1 (as runc).
pub fn pids_max(limit: i64) -> MaxValue {
    if limit > 0 {
        MaxValue::Value(limit)
    } else {
        MaxValue::Max
    }
}

/// The v2 `cpu.max` line, `"<quota|max> [period]"`, if quota or period is set (as runc: a
/// period alone comes with quota `max`).
pub fn cpu_max(cpu: &Cpu) -> Option<String> {
    if cpu.quota == 0 && cpu.period == 0 {
        return None;
    }
    let quota = if cpu.quota > 0 {
        cpu.quota.to_string()
    } else {
        "max".to_owned()
    };
    Some(match cpu.period {
        0 => quota,
        period => format!("{quota} {period}"),
    })
}

#[cfg(test)]
mod tests {
    use oci_spec::runtime::{
        LinuxCpuBuilder, LinuxMemoryBuilder, LinuxPidsBuilder, LinuxResourcesBuilder,
    };

    use super::*;

    fn memory(limit: i64, reservation: i64, swap: i64) -> LinuxResources {
        let memory = LinuxMemoryBuilder::default()
            .limit(limit)
            .reservation(reservation)
            .swap(swap)
            .build()
            .unwrap();
        LinuxResourcesBuilder::default()
            .memory(memory)
            .build()
            .unwrap()
    }

    fn cpu(builder: LinuxCpuBuilder) -> LinuxResources {
        let cpu = builder.build().unwrap();
        LinuxResourcesBuilder::default().cpu(cpu).build().unwrap()
    }

    #[test]
    fn no_resources_means_no_limits() {
        let limits = Limits::new(None, Version::V1).unwrap();
        assert_eq!(limits, Limits::default());
        assert!(limits.controllers().is_empty());
    }

    #[test]
    fn swap_below_limit_or_without_limit_is_rejected() {
        let err = Limits::new(Some(&memory(100 << 20, 0, 50 << 20)), Version::V2).unwrap_err();
        assert!(matches!(err, CgroupError::SwapBelowLimit { .. }), "{err}");
        assert!(err.to_string().contains(&(50 << 20).to_string()), "{err}");
        for limit in [0, -1] {
            let err = Limits::new(Some(&memory(limit, 0, 1 << 20)), Version::V1).unwrap_err();
            assert!(matches!(err, CgroupError::SwapWithoutLimit { .. }), "{err}");
        }
    }

    #[test]
    fn negative_bytes_other_than_minus_one_are_rejected() {
        let err = Limits::new(Some(&memory(-2, 0, 0)), Version::V1).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid linux.resources.memory.limit -2: use a positive byte count, or -1 for unlimited"
        );
    }

    #[test]
    fn cpu_values_out_of_the_kernels_range_are_rejected() {
        let v1_shares = cpu(LinuxCpuBuilder::default().shares(1_u64));
        assert!(Limits::new(Some(&v1_shares), Version::V1).is_err());
        assert_eq!(
            Limits::new(Some(&v1_shares), Version::V2)
                .unwrap()
                .cpu
                .shares,
            1
        );
        let bad = [
            cpu(LinuxCpuBuilder::default().quota(500_i64)),
            cpu(LinuxCpuBuilder::default().quota(-7_i64)),
            cpu(LinuxCpuBuilder::default().period(999_u64)),
            cpu(LinuxCpuBuilder::default().period(2_000_000_u64)),
            cpu(LinuxCpuBuilder::default().cpus("0-")),
            cpu(LinuxCpuBuilder::default().cpus("3-1")),
            cpu(LinuxCpuBuilder::default().mems("a")),
        ];
        for resources in bad {
            let err = Limits::new(Some(&resources), Version::V2).unwrap_err();
            assert!(matches!(err, CgroupError::InvalidValue { .. }), "{err}");
        }
    }

    #[test]
    fn requested_controllers_follow_the_limits_set() {
        let resources = LinuxResourcesBuilder::default()
            .cpu(
                LinuxCpuBuilder::default()
                    .cpus(" 0-1,3 \n")
                    .build()
                    .unwrap(),
            )
            .pids(LinuxPidsBuilder::default().limit(0).build().unwrap())
            .build()
            .unwrap();
        let limits = Limits::new(Some(&resources), Version::V1).unwrap();
        assert_eq!(limits.controllers(), ["cpuset", "pids"]);
        assert_eq!(limits.cpu.cpus.as_deref(), Some("0-1,3"));
    }

    #[test]
    fn unapplied_fields_are_reported() {
        let memory = LinuxMemoryBuilder::default()
            .kernel(1_i64)
            .swappiness(10_u64)
            .build()
            .unwrap();
        let resources = LinuxResourcesBuilder::default()
            .memory(memory)
            .devices(vec![Default::default()])
            .build()
            .unwrap();
        let limits = Limits::new(Some(&resources), Version::V2).unwrap();
        assert_eq!(limits.ignored, ["memory.kernel", "memory.swappiness"]);
        assert_eq!(limits.devices.len(), 13, "the v2 device filter's rules");
        assert!(!limits.controllers().contains(&"devices"));
        let limits = Limits::new(Some(&resources), Version::V1).unwrap();
        assert_eq!(limits.ignored, ["memory.kernel"]);
        assert_eq!(limits.memory.swappiness, Some(10));
        assert_eq!(
            limits.devices.len(),
            13,
            "the deny rule and runc's 12 defaults"
        );
    }

    #[test]
    fn shares_convert_to_weight_with_runcs_formula() {
        let cases = [
            (0, 0),
            (1, 1),
            (2, 1),
            (100, 4),
            (1024, 39),
            (262_143, 9_999),
            (262_144, 10_000),
            (u64::MAX, 10_000),
        ];
        for (shares, weight) in cases {
            assert_eq!(cpu_weight(shares), weight, "shares {shares}");
        }
    }

    #[test]
    fn swap_for_v2_excludes_memory() {
        let swap = |limit, swap| {
            swap_v2(&Memory {
                limit,
                swap,
                ..Memory::default()
            })
        };
        assert_eq!(swap(100, 300), 200);
        assert_eq!(swap(100, 100), 0);
        assert_eq!(swap(100, 0), 0);
        assert_eq!(swap(100, -1), -1);
        assert_eq!(swap(-1, 0), -1);
    }

    #[test]
    fn cpu_max_and_pids_max_follow_runc() {
        let line = |quota, period| {
            cpu_max(&Cpu {
                quota,
                period,
                ..Cpu::default()
            })
        };
        assert_eq!(line(0, 0), None);
        assert_eq!(line(50_000, 0).as_deref(), Some("50000"));
        assert_eq!(line(50_000, 100_000).as_deref(), Some("50000 100000"));
        assert_eq!(line(-1, 100_000).as_deref(), Some("max 100000"));
        assert_eq!(pids_max(0), MaxValue::Max);
        assert_eq!(pids_max(-1), MaxValue::Max);
        assert_eq!(pids_max(7), MaxValue::Value(7));
        assert_eq!(max_value(0), None);
        assert_eq!(max_value(-1), Some(MaxValue::Max));
    }
}
