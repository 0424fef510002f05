//! `/stats/summary`: the node's and its pods' usage, read from `/proc`, the cgroups
//! ([`usage`](super::usage)) and the filesystems, in the [`summary`](super::summary)
//! shape.
//!
//! `usageNanoCores` is a rate: each cgroup's previous reading is kept, and the rate is
//! taken over at least [`MIN_WINDOW`] (a background sampler keeps one fresh, so the first
//! scrape has a rate too). The node's own figures come from `/proc` (`stat`, `meminfo`,
//! `vmstat`), which work the same on cgroup v1 and v2.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use chrono::{DateTime, SecondsFormat, Utc};

use super::summary::*;
use super::usage::{CgroupFs, Usage};
use crate::api::PodCgroups;

/// The shortest window a cpu rate is taken over.
pub const MIN_WINDOW: chrono::Duration = chrono::Duration::seconds(1);
/// Nanoseconds per clock tick of `/proc/stat` (USER_HZ is 100 on Linux).
const NANOS_PER_TICK: u64 = 10_000_000;

/// Where the node's figures are read from; tests point these at fixture trees.
#[derive(Debug, Clone)]
pub struct Host {
    /// The proc filesystem (`/proc`).
    pub proc: PathBuf,
    /// The cgroup hierarchies; None when they cannot be found (pods get no cpu/memory).
    pub cgroups: Option<CgroupFs>,
    /// The kubelet's root (the node filesystem of the summary).
    pub root_dir: PathBuf,
    /// The image store (the runtime's image filesystem).
    pub image_dir: PathBuf,
}

impl Host {
    /// The real host, with the kubelet's root and image folders.
    pub fn detect(root_dir: &Path, image_dir: &Path) -> Host {
        Host {
            proc: PathBuf::from("/proc"),
            cgroups: CgroupFs::detect(),
            root_dir: root_dir.to_path_buf(),
            image_dir: image_dir.to_path_buf(),
        }
    }
}

/// Reads summaries, keeping each cgroup's previous cpu reading for rates.
pub struct Stats {
    host: Host,
    node_name: String,
    start_time: DateTime<Utc>,
    /// The previous cpu reading by cgroup (`/` for the node).
    previous: Mutex<HashMap<PathBuf, Reading>>,
}

/// A cgroup's cpu time at one moment, and the rate up to it.
#[derive(Debug, Clone, Copy)]
struct Reading {
    time: DateTime<Utc>,
    cpu: u64,
    rate: Option<u64>,
}

impl Stats {
    /// Stats of the node `node_name`, which started at `start_time`.
    pub fn new(host: Host, node_name: &str, start_time: DateTime<Utc>) -> Stats {
        Stats {
            host,
            node_name: node_name.into(),
            start_time,
            previous: Mutex::new(HashMap::new()),
        }
    }

    /// The summary at `now` for the pods `pods`.
    pub fn summary(&self, pods: &[PodCgroups], now: DateTime<Utc>) -> Summary {
        let time = rfc3339(now);
        let mut seen = Vec::new();
        let node_cpu = read_proc_cpu(&self.host.proc);
        let node = NodeStats {
            node_name: self.node_name.clone(),
            start_time: rfc3339(self.start_time),
            cpu: self.cpu(Path::new("/"), node_cpu, now, &mut seen),
            memory: node_memory(&self.host.proc, &time),
            network: read_net_dev(&self.host.proc.join("self/net/dev"), &time),
            fs: fs_stats(&self.host.root_dir, &time),
            runtime: RuntimeStats {
                image_fs: fs_stats(&self.host.image_dir, &time),
            },
            rlimit: rlimit(&self.host.proc, &time),
        };
        let pods = pods
            .iter()
            .map(|pod| self.pod(pod, now, &mut seen))
            .collect();
        self.lock().retain(|key, _| seen.contains(key));
        Summary { node, pods }
    }

    fn pod(&self, pod: &PodCgroups, now: DateTime<Utc>, seen: &mut Vec<PathBuf>) -> PodStats {
        let time = rfc3339(now);
        let usage = self.read(&pod.cgroup);
        let containers: Vec<ContainerStats> = pod
            .containers
            .iter()
            .map(|c| {
                let usage = self.read(&c.cgroup);
                ContainerStats {
                    name: c.name.clone(),
                    start_time: rfc3339(c.start_time),
                    cpu: usage.map(|u| self.cpu(&c.cgroup, u.cpu_ns, now, seen)),
                    memory: usage.map(|u| memory(&u, None, &time)),
                    logs: c.log_path.as_deref().map(|log| logs_stats(log, &time)),
                }
            })
            .collect();
        let logs_bytes: u64 = containers
            .iter()
            .filter_map(|c| c.logs.as_ref()?.used_bytes)
            .sum();
        let network = pod
            .containers
            .iter()
            .filter_map(|c| self.host.cgroups.as_ref()?.pids(&c.cgroup).first().copied())
            .find_map(|pid| read_net_dev(&self.host.proc.join(format!("{pid}/net/dev")), &time));
        PodStats {
            pod_ref: PodReference {
                name: pod.name.clone(),
                namespace: pod.namespace.clone(),
                uid: pod.uid.clone(),
            },
            start_time: rfc3339(pod.start_time),
            containers,
            cpu: usage.map(|u| self.cpu(&pod.cgroup, u.cpu_ns, now, seen)),
            memory: usage.map(|u| memory(&u, None, &time)),
            network,
            ephemeral_storage: Some(FsStats {
                time: time.clone(),
                used_bytes: Some(logs_bytes),
                ..FsStats::default()
            }),
        }
    }

    fn read(&self, cgroup: &Path) -> Option<Usage> {
        self.host.cgroups.as_ref()?.read(cgroup)
    }

    /// The cpu figures of `key` at `now`, with the rate since its previous reading.
    fn cpu(
        &self,
        key: &Path,
        cpu_ns: Option<u64>,
        now: DateTime<Utc>,
        seen: &mut Vec<PathBuf>,
    ) -> CpuStats {
        seen.push(key.to_path_buf());
        let mut previous = self.lock();
        let rate = cpu_ns.and_then(|cpu| {
            let last = previous.get(key).copied();
            // Back-to-back scrapes get the last rate rather than one over a few
            // milliseconds.
            if let Some(last) = last.filter(|l| now - l.time < MIN_WINDOW && cpu >= l.cpu) {
                return last.rate;
            }
            let rate = last.and_then(|last| {
                let window = (now - last.time).num_nanoseconds()?;
                (window > 0 && cpu >= last.cpu)
                    .then(|| ((cpu - last.cpu) as u128 * 1_000_000_000 / window as u128) as u64)
            });
            previous.insert(
                key.to_path_buf(),
                Reading {
                    time: now,
                    cpu,
                    rate,
                },
            );
            rate
        });
        CpuStats {
            time: rfc3339(now),
            usage_nano_cores: rate,
            usage_core_nano_seconds: cpu_ns,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<PathBuf, Reading>> {
        self.previous.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Kubernetes' time format (RFC 3339, seconds, `Z`).
fn rfc3339(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn memory(usage: &Usage, capacity: Option<u64>, time: &str) -> MemoryStats {
    MemoryStats {
        time: time.into(),
        available_bytes: capacity
            .zip(usage.working_set_bytes)
            .map(|(c, w)| c.saturating_sub(w)),
        usage_bytes: usage.memory_bytes,
        working_set_bytes: usage.working_set_bytes,
        rss_bytes: usage.rss_bytes,
        page_faults: usage.page_faults,
        major_page_faults: usage.major_page_faults,
    }
}

/// The node's busy cpu time from `/proc/stat` (all but idle and iowait).
fn read_proc_cpu(proc: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(proc.join("stat")).ok()?;
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let ticks: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is inside user).
    let busy: u64 = ticks
        .iter()
        .take(8)
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4)
        .map(|(_, t)| t)
        .sum();
    Some(busy * NANOS_PER_TICK)
}

/// The node's memory from `/proc/meminfo` and `/proc/vmstat`.
fn node_memory(proc: &Path, time: &str) -> MemoryStats {
    let kib = read_keyed(&proc.join("meminfo"), ':')
        .into_iter()
        .map(|(k, v)| (k, v * 1024))
        .collect::<BTreeMap<_, _>>();
    let vmstat = read_keyed(&proc.join("vmstat"), ' ');
    let total = kib.get("MemTotal").copied();
    let used = total
        .zip(kib.get("MemFree"))
        .map(|(t, f)| t.saturating_sub(*f));
    let usage = Usage {
        cpu_ns: None,
        memory_bytes: used,
        working_set_bytes: used
            .map(|u| u.saturating_sub(kib.get("Inactive(file)").copied().unwrap_or(0))),
        rss_bytes: kib.get("AnonPages").copied(),
        page_faults: vmstat.get("pgfault").copied(),
        major_page_faults: vmstat.get("pgmajfault").copied(),
    };
    memory(&usage, total, time)
}

/// `key: value [kB]` or `key value` lines.
fn read_keyed(path: &Path, separator: char) -> BTreeMap<String, u64> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter_map(|line| {
            let (key, rest) = line.split_once(separator)?;
            let value = rest.split_whitespace().next()?.parse().ok()?;
            Some((key.trim().to_owned(), value))
        })
        .collect()
}

/// The interfaces of a `net/dev` file, loopback left out; the first is the default one
/// (`eth0` if there is one).
fn read_net_dev(path: &Path, time: &str) -> Option<NetworkStats> {
    let text = std::fs::read_to_string(path).ok()?;
    let interfaces: Vec<InterfaceStats> = text
        .lines()
        .skip(2)
        .filter_map(|line| {
            let (name, counters) = line.split_once(':')?;
            let n: Vec<u64> = counters
                .split_whitespace()
                .filter_map(|f| f.parse().ok())
                .collect();
            (n.len() >= 16).then(|| InterfaceStats {
                name: name.trim().into(),
                rx_bytes: n[0],
                rx_errors: n[2],
                tx_bytes: n[8],
                tx_errors: n[10],
            })
        })
        .filter(|i| i.name != "lo")
        .collect();
    let default = interfaces
        .iter()
        .find(|i| i.name == "eth0")
        .or(interfaces.first())?
        .clone();
    Some(NetworkStats {
        time: time.into(),
        default,
        interfaces,
    })
}

/// Space and inodes of the filesystem holding `path`.
fn fs_stats(path: &Path, time: &str) -> Option<FsStats> {
    let vfs = nix::sys::statvfs::statvfs(path).ok()?;
    let block = vfs.fragment_size() as u64;
    let (blocks, free, avail) = (
        vfs.blocks() as u64,
        vfs.blocks_free() as u64,
        vfs.blocks_available() as u64,
    );
    let (files, files_free) = (vfs.files() as u64, vfs.files_free() as u64);
    Some(FsStats {
        time: time.into(),
        available_bytes: Some(avail * block),
        capacity_bytes: Some(blocks * block),
        used_bytes: Some(blocks.saturating_sub(free) * block),
        inodes_free: Some(files_free),
        inodes: Some(files),
        inodes_used: Some(files.saturating_sub(files_free)),
    })
}

/// A container's logs: the space of its log folder (rotated files included) on the
/// filesystem that holds it.
fn logs_stats(log: &Path, time: &str) -> FsStats {
    let folder = log.parent().unwrap_or(log);
    let used = std::fs::read_dir(folder)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok()?.metadata().ok())
                .filter(|m| m.is_file())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0);
    FsStats {
        used_bytes: Some(used),
        ..fs_stats(folder, time).unwrap_or_else(|| FsStats {
            time: time.into(),
            ..FsStats::default()
        })
    }
}

/// `kernel.pid_max` and the number of threads (`/proc/loadavg`'s `running/total`).
fn rlimit(proc: &Path, time: &str) -> Option<RlimitStats> {
    let maxpid = std::fs::read_to_string(proc.join("sys/kernel/pid_max"))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let loadavg = std::fs::read_to_string(proc.join("loadavg")).ok()?;
    let curproc = loadavg
        .split_whitespace()
        .nth(3)?
        .split_once('/')?
        .1
        .parse()
        .ok()?;
    Some(RlimitStats {
        time: time.into(),
        maxpid,
        curproc,
    })
}

#[cfg(test)]
#[path = "stats_tests.rs"]
mod tests;
