//! Limits on the cgroup v2 (unified) hierarchy, and the controllers its ancestors must enable.
//!
//! Limits are written through cgroups-rs's controllers, built on the resolved directory. The
//! controller enabling is done here with plain writes: cgroups-rs's `create_v2_cgroup` reads
//! the available controllers from a hard-coded `/sys/fs/cgroup` (so it cannot run against a
//! test tree) and ignores every `cgroup.subtree_control` write error.

use std::collections::BTreeSet;
use std::io;
use std::path::{Path, PathBuf};

use cgroups_rs::fs::cpu::CpuController;
use cgroups_rs::fs::cpuset::CpuSetController;
use cgroups_rs::fs::memory::{MemController, SetMemory};
use cgroups_rs::fs::pid::PidController;
use cgroups_rs::fs::MaxValue;

use super::file::{check, read_or_empty, write};
use super::limits::{self, Cpu, Limits, Memory};
use super::CgroupError;

/// Why enabling a controller may fail with `EBUSY`.
const BUSY_HINT: &str = ": that cgroup holds processes, and cgroup v2 lets only leaf cgroups \
     hold them (give an absolute cgroupsPath below a cgroup without processes)";

/// Enable controllers for `dir`: in `cgroup.subtree_control` of every cgroup from the
/// hierarchy root `mount_point` down to `dir`'s parent, as runc does.
///
/// Every controller the root offers is enabled (so the container's cgroup has them all, for
/// limits and statistics), best effort; failing to enable one of `required` (those the limits
/// write to) is an error, and so is one the root does not offer.
pub fn enable_controllers(
    mount_point: &Path,
    dir: &Path,
    required: &[&str],
) -> Result<(), CgroupError> {
    let available = read_or_empty(&mount_point.join("cgroup.controllers"))?;
    let available: Vec<&str> = available.split_whitespace().collect();
    if let Some(missing) = required.iter().find(|c| !available.contains(c)) {
        return Err(CgroupError::ControllerUnavailable {
            controller: (*missing).to_owned(),
            root: mount_point.to_path_buf(),
        });
    }
    for cgroup in ancestors(mount_point, dir) {
        let file = cgroup.join("cgroup.subtree_control");
        let enabled = read_or_empty(&file)?;
        let enabled: BTreeSet<&str> = enabled.split_whitespace().collect();
        let missing: Vec<&str> = available
            .iter()
            .copied()
            .filter(|c| !enabled.contains(c))
            .collect();
        if missing.is_empty() {
            continue;
        }
        let all = missing.iter().map(|c| format!("+{c}")).collect::<Vec<_>>();
        if write(&cgroup, "cgroup.subtree_control", &all.join(" ")).is_ok() {
            continue;
        }
        // The kernel applies all or nothing: retry one by one so that an optional controller
        // that cannot be enabled here (e.g. a realtime cpu setting) does not block the rest.
        for controller in missing {
            let result = std::fs::write(&file, format!("+{controller}"));
            if let Err(source) = result {
                if required.contains(&controller) {
                    return Err(enable_error(controller, &file, source));
                }
            }
        }
    }
    Ok(())
}

fn enable_error(controller: &str, file: &Path, source: io::Error) -> CgroupError {
    let hint = match source.raw_os_error() {
        Some(libc::EBUSY) => BUSY_HINT,
        _ => "",
    };
    CgroupError::EnableController {
        controller: controller.to_owned(),
        file: file.to_path_buf(),
        hint,
        source,
    }
}

/// The cgroups from `root` (included) down to `dir` (excluded).
fn ancestors(root: &Path, dir: &Path) -> Vec<PathBuf> {
    let mut chain: Vec<PathBuf> = dir
        .ancestors()
        .skip(1)
        .take_while(|a| a.starts_with(root))
        .map(Path::to_path_buf)
        .collect();
    chain.reverse();
    chain
}

/// Apply `limits` to the container's cgroup `dir`.
pub fn apply(dir: &Path, limits: &Limits) -> Result<(), CgroupError> {
    if limits.memory.is_set() {
        memory(dir, &limits.memory)?;
    }
    if limits.cpu.has_bandwidth() {
        cpu(dir, &limits.cpu)?;
    }
    let cpuset = CpuSetController::new(dir.into(), dir.into(), true);
    if let Some(cpus) = &limits.cpu.cpus {
        check(dir, "cpuset.cpus", cpus, cpuset.set_cpus(cpus))?;
    }
    if let Some(mems) = &limits.cpu.mems {
        check(dir, "cpuset.mems", mems, cpuset.set_mems(mems))?;
    }
    if let Some(limit) = limits.pids {
        let max = limits::pids_max(limit);
        let result = PidController::new(dir.into(), dir.into(), true).set_pid_max(max);
        check(dir, "pids.max", max, result)?;
    }
    if limits.block_io.is_set() {
        super::blkio::apply_v2(dir, &limits.block_io)?;
    }
    super::hugetlb::apply(dir, &limits.hugepages, true)?;
    for line in &limits.rdma {
        write(dir, "rdma.max", line)?;
    }
    if !limits.unified.is_empty() {
        let enabled = read_or_empty(&dir.join("cgroup.controllers"))?;
        let enabled: Vec<&str> = enabled.split_whitespace().collect();
        limits.unified.apply(dir, &enabled)?;
    }
    Ok(())
}

/// The fields of `limits` that cgroup v2 in `dir` cannot apply (to be reported).
pub fn ignored(dir: &Path, limits: &Limits) -> Vec<&'static str> {
    let bfq = dir.join("io.bfq.weight").exists();
    limits.block_io.v2_ignored(bfq)
}

/// `cpu.weight` from the shares, and `cpu.max`. cpu.max is written directly, in one write as
/// runc does: cgroups-rs reads the file first and rewrites both fields.
fn cpu(dir: &Path, cpu: &Cpu) -> Result<(), CgroupError> {
    let weight = limits::cpu_weight(cpu.shares);
    if weight != 0 {
        let ctl = CpuController::new(dir.into(), dir.into(), true);
        check(dir, "cpu.weight", weight, ctl.set_shares(weight))?;
    }
    if let Some(max) = limits::cpu_max(cpu) {
        write(dir, "cpu.max", &max)?;
    }
    Ok(())
}

/// `memory.swap.max` (swap alone: OCI's memory+swap minus memory), `memory.max` and
/// `memory.low`, with runc's rules: an unset swap is never written (writing nothing would
/// mean 0), swap equal to memory disables swap, and without swap accounting (no
/// `memory.swap.max`) only "unlimited" and "none" are accepted, silently.
fn memory(dir: &Path, memory: &Memory) -> Result<(), CgroupError> {
    let ctl = MemController::new(dir.into(), dir.into(), true);
    let swap = limits::swap_v2(memory);
    // Swap equal to memory gives 0, which must be written (unlike an unset swap).
    if swap != 0 || memory.swap > 0 {
        if dir.join("memory.swap.max").exists() {
            let value = limits::max_value(swap).unwrap_or(MaxValue::Value(0));
            check(dir, "memory.swap.max", value, ctl.set_memswap_limit(swap))?;
        } else if swap > 0 {
            return Err(CgroupError::SwapUnsupported {
                file: dir.join("memory.swap.max"),
                swap: memory.swap,
            });
        }
    }
    if let Some(max) = limits::max_value(memory.limit) {
        let set = SetMemory {
            max: Some(max),
            ..SetMemory::default()
        };
        check(dir, "memory.max", max, ctl.set_mem(set))?;
    }
    if let Some(low) = limits::max_value(memory.reservation) {
        let set = SetMemory {
            low: Some(low),
            ..SetMemory::default()
        };
        check(dir, "memory.low", low, ctl.set_mem(set))?;
    }
    Ok(())
}
