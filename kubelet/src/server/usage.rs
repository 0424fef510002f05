//! What a cgroup has used: cpu time and memory, read from cgroup v1 (`cpuacct.usage`,
//! `memory.usage_in_bytes`, `memory.stat`'s `total_*`) or v2 (`cpu.stat`'s `usage_usec`,
//! `memory.current`, `memory.stat`), the way cAdvisor reads them for the kubelet.
//!
//! The working set is usage minus inactive file pages (what the kernel would reclaim
//! first), as upstream computes it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Where the cpu and memory controllers are mounted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CgroupFs {
    /// v1 (or hybrid): the cpuacct and memory hierarchies' mount points.
    V1 {
        /// The hierarchy with `cpuacct`.
        cpuacct: PathBuf,
        /// The hierarchy with `memory`.
        memory: PathBuf,
    },
    /// v2: the unified hierarchy's mount point.
    V2 {
        /// Its mount point (normally `/sys/fs/cgroup`).
        root: PathBuf,
    },
}

impl CgroupFs {
    /// The host's layout (from `/proc/self/mountinfo`): v1 controllers when mounted
    /// (the hybrid layout keeps them there), else the unified hierarchy.
    pub fn detect() -> Option<CgroupFs> {
        let layout = runtime::cgroup::Host::default().layout().ok()?;
        if let (Some(cpuacct), Some(memory)) = (layout.v1("cpuacct"), layout.v1("memory")) {
            return Some(CgroupFs::V1 {
                cpuacct: cpuacct.mount_point.clone(),
                memory: memory.mount_point.clone(),
            });
        }
        layout.v2().map(|v2| CgroupFs::V2 {
            root: v2.mount_point.clone(),
        })
    }

    /// What the cgroup at `cgroup` (from the hierarchies' root) has used; None when it
    /// does not exist (any more).
    pub fn read(&self, cgroup: &Path) -> Option<Usage> {
        let relative = cgroup.strip_prefix("/").unwrap_or(cgroup);
        match self {
            CgroupFs::V1 { cpuacct, memory } => {
                read_v1(&cpuacct.join(relative), &memory.join(relative))
            }
            CgroupFs::V2 { root } => read_v2(&root.join(relative)),
        }
    }

    /// The pids in the cgroup (its own `cgroup.procs`).
    pub fn pids(&self, cgroup: &Path) -> Vec<u32> {
        let relative = cgroup.strip_prefix("/").unwrap_or(cgroup);
        let dir = match self {
            CgroupFs::V1 { memory, .. } => memory.join(relative),
            CgroupFs::V2 { root } => root.join(relative),
        };
        std::fs::read_to_string(dir.join("cgroup.procs"))
            .map(|text| text.lines().filter_map(|l| l.trim().parse().ok()).collect())
            .unwrap_or_default()
    }
}

/// A cgroup's usage at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Cpu time used since the cgroup was made, in nanoseconds.
    pub cpu_ns: Option<u64>,
    /// Memory in use (page cache included), in bytes.
    pub memory_bytes: Option<u64>,
    /// Memory in use minus inactive file pages.
    pub working_set_bytes: Option<u64>,
    /// Anonymous memory (and swap cache).
    pub rss_bytes: Option<u64>,
    /// Page faults.
    pub page_faults: Option<u64>,
    /// Major page faults.
    pub major_page_faults: Option<u64>,
}

fn read_v1(cpuacct: &Path, memory: &Path) -> Option<Usage> {
    if !cpuacct.is_dir() && !memory.is_dir() {
        return None;
    }
    let stat = read_stat(&memory.join("memory.stat"));
    let usage = read_number(&memory.join("memory.usage_in_bytes"));
    Some(Usage {
        cpu_ns: read_number(&cpuacct.join("cpuacct.usage")),
        memory_bytes: usage,
        working_set_bytes: working_set(usage, stat.get("total_inactive_file")),
        rss_bytes: stat.get("total_rss").copied(),
        page_faults: stat.get("total_pgfault").copied(),
        major_page_faults: stat.get("total_pgmajfault").copied(),
    })
}

fn read_v2(dir: &Path) -> Option<Usage> {
    if !dir.is_dir() {
        return None;
    }
    let cpu = read_stat(&dir.join("cpu.stat"));
    let stat = read_stat(&dir.join("memory.stat"));
    let usage = read_number(&dir.join("memory.current"));
    Some(Usage {
        cpu_ns: cpu.get("usage_usec").map(|us| us.saturating_mul(1000)),
        memory_bytes: usage,
        working_set_bytes: working_set(usage, stat.get("inactive_file")),
        rss_bytes: stat.get("anon").copied(),
        page_faults: stat.get("pgfault").copied(),
        major_page_faults: stat.get("pgmajfault").copied(),
    })
}

fn working_set(usage: Option<u64>, inactive_file: Option<&u64>) -> Option<u64> {
    usage.map(|u| u.saturating_sub(inactive_file.copied().unwrap_or(0)))
}

/// A file holding one number; None when missing or not a number.
fn read_number(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// A flat-keyed file (`key value` per line), as `memory.stat` and `cpu.stat` are.
fn read_stat(path: &Path) -> BTreeMap<String, u64> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter_map(|line| {
            let (key, value) = line.split_once(' ')?;
            Some((key.to_owned(), value.trim().parse().ok()?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, files: &[(&str, &str)]) {
        std::fs::create_dir_all(dir).unwrap();
        for (name, text) in files {
            std::fs::write(dir.join(name), text).unwrap();
        }
    }

    #[test]
    fn v1_reads_cpuacct_and_memory_hierarchies() {
        let tmp = tempfile::tempdir().unwrap();
        let fs = CgroupFs::V1 {
            cpuacct: tmp.path().join("cpu,cpuacct"),
            memory: tmp.path().join("memory"),
        };
        let pod = "kubepods/besteffort/pod-u1";
        write(
            &tmp.path().join("cpu,cpuacct").join(pod),
            &[("cpuacct.usage", "1500000000\n")],
        );
        write(
            &tmp.path().join("memory").join(pod),
            &[
                ("memory.usage_in_bytes", "10485760\n"),
                (
                    "memory.stat",
                    "cache 4096\nrss 100\ntotal_inactive_file 2097152\ntotal_rss 8388608\ntotal_pgfault 42\ntotal_pgmajfault 3\n",
                ),
                ("cgroup.procs", "12\n34\n"),
            ],
        );
        let usage = fs.read(Path::new("/kubepods/besteffort/pod-u1")).unwrap();
        assert_eq!(
            usage,
            Usage {
                cpu_ns: Some(1_500_000_000),
                memory_bytes: Some(10 << 20),
                working_set_bytes: Some(8 << 20),
                rss_bytes: Some(8 << 20),
                page_faults: Some(42),
                major_page_faults: Some(3),
            }
        );
        assert_eq!(fs.pids(Path::new("/kubepods/besteffort/pod-u1")), [12, 34]);
        assert_eq!(fs.read(Path::new("/kubepods/gone")), None);
    }

    #[test]
    fn v2_reads_one_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let fs = CgroupFs::V2 {
            root: tmp.path().to_path_buf(),
        };
        write(
            &tmp.path().join("kubepods/pod-u2/c1"),
            &[
                (
                    "cpu.stat",
                    "usage_usec 2500\nuser_usec 2000\nsystem_usec 500\n",
                ),
                ("memory.current", "3000000\n"),
                (
                    "memory.stat",
                    "anon 1000000\nfile 2000000\ninactive_file 500000\npgfault 7\npgmajfault 1\n",
                ),
            ],
        );
        let usage = fs.read(Path::new("/kubepods/pod-u2/c1")).unwrap();
        assert_eq!(usage.cpu_ns, Some(2_500_000));
        assert_eq!(usage.memory_bytes, Some(3_000_000));
        assert_eq!(usage.working_set_bytes, Some(2_500_000));
        assert_eq!(usage.rss_bytes, Some(1_000_000));
        assert_eq!(
            (usage.page_faults, usage.major_page_faults),
            (Some(7), Some(1))
        );
    }

    #[test]
    fn missing_files_leave_gaps_not_errors() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join("empty")).unwrap();
        let fs = CgroupFs::V2 {
            root: tmp.path().to_path_buf(),
        };
        assert_eq!(fs.read(Path::new("/empty")), Some(Usage::default()));
    }
}
