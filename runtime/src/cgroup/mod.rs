//! Control groups for one container, on cgroup v1 (incl. the hybrid layout) and v2.
//!
//! A [`Cgroup`] is the container's directory in every hierarchy it joins. [`Cgroup::create`]
//! resolves the OCI `linux.cgroupsPath` as runc's cgroupfs driver does (`path`), creates the
//! directories and applies `linux.resources` (`limits`, then `v1` or `v2`); the result
//! is serializable, so `delete`, `kill --all` and `ps` find it again from the state file.
//!
//! # Layouts
//! [`hierarchy::detect`] tells the layout from the mount table:
//! - **v2** (cgroup2 at `/sys/fs/cgroup`): one directory; the controllers are enabled in
//!   every ancestor's `cgroup.subtree_control`.
//! - **v1**: one directory per mounted hierarchy, including controller-less ones such as
//!   `name=systemd`; a new cpuset is given its parent's CPUs and memory nodes.
//! - **hybrid** (v1 controllers plus cgroup2 below the root, e.g. `/sys/fs/cgroup/unified`):
//!   as v1, and the container also joins the v2 hierarchy (as runc does), where no limit is
//!   written. crun refuses this layout; it is what the development host runs, with `cpu` and
//!   `cpuacct` mounted apart.
//!
//! # What cgroups-rs does, and what it cannot
//! cgroups-rs (0.5) writes the interface files: its memory, cpu, cpuset and pids controllers
//! are built on the directories resolved here. Its discovery cannot be used: `hierarchies::auto`
//! and `V2` hard-code `/sys/fs/cgroup` and read the real `/proc/self/mountinfo` (no fixture tree
//! can stand in), its v1 hierarchy ignores the hybrid layout's unified mount, its v2
//! `create` ignores `cgroup.subtree_control` errors, and its OCI `FsManager` resolves paths
//! from the root only, writes `memory.swap.max` even when swap is unset, and reports
//! `InvalidLinuxResource` without saying which. Those parts are done here with file writes.
//!
//! # Joining and removing
//! A container's processes enter it through an [`Entry`] (`entry`): born into the v2
//! directory, joining each v1 hierarchy themselves, so no cgroup-wide lock is taken.
//! Creating a cgroup that already exists joins it, as runc does: the limits are written to it
//! even if it holds processes. [`Cgroup::remove`] removes only the directories
//! [`Cgroup::create`] made (the container's own, and any ancestors it had to create), never a
//! cgroup that existed before, so a joined pod cgroup outlives the container.
//!
//! # Devices and the hybrid layout
//! The device rules go to the v1 `devices` controller, or on v2 into an eBPF device filter
//! attached to the container's directory. On a hybrid host the v1 controller suffices (as in
//! runc, no filter is attached to the unified hierarchy); only if `devices` is not mounted
//! there does the filter go to the container's unified directory. `hugepageLimits` likewise
//! go to the unified directory when hugetlb is only on cgroup v2.
//!
//! # Not applied
//! `memory.kernel` (kernels since 5.16 ignore it, runc 1.1 too), on v2 `network`,
//! `memory.{kernelTCP,swappiness,disableOOMKiller}`, `blockIO.leafWeight` (and per-device
//! weights without BFQ), and the realtime, idle and burst cpu settings are reported in a
//! warning and otherwise ignored. Anything else the host cannot honour is an error.

mod blkio;
mod bpf;
mod device_filter;
mod devices;
mod dir;
mod entry;
mod error;
mod file;
mod freezer;
pub mod hierarchy;
mod hugetlb;
mod limits;
mod path;
pub mod stats;
mod unified;
mod update;
mod v1;
mod v2;

#[cfg(test)]
mod fixture_tests;
#[cfg(test)]
mod host_tests;

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::Duration;

use oci_spec::runtime::LinuxResources;
use serde::{Deserialize, Serialize};

pub use bpf::DeviceProgram;
pub use device_filter::{program as compile_device_filter, FilterError, Insn};
pub use devices::{rules as device_rules, with_device_nodes, DeviceRule};
pub use entry::Entry;
pub use error::CgroupError;
pub use freezer::FreezeError;
pub use hierarchy::{detect, Layout, Mode, Version};
pub use stats::Stats;

use limits::Limits;
use path::InnerPath;

/// How often [`Cgroup::remove`] tries `rmdir` on busy cgroups, and its first pause (doubled
/// each time): about 0.3 s in all, for all hierarchies together, long enough for killed
/// processes to be reaped.
const REMOVE_ATTEMPTS: u32 = 6;
const FIRST_REMOVE_PAUSE: Duration = Duration::from_millis(10);

/// Where the host shows its cgroups. [`Host::default`] is the real one; tests point these at
/// a temporary directory holding a fake cgroup tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    /// The root under which the cgroup filesystems are mounted, normally `/sys/fs/cgroup`.
    pub root: PathBuf,
    /// The caller's mount table, normally `/proc/self/mountinfo`.
    pub mountinfo: PathBuf,
    /// The caller's own cgroups, normally `/proc/self/cgroup`.
    pub own_cgroup: PathBuf,
    /// Whether v2 device rules are attached as a BPF program (normally true). A fake tree is
    /// no cgroup2 filesystem, so tests of one set it to false: the rules are then compiled
    /// (and so validated) but not attached.
    pub device_filters: bool,
}

impl Default for Host {
    fn default() -> Host {
        Host {
            root: PathBuf::from("/sys/fs/cgroup"),
            mountinfo: PathBuf::from("/proc/self/mountinfo"),
            own_cgroup: PathBuf::from("/proc/self/cgroup"),
            device_filters: true,
        }
    }
}

impl Host {
    /// Read the mount table and tell the cgroup layout.
    pub fn layout(&self) -> Result<Layout, CgroupError> {
        detect(&read_host_file(&self.mountinfo)?, &self.root)
    }
}

/// The container's cgroup in one hierarchy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    /// The hierarchy, named as `/proc/<pid>/cgroup` names it: `memory`, `cpu,cpuacct`,
    /// `name=systemd`, or `""` for cgroup v2.
    pub hierarchy: String,
    /// The hierarchy's cgroup version.
    pub version: Version,
    /// The container's cgroup directory, e.g. `/sys/fs/cgroup/memory/<id>`.
    pub path: PathBuf,
    /// The directories [`Cgroup::create`] made, outermost first (the last is `path`); empty if
    /// the container joined an existing cgroup. Exactly these are removed.
    pub created: Vec<PathBuf>,
}

impl Placement {
    /// Whether this hierarchy carries the v1 `controller`.
    pub fn has(&self, controller: &str) -> bool {
        self.hierarchy.split(',').any(|c| c == controller)
    }
}

/// A container's cgroup, across every hierarchy it lives in. Serializable: stored in the
/// container's state file so `delete`/`kill --all`/`ps` find it later.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cgroup {
    /// The host's layout when the cgroup was created.
    mode: Mode,
    /// One entry per hierarchy; in hybrid mode the v2 one is last.
    placements: Vec<Placement>,
}

impl Cgroup {
    /// Resolve the OCI `linux.cgroupsPath` (absolute: from each hierarchy's root; relative:
    /// relative to the calling process's own cgroup, as runc's cgroupfs driver does; None:
    /// relative path `<id>`), create the directories, and apply `linux.resources`.
    ///
    /// The resources are validated before anything is created; if a later step fails, the
    /// directories made so far are removed again. An existing cgroup is joined (see the
    /// module documentation).
    pub fn create(
        cgroups_path: Option<&Path>,
        id: &str,
        resources: Option<&LinuxResources>,
    ) -> Result<Cgroup, CgroupError> {
        Cgroup::create_on(&Host::default(), cgroups_path, id, resources)
    }

    /// [`Cgroup::create`] on the cgroups `host` describes.
    pub fn create_on(
        host: &Host,
        cgroups_path: Option<&Path>,
        id: &str,
        resources: Option<&LinuxResources>,
    ) -> Result<Cgroup, CgroupError> {
        let layout = host.layout()?;
        let version = match layout.mode {
            Mode::Unified => Version::V2,
            Mode::Legacy | Mode::Hybrid => Version::V1,
        };
        let limits = Limits::new(resources, version)?;
        if !limits.ignored.is_empty() {
            tracing::warn!(id, ignored = ?limits.ignored, "linux.resources settings not applied");
        }
        let inner = InnerPath::new(cgroups_path, id)?;
        let own = if inner.absolute {
            Vec::new()
        } else {
            path::parse_own_cgroups(&read_host_file(&host.own_cgroup)?)
        };
        if version == Version::V1 {
            // Hybrid: hugetlb and the device filter can go to the unified hierarchy instead.
            let elsewhere = |c: &str| layout.v2().is_some() && matches!(c, "hugetlb" | "devices");
            if let Some(missing) = limits
                .controllers()
                .into_iter()
                .find(|c| layout.v1(c).is_none() && !elsewhere(c))
            {
                return Err(CgroupError::ControllerUnavailable {
                    controller: missing.to_owned(),
                    root: host.root.clone(),
                });
            }
        }
        let placements = layout
            .hierarchies
            .iter()
            .map(|h| {
                Ok(Placement {
                    hierarchy: h.name(),
                    version: h.version,
                    path: path::directory(h, &inner, &own, &host.own_cgroup)?,
                    created: Vec::new(),
                })
            })
            .collect::<Result<Vec<_>, CgroupError>>()?;
        let mut cgroup = Cgroup {
            mode: layout.mode,
            placements,
        };
        match cgroup.build(&layout, &limits, host) {
            Ok(()) => Ok(cgroup),
            Err(e) => {
                // Undo what was made; the first error is the one worth reporting.
                let _ = cgroup.remove();
                Err(e)
            }
        }
    }

    /// Create the directories (recording them in `created`) and apply `limits`.
    fn build(&mut self, layout: &Layout, limits: &Limits, host: &Host) -> Result<(), CgroupError> {
        for (placement, hierarchy) in self.placements.iter_mut().zip(&layout.hierarchies) {
            dir::create(
                &placement.path,
                &hierarchy.mount_point,
                &mut placement.created,
            )?;
        }
        match self.mode {
            Mode::Unified => {
                let (placement, hierarchy) = (&self.placements[0], &layout.hierarchies[0]);
                v2::enable_controllers(
                    &hierarchy.mount_point,
                    &placement.path,
                    &limits.controllers(),
                )?;
                v2::apply(&placement.path, limits)?;
                if !limits.devices.is_empty() {
                    attach_device_filter(&placement.path, limits, host)?;
                }
                let ignored = v2::ignored(&placement.path, limits);
                if !ignored.is_empty() {
                    tracing::warn!(?ignored, "linux.resources settings not applied");
                }
                Ok(())
            }
            Mode::Legacy | Mode::Hybrid => {
                v1::apply(&self.placements, limits, &host.root)?;
                self.apply_unified_extras(layout, limits, host)
            }
        }
    }

    /// On a hybrid host: the hugepage limits and device rules whose v1 controller is not
    /// mounted, applied in the container's unified directory.
    fn apply_unified_extras(
        &self,
        layout: &Layout,
        limits: &Limits,
        host: &Host,
    ) -> Result<(), CgroupError> {
        let hugetlb = !limits.hugepages.is_empty() && layout.v1("hugetlb").is_none();
        let devices = !limits.devices.is_empty() && layout.v1("devices").is_none();
        if !hugetlb && !devices {
            return Ok(());
        }
        let placements = self.placements.iter().zip(&layout.hierarchies);
        let Some((placement, hierarchy)) = placements
            .into_iter()
            .find(|(p, _)| p.version == Version::V2)
        else {
            return Ok(());
        };
        if hugetlb {
            v2::enable_controllers(&hierarchy.mount_point, &placement.path, &["hugetlb"])?;
            hugetlb::apply(&placement.path, &limits.hugepages, true)?;
        }
        if devices {
            attach_device_filter(&placement.path, limits, host)?;
        }
        Ok(())
    }

    /// The host's cgroup layout when this cgroup was created.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The container's directory in each hierarchy.
    pub fn placements(&self) -> &[Placement] {
        &self.placements
    }

    /// Move a process into the cgroup (all hierarchies).
    pub fn add_process(&self, pid: i32) -> Result<(), CgroupError> {
        for placement in &self.placements {
            let file = placement.path.join("cgroup.procs");
            fs::write(&file, pid.to_string()).map_err(|source| CgroupError::AddProcess {
                pid,
                file,
                source,
            })?;
        }
        Ok(())
    }

    /// Every process in the cgroup (for `kill --all` and `ps`): those in the container's
    /// directory of any hierarchy, or in a cgroup below it, sorted. A cgroup already removed
    /// has none.
    pub fn pids(&self) -> Result<Vec<i32>, CgroupError> {
        let mut pids = BTreeSet::new();
        for placement in &self.placements {
            dir::collect_pids(&placement.path, &mut pids)?;
        }
        Ok(pids.into_iter().collect())
    }

    /// Remove the cgroup directories (missing is fine; retry briefly on EBUSY while processes
    /// exit). Only directories [`Cgroup::create`] made are removed: the container's own cgroup
    /// with any sub-cgroups made inside it, then the ancestors it created while they are empty.
    /// A joined cgroup, or a parent that existed before, is left alone. Every hierarchy is
    /// tried; the first error is returned.
    pub fn remove(&self) -> Result<(), CgroupError> {
        let mut first_error = None;
        let mut pending: Vec<&Placement> = self.placements.iter().collect();
        let mut pause = FIRST_REMOVE_PAUSE;
        for attempt in 1..=REMOVE_ATTEMPTS {
            let mut busy = Vec::new();
            for placement in pending {
                match dir::remove(&placement.created) {
                    Ok(()) => {}
                    Err(e) if e.is_busy() && attempt < REMOVE_ATTEMPTS => busy.push(placement),
                    Err(e) => {
                        first_error.get_or_insert(e);
                    }
                }
            }
            if busy.is_empty() {
                break;
            }
            thread::sleep(pause);
            pause *= 2;
            pending = busy;
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// Put the device rules on the v2 cgroup `dir` as a BPF program (only compiled, when the
/// host is a fake tree).
fn attach_device_filter(dir: &Path, limits: &Limits, host: &Host) -> Result<(), CgroupError> {
    if host.device_filters {
        devices::apply_v2(dir, &limits.devices)
    } else {
        device_filter::program(&limits.devices)
            .map(drop)
            .map_err(Into::into)
    }
}

/// Refuse `linux.intelRdt` (cache and memory bandwidth allocation through resctrl), which
/// this runtime does not implement: a clear error rather than a silently unenforced limit.
pub fn check_intel_rdt(linux: &oci_spec::runtime::Linux) -> Result<(), CgroupError> {
    match linux.intel_rdt() {
        Some(_) => Err(CgroupError::IntelRdtUnsupported),
        None => Ok(()),
    }
}

fn read_host_file(path: &Path) -> Result<String, CgroupError> {
    fs::read_to_string(path).map_err(|source| CgroupError::ReadHostFile {
        path: path.to_path_buf(),
        source,
    })
}
