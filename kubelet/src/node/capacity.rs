//! The node's capacity and allocatable resources, and the hard eviction thresholds that
//! both reduce allocatable and decide the pressure conditions, as upstream computes them.
//! Pure: no I/O.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::host::{FsStats, HostFacts};

/// Resource maps as the API has them.
pub type Resources = BTreeMap<String, Quantity>;

/// A hard eviction threshold: an absolute amount or a share of capacity.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Threshold {
    /// So many bytes (or PIDs).
    Amount(i64),
    /// This share of capacity, 0.0 to 1.0.
    Share(f64),
}

impl Threshold {
    /// The threshold against `capacity`, truncated as upstream's float product is.
    pub fn of(self, capacity: i64) -> i64 {
        match self {
            Threshold::Amount(n) => n,
            Threshold::Share(share) => (capacity as f64 * share) as i64,
        }
    }
}

/// The hard eviction thresholds (`--eviction-hard`): a signal below its threshold is
/// pressure. [`Default`] is upstream's Linux default.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EvictionThresholds {
    /// `memory.available` (default `100Mi`).
    pub memory_available: Threshold,
    /// `nodefs.available` (default `10%`).
    pub nodefs_available: Threshold,
    /// `nodefs.inodesFree` (default `5%`).
    pub nodefs_inodes_free: Threshold,
    /// `imagefs.available` (default `15%`).
    pub imagefs_available: Threshold,
    /// `imagefs.inodesFree` (default `5%`).
    pub imagefs_inodes_free: Threshold,
    /// `pid.available`: upstream sets none by default, so PIDPressure stays False.
    pub pid_available: Option<Threshold>,
}

impl Default for EvictionThresholds {
    fn default() -> EvictionThresholds {
        EvictionThresholds {
            memory_available: Threshold::Amount(100 << 20),
            nodefs_available: Threshold::Share(0.10),
            nodefs_inodes_free: Threshold::Share(0.05),
            imagefs_available: Threshold::Share(0.15),
            imagefs_inodes_free: Threshold::Share(0.05),
            pid_available: None,
        }
    }
}

/// Process ids: the most the kernel hands out and how many are in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pids {
    /// `kernel.pid_max`.
    pub max: i64,
    /// Processes running.
    pub running: i64,
}

/// Which pressure conditions hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pressure {
    /// `memory.available` is below its threshold.
    pub memory: bool,
    /// A filesystem's free space or inodes are below their threshold.
    pub disk: bool,
    /// `pid.available` is below its threshold.
    pub pid: bool,
}

impl EvictionThresholds {
    /// The pressure the observed values show. `pids`: None when not observed.
    pub fn pressure(&self, host: &HostFacts, pids: Option<Pids>) -> Pressure {
        let fs_short = |fs: &FsStats, space: Threshold, inodes: Threshold| {
            fs.available_bytes < space.of(fs.capacity_bytes)
                || (fs.inodes > 0 && fs.inodes_free < inodes.of(fs.inodes))
        };
        Pressure {
            memory: host.memory_available_bytes < self.memory_available.of(host.memory_bytes),
            disk: fs_short(&host.nodefs, self.nodefs_available, self.nodefs_inodes_free)
                || fs_short(
                    &host.imagefs,
                    self.imagefs_available,
                    self.imagefs_inodes_free,
                ),
            pid: match (self.pid_available, pids) {
                (Some(threshold), Some(p)) => p.max - p.running < threshold.of(p.max),
                _ => false,
            },
        }
    }
}

/// The node's `capacity`: cpu, memory, pods, ephemeral-storage and hugepages (none).
pub fn capacity(host: &HostFacts, max_pods: i64) -> Resources {
    let mut r = Resources::new();
    r.insert("cpu".into(), decimal(host.cpus));
    r.insert("memory".into(), binary(host.memory_bytes));
    r.insert("pods".into(), decimal(max_pods));
    r.insert(
        "ephemeral-storage".into(),
        binary(host.nodefs.capacity_bytes),
    );
    r.insert("hugepages-1Gi".into(), decimal(0));
    r.insert("hugepages-2Mi".into(), decimal(0));
    r
}

/// The node's `allocatable`: capacity less the hard eviction thresholds for memory and
/// nodefs (no system or kube reservation is configured), never below zero.
pub fn allocatable(host: &HostFacts, max_pods: i64, thresholds: &EvictionThresholds) -> Resources {
    let mut r = capacity(host, max_pods);
    let memory = host.memory_bytes - thresholds.memory_available.of(host.memory_bytes);
    r.insert("memory".into(), binary(memory.max(0)));
    let storage =
        host.nodefs.capacity_bytes - thresholds.nodefs_available.of(host.nodefs.capacity_bytes);
    r.insert("ephemeral-storage".into(), binary(storage.max(0)));
    r
}

/// A count as the API writes decimal quantities (`4`, `110`).
pub fn decimal(n: i64) -> Quantity {
    Quantity(n.to_string())
}

/// Bytes as the API writes binary quantities: the largest power-of-1024 suffix that
/// divides them exactly (`16318460Ki`, `100Mi`), plain below 1024 or when none does.
pub fn binary(bytes: i64) -> Quantity {
    const SUFFIXES: [&str; 6] = ["Ki", "Mi", "Gi", "Ti", "Pi", "Ei"];
    if bytes.abs() < 1024 {
        return Quantity(bytes.to_string());
    }
    let mut amount = bytes;
    let mut exponent = 0;
    while exponent < SUFFIXES.len() && amount % 1024 == 0 {
        amount /= 1024;
        exponent += 1;
    }
    match exponent {
        0 => Quantity(amount.to_string()),
        e => Quantity(format!("{amount}{}", SUFFIXES[e - 1])),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host() -> HostFacts {
        let fs = FsStats {
            capacity_bytes: 102_626_232 * 1024,
            available_bytes: 50 << 30,
            inodes: 1000,
            inodes_free: 900,
        };
        HostFacts {
            cpus: 4,
            memory_bytes: 16_318_460 * 1024,
            memory_available_bytes: 8 << 30,
            nodefs: fs,
            imagefs: fs,
            ..HostFacts::default()
        }
    }

    #[test]
    fn binary_quantities_are_written_as_upstream_writes_them() {
        assert_eq!(binary(0).0, "0");
        assert_eq!(binary(512).0, "512");
        assert_eq!(binary(1024).0, "1Ki");
        assert_eq!(binary(100 << 20).0, "100Mi");
        assert_eq!(binary(16_318_460 * 1024).0, "16318460Ki");
        assert_eq!(binary(3 << 30).0, "3Gi");
        assert_eq!(binary(94_580_335_255).0, "94580335255");
    }

    #[test]
    fn allocatable_is_capacity_less_hard_eviction() {
        let thresholds = EvictionThresholds::default();
        let cap = capacity(&host(), 110);
        let alloc = allocatable(&host(), 110, &thresholds);
        assert_eq!(cap["cpu"].0, "4");
        assert_eq!(cap["memory"].0, "16318460Ki");
        assert_eq!(cap["pods"].0, "110");
        assert_eq!(cap["ephemeral-storage"].0, "102626232Ki");
        assert_eq!(cap["hugepages-2Mi"].0, "0");
        assert_eq!(alloc["cpu"].0, "4");
        assert_eq!(alloc["memory"].0, "16216060Ki", "100Mi less");
        // Less 10%, truncated: not a whole number of Ki, so written in bytes.
        assert_eq!(alloc["ephemeral-storage"].0, "94580335412");
        let mut tiny = host();
        tiny.memory_bytes = 50 << 20;
        assert_eq!(allocatable(&tiny, 110, &thresholds)["memory"].0, "0");
    }

    #[test]
    fn pressure_follows_the_default_thresholds() {
        let t = EvictionThresholds::default();
        assert_eq!(t.pressure(&host(), None), Pressure::default());
        let mut low_memory = host();
        low_memory.memory_available_bytes = 99 << 20;
        assert!(t.pressure(&low_memory, None).memory);
        let mut full = host();
        full.nodefs.available_bytes = 9 << 30; // under 10% of ~98Gi
        full.imagefs = full.nodefs;
        assert!(t.pressure(&full, None).disk);
        let mut images = host();
        images.imagefs.available_bytes = 14 << 30; // under 15%, over 10%
        assert!(t.pressure(&images, None).disk);
        let mut inodes = host();
        inodes.nodefs.inodes_free = 49;
        assert!(t.pressure(&inodes, None).disk);
        let pids = Pids {
            max: 1000,
            running: 990,
        };
        assert!(
            !t.pressure(&host(), Some(pids)).pid,
            "no pid threshold by default"
        );
        let with_pid = EvictionThresholds {
            pid_available: Some(Threshold::Share(0.02)),
            ..t
        };
        assert!(with_pid.pressure(&host(), Some(pids)).pid);
    }
}
