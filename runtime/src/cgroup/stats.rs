//! Resource usage of a container's cgroup, read from the v1 controllers or cgroup v2, in the
//! JSON shape `runc events --stats` prints (containerd's shim decodes it).
//!
//! Missing files read as zero, as runc reads them: a controller may be absent (the hybrid
//! layout has no v1 hugetlb), or a kernel may lack a file (`memory.peak` is recent). On the
//! hybrid layout a statistic comes from its v1 controller, or from the cgroup v2 directory
//! when no v1 hierarchy carries that controller.

use std::collections::BTreeMap;
use std::fs;
use std::io::ErrorKind;
use std::path::Path;

use serde::Serialize;

use super::{Cgroup, CgroupError, Mode, Version};

fn is_zero(value: &u64) -> bool {
    *value == 0
}

/// One sample of a container's resource usage.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// CPU time used and throttling.
    pub cpu: Cpu,
    /// Memory use and limits.
    pub memory: Memory,
    /// Process count and limit.
    pub pids: Pids,
    /// Block I/O done.
    pub blkio: Blkio,
    /// Huge page use, by page size (`2MB`, `1GB`).
    pub hugetlb: BTreeMap<String, Hugetlb>,
}

/// CPU statistics.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct Cpu {
    /// CPU time used.
    pub usage: CpuUsage,
    /// CFS bandwidth throttling.
    pub throttling: Throttling,
}

/// CPU time used, in nanoseconds.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct CpuUsage {
    /// In all modes.
    #[serde(skip_serializing_if = "is_zero")]
    pub total: u64,
    /// Per CPU, in all modes (cgroup v1 only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub percpu: Vec<u64>,
    /// Per CPU, in kernel mode (cgroup v1 only).
    #[serde(skip_serializing_if = "Vec::is_empty", rename = "percpu_kernel")]
    pub percpu_kernel: Vec<u64>,
    /// Per CPU, in user mode (cgroup v1 only).
    #[serde(skip_serializing_if = "Vec::is_empty", rename = "percpu_user")]
    pub percpu_user: Vec<u64>,
    /// In kernel mode.
    pub kernel: u64,
    /// In user mode.
    pub user: u64,
}

/// CFS bandwidth throttling.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Throttling {
    /// Enforcement periods elapsed.
    #[serde(skip_serializing_if = "is_zero")]
    pub periods: u64,
    /// Periods in which the cgroup was throttled.
    #[serde(skip_serializing_if = "is_zero")]
    pub throttled_periods: u64,
    /// Time spent throttled, in nanoseconds.
    #[serde(skip_serializing_if = "is_zero")]
    pub throttled_time: u64,
}

/// Memory statistics, in bytes.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Memory {
    /// Page cache (`cache` of v1's `memory.stat`, `file` of v2's).
    #[serde(skip_serializing_if = "is_zero")]
    pub cache: u64,
    /// Memory.
    pub usage: MemoryEntry,
    /// Memory plus swap, as cgroup v1 counts it (v2's swap is added to its memory).
    pub swap: MemoryEntry,
    /// Kernel memory (cgroup v1 only).
    pub kernel: MemoryEntry,
    /// Kernel TCP buffers (cgroup v1 only).
    #[serde(rename = "kernelTCP")]
    pub kernel_tcp: MemoryEntry,
    /// Every counter of `memory.stat`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub raw: BTreeMap<String, u64>,
}

/// Use, peak, limit and limit hits of one kind of memory.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct MemoryEntry {
    /// The limit (unlimited is the kernel's huge value, or `u64::MAX` on v2).
    pub limit: u64,
    /// Current use.
    #[serde(skip_serializing_if = "is_zero")]
    pub usage: u64,
    /// Highest use seen.
    #[serde(skip_serializing_if = "is_zero")]
    pub max: u64,
    /// How often the limit was hit.
    pub failcnt: u64,
}

/// Process counts.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct Pids {
    /// Processes (and threads) in the cgroup.
    #[serde(skip_serializing_if = "is_zero")]
    pub current: u64,
    /// `pids.max`, 0 when unlimited.
    #[serde(skip_serializing_if = "is_zero")]
    pub limit: u64,
}

/// Block I/O done by the cgroup, by device.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Blkio {
    /// Bytes transferred.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub io_service_bytes_recursive: Vec<BlkioEntry>,
    /// I/O operations done.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub io_serviced_recursive: Vec<BlkioEntry>,
}

/// One counter of one block device.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct BlkioEntry {
    /// The device's major number.
    #[serde(skip_serializing_if = "is_zero")]
    pub major: u64,
    /// The device's minor number.
    #[serde(skip_serializing_if = "is_zero")]
    pub minor: u64,
    /// `Read`, `Write`, `Sync`, `Async`, `Discard` or `Total`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub op: String,
    /// The count.
    #[serde(skip_serializing_if = "is_zero")]
    pub value: u64,
}

/// Huge page use of one page size, in bytes.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct Hugetlb {
    /// Current use.
    #[serde(skip_serializing_if = "is_zero")]
    pub usage: u64,
    /// Highest use seen (cgroup v1 only).
    #[serde(skip_serializing_if = "is_zero")]
    pub max: u64,
    /// How often an allocation failed at the limit.
    pub failcnt: u64,
}

impl Cgroup {
    /// Read one sample of the container's resource usage.
    pub fn stats(&self) -> Result<Stats, CgroupError> {
        let mut stats = Stats::default();
        if let Some((version, dir)) = self.source("cpuacct") {
            stats.cpu.usage = match version {
                Version::V1 => v1_cpu_usage(dir, clock_ticks())?,
                Version::V2 => v2_cpu(dir)?.usage,
            };
        }
        if let Some((version, dir)) = self.source("cpu") {
            stats.cpu.throttling = match version {
                Version::V1 => v1_throttling(dir)?,
                Version::V2 => v2_cpu(dir)?.throttling,
            };
        }
        if let Some((version, dir)) = self.source("memory") {
            stats.memory = match version {
                Version::V1 => v1_memory(dir)?,
                Version::V2 => v2_memory(dir)?,
            };
        }
        if let Some((_, dir)) = self.source("pids") {
            stats.pids = pids(dir)?;
        }
        if let Some((version, dir)) = self.source("blkio") {
            stats.blkio = match version {
                Version::V1 => v1_blkio(dir)?,
                Version::V2 => v2_io(dir)?,
            };
        }
        if let Some((version, dir)) = self.source("hugetlb") {
            stats.hugetlb = hugetlb(dir, version)?;
        }
        Ok(stats)
    }

    /// How many times the container's processes were OOM-killed (v1 `memory.oom_control`,
    /// v2 `memory.events`), to notice new kills by comparing two readings.
    pub fn oom_kills(&self) -> Result<u64, CgroupError> {
        Ok(match self.source("memory") {
            Some((Version::V1, dir)) => keyed(&dir.join("memory.oom_control"))?
                .get("oom_kill")
                .copied()
                .unwrap_or(0),
            // `oom` counts every time the limit forced the OOM killer, as runc watches it.
            Some((Version::V2, dir)) => {
                let events = keyed(&dir.join("memory.events"))?;
                events
                    .get("oom")
                    .copied()
                    .unwrap_or(0)
                    .max(events.get("oom_kill").copied().unwrap_or(0))
            }
            None => 0,
        })
    }

    /// Where a v1 `controller`'s statistics are read: its v1 directory, else the v2 one.
    fn source(&self, controller: &str) -> Option<(Version, &Path)> {
        let v2 = || {
            self.placements
                .iter()
                .find(|p| p.version == Version::V2)
                .map(|p| (Version::V2, p.path.as_path()))
        };
        match self.mode {
            Mode::Unified => v2(),
            Mode::Legacy | Mode::Hybrid => self
                .placements
                .iter()
                .find(|p| p.version == Version::V1 && p.has(controller))
                .map(|p| (Version::V1, p.path.as_path()))
                .or_else(v2),
        }
    }
}

/// The kernel's clock ticks per second, the unit of v1's `cpuacct.stat`.
fn clock_ticks() -> u64 {
    // SAFETY: sysconf only reads a system constant.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(ticks).ok().filter(|t| *t > 0).unwrap_or(100)
}

/// A file's text; a missing file reads as empty.
fn text(file: &Path) -> Result<String, CgroupError> {
    match fs::read_to_string(file) {
        Ok(text) => Ok(text),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(String::new()),
        Err(source) => Err(CgroupError::Read {
            file: file.to_path_buf(),
            source,
        }),
    }
}

/// A single number; `max` is `u64::MAX`; missing or unreadable text is 0.
fn number(file: &Path) -> Result<u64, CgroupError> {
    let text = text(file)?;
    Ok(match text.trim() {
        "max" => u64::MAX,
        value => value.parse().unwrap_or(0),
    })
}

/// `key value` lines (`memory.stat`, `cpu.stat`, `memory.events`).
fn keyed(file: &Path) -> Result<BTreeMap<String, u64>, CgroupError> {
    Ok(text(file)?
        .lines()
        .filter_map(|line| {
            let (key, value) = line.split_once(' ')?;
            Some((key.to_owned(), value.trim().parse().ok()?))
        })
        .collect())
}

fn numbers(file: &Path) -> Result<Vec<u64>, CgroupError> {
    Ok(text(file)?
        .split_whitespace()
        .filter_map(|n| n.parse().ok())
        .collect())
}

fn v1_cpu_usage(dir: &Path, ticks_per_second: u64) -> Result<CpuUsage, CgroupError> {
    let stat = keyed(&dir.join("cpuacct.stat"))?;
    let nanos =
        |ticks: Option<&u64>| ticks.copied().unwrap_or(0) * (1_000_000_000 / ticks_per_second);
    let mut usage = CpuUsage {
        total: number(&dir.join("cpuacct.usage"))?,
        percpu: numbers(&dir.join("cpuacct.usage_percpu"))?,
        kernel: nanos(stat.get("system")),
        user: nanos(stat.get("user")),
        ..CpuUsage::default()
    };
    // `cpu user system` then one line per CPU.
    for line in text(&dir.join("cpuacct.usage_all"))?.lines().skip(1) {
        let fields: Vec<u64> = line
            .split_whitespace()
            .filter_map(|f| f.parse().ok())
            .collect();
        if let [_, user, system] = fields[..] {
            usage.percpu_user.push(user);
            usage.percpu_kernel.push(system);
        }
    }
    Ok(usage)
}

fn v1_throttling(dir: &Path) -> Result<Throttling, CgroupError> {
    let stat = keyed(&dir.join("cpu.stat"))?;
    let get = |key: &str| stat.get(key).copied().unwrap_or(0);
    Ok(Throttling {
        periods: get("nr_periods"),
        throttled_periods: get("nr_throttled"),
        throttled_time: get("throttled_time"),
    })
}

fn v2_cpu(dir: &Path) -> Result<Cpu, CgroupError> {
    let stat = keyed(&dir.join("cpu.stat"))?;
    let get = |key: &str| stat.get(key).copied().unwrap_or(0);
    Ok(Cpu {
        usage: CpuUsage {
            total: get("usage_usec") * 1000,
            kernel: get("system_usec") * 1000,
            user: get("user_usec") * 1000,
            ..CpuUsage::default()
        },
        throttling: Throttling {
            periods: get("nr_periods"),
            throttled_periods: get("nr_throttled"),
            throttled_time: get("throttled_usec") * 1000,
        },
    })
}

/// v1 `<prefix>.{limit_in_bytes,usage_in_bytes,max_usage_in_bytes,failcnt}`.
fn v1_memory_entry(dir: &Path, prefix: &str) -> Result<MemoryEntry, CgroupError> {
    let file = |name: &str| dir.join(format!("{prefix}.{name}"));
    Ok(MemoryEntry {
        limit: number(&file("limit_in_bytes"))?,
        usage: number(&file("usage_in_bytes"))?,
        max: number(&file("max_usage_in_bytes"))?,
        failcnt: number(&file("failcnt"))?,
    })
}

fn v1_memory(dir: &Path) -> Result<Memory, CgroupError> {
    let raw = keyed(&dir.join("memory.stat"))?;
    Ok(Memory {
        cache: raw.get("cache").copied().unwrap_or(0),
        usage: v1_memory_entry(dir, "memory")?,
        swap: v1_memory_entry(dir, "memory.memsw")?,
        kernel: v1_memory_entry(dir, "memory.kmem")?,
        kernel_tcp: v1_memory_entry(dir, "memory.kmem.tcp")?,
        raw,
    })
}

fn v2_memory(dir: &Path) -> Result<Memory, CgroupError> {
    let raw = keyed(&dir.join("memory.stat"))?;
    let events = keyed(&dir.join("memory.events"))?;
    let usage = MemoryEntry {
        limit: number(&dir.join("memory.max"))?,
        usage: number(&dir.join("memory.current"))?,
        max: number(&dir.join("memory.peak"))?,
        failcnt: events.get("max").copied().unwrap_or(0),
    };
    // v1 counted memory+swap; runc reports v2's swap the same way for its users.
    let swap = if dir.join("memory.swap.current").exists() {
        MemoryEntry {
            limit: number(&dir.join("memory.swap.max"))?.saturating_add(usage.limit),
            usage: number(&dir.join("memory.swap.current"))?.saturating_add(usage.usage),
            ..MemoryEntry::default()
        }
    } else {
        MemoryEntry::default()
    };
    Ok(Memory {
        cache: raw.get("file").copied().unwrap_or(0),
        usage,
        swap,
        raw,
        ..Memory::default()
    })
}

fn pids(dir: &Path) -> Result<Pids, CgroupError> {
    let limit = match number(&dir.join("pids.max"))? {
        u64::MAX => 0,
        limit => limit,
    };
    Ok(Pids {
        current: number(&dir.join("pids.current"))?,
        limit,
    })
}

/// v1 blkio, from the first policy that has files, as runc reads it: CFQ, then BFQ, then
/// the throttling counters (which every kernel has).
fn v1_blkio(dir: &Path) -> Result<Blkio, CgroupError> {
    for prefix in ["blkio", "blkio.bfq", "blkio.throttle"] {
        let bytes = dir.join(format!("{prefix}.io_service_bytes_recursive"));
        if bytes.exists() {
            return Ok(Blkio {
                io_service_bytes_recursive: v1_blkio_entries(&text(&bytes)?),
                io_serviced_recursive: v1_blkio_entries(&text(
                    &dir.join(format!("{prefix}.io_serviced_recursive")),
                )?),
            });
        }
    }
    Ok(Blkio::default())
}

/// `8:0 Read 4096` lines; the closing `Total 4096` line has no device and is skipped.
fn v1_blkio_entries(text: &str) -> Vec<BlkioEntry> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let (major, minor) = fields.next()?.split_once(':')?;
            Some(BlkioEntry {
                major: major.parse().ok()?,
                minor: minor.parse().ok()?,
                op: fields.next()?.to_owned(),
                value: fields.next()?.parse().ok()?,
            })
        })
        .collect()
}

/// v2 `io.stat`: `8:0 rbytes=1 wbytes=2 rios=3 wios=4 dbytes=0 dios=0` per device.
fn v2_io(dir: &Path) -> Result<Blkio, CgroupError> {
    let mut blkio = Blkio::default();
    for line in text(&dir.join("io.stat"))?.lines() {
        let mut fields = line.split_whitespace();
        let Some((major, minor)) = fields.next().and_then(|d| d.split_once(':')) else {
            continue;
        };
        let (Ok(major), Ok(minor)) = (major.parse(), minor.parse()) else {
            continue;
        };
        for field in fields {
            let Some((key, value)) = field.split_once('=') else {
                continue;
            };
            let (list, op) = match key {
                "rbytes" => (&mut blkio.io_service_bytes_recursive, "Read"),
                "wbytes" => (&mut blkio.io_service_bytes_recursive, "Write"),
                "dbytes" => (&mut blkio.io_service_bytes_recursive, "Discard"),
                "rios" => (&mut blkio.io_serviced_recursive, "Read"),
                "wios" => (&mut blkio.io_serviced_recursive, "Write"),
                "dios" => (&mut blkio.io_serviced_recursive, "Discard"),
                _ => continue,
            };
            list.push(BlkioEntry {
                major,
                minor,
                op: op.to_owned(),
                value: value.parse().unwrap_or(0),
            });
        }
    }
    Ok(blkio)
}

/// Huge page use per page size, from the files the kernel makes per size
/// (`hugetlb.2MB.usage_in_bytes` on v1, `hugetlb.2MB.current` on v2).
fn hugetlb(dir: &Path, version: Version) -> Result<BTreeMap<String, Hugetlb>, CgroupError> {
    let usage_suffix = match version {
        Version::V1 => ".usage_in_bytes",
        Version::V2 => ".current",
    };
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(source) => {
            return Err(CgroupError::Read {
                file: dir.to_path_buf(),
                source,
            })
        }
    };
    let mut sizes = BTreeMap::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(size) = name
            .to_str()
            .and_then(|n| n.strip_prefix("hugetlb."))
            .and_then(|n| n.strip_suffix(usage_suffix))
            .filter(|s| !s.contains('.'))
        else {
            continue;
        };
        let file = |name: &str| dir.join(format!("hugetlb.{size}.{name}"));
        let stats = match version {
            Version::V1 => Hugetlb {
                usage: number(&file("usage_in_bytes"))?,
                max: number(&file("max_usage_in_bytes"))?,
                failcnt: number(&file("failcnt"))?,
            },
            Version::V2 => Hugetlb {
                usage: number(&file("current"))?,
                failcnt: keyed(&file("events"))?.get("max").copied().unwrap_or(0),
                ..Hugetlb::default()
            },
        };
        sizes.insert(size.to_owned(), stats);
    }
    Ok(sizes)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::super::Placement;
    use super::*;

    fn cgroup(mode: Mode, placements: &[(&str, Version, PathBuf)]) -> Cgroup {
        Cgroup {
            mode,
            placements: placements
                .iter()
                .map(|(h, v, p)| Placement {
                    hierarchy: (*h).into(),
                    version: *v,
                    path: p.clone(),
                    created: Vec::new(),
                })
                .collect(),
        }
    }

    fn write(dir: &Path, files: &[(&str, &str)]) {
        fs::create_dir_all(dir).unwrap();
        for (name, text) in files {
            fs::write(dir.join(name), text).unwrap();
        }
    }

    /// A cgroup v2 directory as the kernel shows it (the interesting files).
    const V2_FILES: &[(&str, &str)] = &[
        (
            "cpu.stat",
            "usage_usec 2500\nuser_usec 2000\nsystem_usec 500\nnr_periods 10\nnr_throttled 3\nthrottled_usec 70\n",
        ),
        ("memory.current", "8388608\n"),
        ("memory.max", "67108864\n"),
        ("memory.peak", "9437184\n"),
        ("memory.events", "low 0\nhigh 0\nmax 4\noom 1\noom_kill 1\noom_group_kill 0\n"),
        ("memory.stat", "anon 4096\nfile 12288\nkernel 8192\n"),
        ("memory.swap.current", "4096\n"),
        ("memory.swap.max", "max\n"),
        ("pids.current", "3\n"),
        ("pids.max", "max\n"),
        ("io.stat", "8:0 rbytes=4096 wbytes=8192 rios=1 wios=2 dbytes=0 dios=0\n"),
        ("hugetlb.2MB.current", "2097152\n"),
        ("hugetlb.2MB.events", "max 5\n"),
        ("hugetlb.2MB.max", "max\n"),
        ("hugetlb.1GB.current", "0\n"),
    ];

    /// The statistics of a cgroup v2 directory holding [`V2_FILES`].
    fn v2_fixture_stats() -> Stats {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("c1");
        write(&dir, V2_FILES);
        cgroup(Mode::Unified, &[("", Version::V2, dir)])
            .stats()
            .unwrap()
    }

    #[test]
    fn v2_stats_are_read_and_converted_to_runcs_units() {
        let stats = v2_fixture_stats();
        assert_eq!(stats.cpu.usage.total, 2_500_000);
        assert_eq!(stats.cpu.usage.user, 2_000_000);
        assert_eq!(stats.cpu.usage.kernel, 500_000);
        assert_eq!(stats.cpu.throttling.throttled_periods, 3);
        assert_eq!(stats.cpu.throttling.throttled_time, 70_000);
        assert_eq!(
            stats.memory.usage,
            MemoryEntry {
                limit: 64 << 20,
                usage: 8 << 20,
                max: 9 << 20,
                failcnt: 4
            }
        );
        assert_eq!(stats.memory.swap.usage, (8 << 20) + 4096, "memory + swap");
        assert_eq!(stats.memory.swap.limit, u64::MAX);
        assert_eq!(stats.memory.cache, 12288);
        assert_eq!(stats.memory.raw["anon"], 4096);
        assert_eq!(
            stats.pids,
            Pids {
                current: 3,
                limit: 0
            }
        );
        let ops: Vec<(&str, u64)> = stats
            .blkio
            .io_service_bytes_recursive
            .iter()
            .map(|e| (e.op.as_str(), e.value))
            .collect();
        assert_eq!(ops, [("Read", 4096), ("Write", 8192), ("Discard", 0)]);
        assert_eq!(stats.blkio.io_serviced_recursive[1].value, 2);
        assert_eq!(stats.blkio.io_serviced_recursive[1].major, 8);
        assert_eq!(stats.hugetlb.len(), 2);
        assert_eq!(stats.hugetlb["2MB"].usage, 2 << 20);
        assert_eq!(stats.hugetlb["2MB"].failcnt, 5);
    }

    #[test]
    fn stats_serialize_with_runcs_names_and_omissions() {
        let json = serde_json::to_value(v2_fixture_stats()).unwrap();
        assert_eq!(json["pids"], serde_json::json!({"current": 3}));
        assert_eq!(json["memory"]["usage"]["usage"], 8 << 20);
        assert_eq!(
            json["memory"]["kernelTCP"],
            serde_json::json!({"limit": 0, "failcnt": 0})
        );
        assert_eq!(json["cpu"]["throttling"]["throttledPeriods"], 3);
        assert_eq!(
            json["blkio"]["ioServiceBytesRecursive"][2],
            serde_json::json!({"major": 8, "op": "Discard"})
        );
        assert_eq!(json["hugetlb"]["1GB"], serde_json::json!({"failcnt": 0}));
    }

    #[test]
    fn a_v2_cgroup_without_controllers_reads_as_zero() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("c1");
        write(&dir, &[("cgroup.procs", "")]);
        let cg = cgroup(Mode::Unified, &[("", Version::V2, dir)]);
        assert_eq!(cg.stats().unwrap(), Stats::default());
        assert_eq!(cg.oom_kills().unwrap(), 0);
        let gone = cgroup(Mode::Unified, &[("", Version::V2, tmp.path().join("gone"))]);
        assert_eq!(gone.stats().unwrap(), Stats::default());
    }

    #[test]
    fn v1_stats_come_from_each_controllers_hierarchy_and_hugetlb_from_v2_on_hybrid() {
        let tmp = tempfile::tempdir().unwrap();
        let at = |h: &str| tmp.path().join(h).join("c1");
        write(
            &at("cpuacct"),
            &[
                ("cpuacct.usage", "3000\n"),
                ("cpuacct.usage_percpu", "1000 2000 \n"),
                (
                    "cpuacct.usage_all",
                    "cpu user system\n0 600 400\n1 1500 500\n",
                ),
                ("cpuacct.stat", "user 2\nsystem 1\n"),
            ],
        );
        write(
            &at("cpu"),
            &[(
                "cpu.stat",
                "nr_periods 4\nnr_throttled 1\nthrottled_time 900\n",
            )],
        );
        write(
            &at("memory"),
            &[
                ("memory.usage_in_bytes", "1048576\n"),
                ("memory.limit_in_bytes", "9223372036854771712\n"),
                ("memory.max_usage_in_bytes", "2097152\n"),
                ("memory.failcnt", "0\n"),
                ("memory.memsw.usage_in_bytes", "1052672\n"),
                ("memory.stat", "cache 8192\nrss 4096\ntotal_cache 8192\n"),
                (
                    "memory.oom_control",
                    "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
                ),
            ],
        );
        write(
            &at("pids"),
            &[("pids.current", "1\n"), ("pids.max", "20\n")],
        );
        write(
            &at("blkio"),
            &[
                (
                    "blkio.throttle.io_service_bytes_recursive",
                    "8:16 Read 512\n8:16 Write 0\nTotal 512\n",
                ),
                (
                    "blkio.throttle.io_serviced_recursive",
                    "8:16 Read 1\nTotal 1\n",
                ),
            ],
        );
        write(&at("unified"), &[("hugetlb.2MB.current", "0\n")]);
        let cg = cgroup(
            Mode::Hybrid,
            &[
                ("cpu", Version::V1, at("cpu")),
                ("cpuacct", Version::V1, at("cpuacct")),
                ("memory", Version::V1, at("memory")),
                ("pids", Version::V1, at("pids")),
                ("blkio", Version::V1, at("blkio")),
                ("", Version::V2, at("unified")),
            ],
        );
        let stats = cg.stats().unwrap();
        let ticks_ns = 1_000_000_000 / clock_ticks();
        assert_eq!(stats.cpu.usage.total, 3000);
        assert_eq!(stats.cpu.usage.percpu, [1000, 2000]);
        assert_eq!(stats.cpu.usage.percpu_user, [600, 1500]);
        assert_eq!(stats.cpu.usage.percpu_kernel, [400, 500]);
        assert_eq!(stats.cpu.usage.user, 2 * ticks_ns);
        assert_eq!(stats.cpu.throttling.throttled_time, 900);
        assert_eq!(stats.memory.usage.usage, 1 << 20);
        assert_eq!(stats.memory.usage.max, 2 << 20);
        assert_eq!(stats.memory.swap.usage, 1_052_672);
        assert_eq!(stats.memory.cache, 8192);
        assert_eq!(
            stats.pids,
            Pids {
                current: 1,
                limit: 20
            }
        );
        assert_eq!(stats.blkio.io_service_bytes_recursive.len(), 2);
        assert_eq!(stats.blkio.io_serviced_recursive[0].minor, 16);
        assert!(stats.hugetlb.contains_key("2MB"));
        assert_eq!(cg.oom_kills().unwrap(), 2);
    }

    #[test]
    fn v2_oom_events_count() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("c1");
        write(&dir, &[("memory.events", "max 9\noom 3\noom_kill 2\n")]);
        assert_eq!(
            cgroup(Mode::Unified, &[("", Version::V2, dir)])
                .oom_kills()
                .unwrap(),
            3
        );
    }
}
