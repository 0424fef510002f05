//! Limits on cgroup v1 hierarchies, written through cgroups-rs's controllers.
//!
//! cgroups-rs's own v1 discovery (`hierarchies::V1`) reads the real `/proc/self/mountinfo`,
//! so this module builds its controllers directly on the directories `super::path` resolved.
//! That works on any v1 layout: co-mounted controllers (`cpu,cpuacct`) as well as one mount
//! per controller, as on hosts that mount `cpu` and `cpuacct` apart. The cpuset
//! initialisation is done here with our own reads: cgroups-rs does it in `Controller::create`,
//! but only logs its errors, and stops when the kernel's (empty) `cpuset.cpus` is missing,
//! as it is in a fake tree.

use std::path::Path;

use cgroups_rs::fs::cpu::CpuController;
use cgroups_rs::fs::cpuset::CpuSetController;
use cgroups_rs::fs::memory::MemController;
use cgroups_rs::fs::pid::PidController;

use super::file::{check, read_or_empty, write};
use super::limits::{self, Cpu, Limits, Memory};
use super::{CgroupError, Placement};

/// The memory+swap limit file; it exists only when the kernel accounts swap.
const MEMSW: &str = "memory.memsw.limit_in_bytes";

/// Initialise the cpusets and apply `limits` to the container's v1 `placements`.
///
/// `root` only names the cgroup root in errors about missing controllers.
pub fn apply(placements: &[Placement], limits: &Limits, root: &Path) -> Result<(), CgroupError> {
    let dir_of = |controller: &str| {
        placements
            .iter()
            .find(|p| p.has(controller))
            .map(|p| p.path.as_path())
            .ok_or_else(|| CgroupError::ControllerUnavailable {
                controller: controller.to_owned(),
                root: root.to_path_buf(),
            })
    };
    if let Some(cpuset) = placements.iter().find(|p| p.has("cpuset")) {
        init_cpuset(cpuset)?;
    }
    if limits.memory.is_set() {
        memory(dir_of("memory")?, &limits.memory)?;
    }
    if limits.cpu.has_bandwidth() {
        cpu(dir_of("cpu")?, &limits.cpu)?;
    }
    if limits.cpu.has_cpuset() {
        cpuset(dir_of("cpuset")?, &limits.cpu)?;
    }
    if !limits.devices.is_empty() {
        super::devices::apply_v1(dir_of("devices")?, &limits.devices)?;
    }
    if let Some(limit) = limits.pids {
        let max = limits::pids_max(limit);
        let dir = dir_of("pids")?;
        let result = PidController::new(dir.into(), dir.into(), false).set_pid_max(max);
        check(dir, "pids.max", max, result)?;
    }
    if limits.block_io.is_set() {
        super::blkio::apply_v1(dir_of("blkio")?, &limits.block_io)?;
    }
    // On a hybrid host hugetlb may live on the unified hierarchy only: `Cgroup` applies it
    // there.
    if !limits.hugepages.is_empty() && placements.iter().any(|p| p.has("hugetlb")) {
        super::hugetlb::apply(dir_of("hugetlb")?, &limits.hugepages, false)?;
    }
    if let Some(class) = limits.net_class {
        write(dir_of("net_cls")?, "net_cls.classid", &class.to_string())?;
    }
    for line in &limits.net_priorities {
        write(dir_of("net_prio")?, "net_prio.ifpriomap", line)?;
    }
    for line in &limits.rdma {
        write(dir_of("rdma")?, "rdma.max", line)?;
    }
    Ok(())
}

/// A new v1 cpuset starts with no CPUs and no memory nodes, and accepts no process until it
/// has some: copy them down from the parent into every directory we created (or into the
/// joined cgroup, if it is still empty).
fn init_cpuset(placement: &Placement) -> Result<(), CgroupError> {
    let dirs = match placement.created.as_slice() {
        [] => std::slice::from_ref(&placement.path),
        created => created,
    };
    for dir in dirs {
        let ctl = CpuSetController::new(dir.clone(), dir.clone(), false);
        for file in ["cpuset.cpus", "cpuset.mems"] {
            if !read_or_empty(&dir.join(file))?.is_empty() {
                continue;
            }
            let parent = dir.parent().unwrap_or(dir).join(file);
            let value = read_or_empty(&parent)?;
            if value.is_empty() {
                return Err(CgroupError::CpusetInit {
                    file: dir.join(file),
                });
            }
            let result = match file {
                "cpuset.cpus" => ctl.set_cpus(&value),
                _ => ctl.set_mems(&value),
            };
            check(dir, file, &value, result)?;
        }
    }
    Ok(())
}

fn cpuset(dir: &Path, cpu: &Cpu) -> Result<(), CgroupError> {
    let ctl = CpuSetController::new(dir.into(), dir.into(), false);
    if let Some(cpus) = &cpu.cpus {
        check(dir, "cpuset.cpus", cpus, ctl.set_cpus(cpus))?;
    }
    if let Some(mems) = &cpu.mems {
        check(dir, "cpuset.mems", mems, ctl.set_mems(mems))?;
    }
    Ok(())
}

/// runc's order: shares (read back, as the kernel clamps them), then period, then quota. A
/// shorter period can be refused (`EINVAL`) while the old quota would exceed the parent's
/// bandwidth; then it is retried after the quota is written.
fn cpu(dir: &Path, cpu: &Cpu) -> Result<(), CgroupError> {
    let ctl = CpuController::new(dir.into(), dir.into(), false);
    if cpu.shares != 0 {
        check(dir, "cpu.shares", cpu.shares, ctl.set_shares(cpu.shares))?;
        let applied = read_or_empty(&dir.join("cpu.shares"))?;
        if applied != cpu.shares.to_string() {
            return Err(CgroupError::ValueClamped {
                file: dir.join("cpu.shares"),
                requested: cpu.shares.to_string(),
                applied,
            });
        }
    }
    let mut period_pending = false;
    if cpu.period != 0 {
        match ctl.set_cfs_period(cpu.period) {
            Err(e) if cpu.quota != 0 && errno(&e) == Some(libc::EINVAL) => period_pending = true,
            result => check(dir, "cpu.cfs_period_us", cpu.period, result)?,
        }
    }
    if cpu.quota != 0 {
        check(
            dir,
            "cpu.cfs_quota_us",
            cpu.quota,
            ctl.set_cfs_quota(cpu.quota),
        )?;
    }
    if period_pending {
        let result = ctl.set_cfs_period(cpu.period);
        check(dir, "cpu.cfs_period_us", cpu.period, result)?;
    }
    Ok(())
}

/// Memory, swap and reservation, with runc's rules:
/// - memory unlimited and swap unset means swap unlimited too;
/// - when both are set, swap goes first if it grows (the kernel keeps memsw >= memory);
/// - without swap accounting (no `memory.memsw.limit_in_bytes`), a swap equal to the memory
///   limit ("no swap") or -1 ("unlimited", which it then is) is skipped, as runc and Docker
///   do; any other swap limit cannot be honoured and is an error.
fn memory(dir: &Path, memory: &Memory) -> Result<(), CgroupError> {
    let ctl = MemController::new(dir.into(), dir.into(), false);
    let has_memsw = dir.join(MEMSW).exists();
    let mut swap = memory.swap;
    if memory.limit == -1 && swap == 0 && has_memsw {
        swap = -1;
    }
    if swap != 0 && !has_memsw {
        if swap != memory.limit && swap != -1 {
            return Err(CgroupError::SwapUnsupported {
                file: dir.join(MEMSW),
                swap,
            });
        }
        swap = 0;
    }
    let set_limit = || match memory.limit {
        0 => Ok(()),
        limit => check(dir, "memory.limit_in_bytes", limit, ctl.set_limit(limit)),
    };
    let set_swap = || match swap {
        0 => Ok(()),
        swap => check(dir, MEMSW, swap, ctl.set_memswap_limit(swap)),
    };
    let swap_first = memory.limit != 0 && swap != 0 && (swap == -1 || current_limit(dir)? < swap);
    if swap_first {
        set_swap()?;
        set_limit()?;
    } else {
        set_limit()?;
        set_swap()?;
    }
    if let Some(swappiness) = memory.swappiness {
        write(dir, "memory.swappiness", &swappiness.to_string())?;
    }
    if memory.disable_oom_killer {
        write(dir, "memory.oom_control", "1")?;
    }
    if memory.reservation != 0 {
        let result = ctl.set_soft_limit(memory.reservation);
        check(
            dir,
            "memory.soft_limit_in_bytes",
            memory.reservation,
            result,
        )?;
    }
    if memory.kernel_tcp != 0 {
        let result = ctl.set_tcp_limit(memory.kernel_tcp);
        check(
            dir,
            "memory.kmem.tcp.limit_in_bytes",
            memory.kernel_tcp,
            result,
        )?;
    }
    Ok(())
}

/// The memory limit in force, in bytes (unlimited reads as a huge number).
fn current_limit(dir: &Path) -> Result<i64, CgroupError> {
    let text = read_or_empty(&dir.join("memory.limit_in_bytes"))?;
    Ok(text
        .parse::<u64>()
        .map_or(i64::MAX, |v| i64::try_from(v).unwrap_or(i64::MAX)))
}

/// The OS error number under a cgroups-rs error, if it has one.
fn errno(error: &cgroups_rs::fs::error::Error) -> Option<i32> {
    let source = std::error::Error::source(error)?;
    source.downcast_ref::<std::io::Error>()?.raw_os_error()
}
