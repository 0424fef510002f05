//! Changing the limits of an existing cgroup (`update`), with the validation and writers
//! [`Cgroup::create`] uses.

use std::path::{Path, PathBuf};

use oci_spec::runtime::LinuxResources;

use super::limits::Limits;
use super::{v1, v2, Cgroup, CgroupError, Host, Mode, Version};

impl Cgroup {
    /// Validate `resources` as [`Cgroup::create`] does, without writing anything, and return
    /// the fields that are set but that this module does not apply (e.g. `blockIO`).
    pub fn unapplied(&self, resources: &LinuxResources) -> Result<Vec<&'static str>, CgroupError> {
        Ok(Limits::new(Some(resources), self.limits_version())?.ignored)
    }

    /// Write `resources` to the cgroup, as [`Cgroup::create`] writes them: a running
    /// container's limits change in place.
    pub fn update(&self, resources: &LinuxResources) -> Result<(), CgroupError> {
        let limits = Limits::new(Some(resources), self.limits_version())?;
        match self.mode {
            Mode::Unified => match self.placements.first() {
                Some(placement) => v2::apply(&placement.path, &limits),
                None => Ok(()),
            },
            Mode::Legacy | Mode::Hybrid => {
                v1::apply(&self.placements, &limits, &self.root())?;
                // Hugepage limits without a v1 hugetlb hierarchy go where `create` puts
                // them (the device rules were left out by the caller).
                if limits.hugepages.is_empty() {
                    return Ok(());
                }
                let host = Host::default();
                self.apply_unified_extras(&host.layout()?, &limits, &host)
            }
        }
    }

    fn limits_version(&self) -> Version {
        match self.mode {
            Mode::Unified => Version::V2,
            Mode::Legacy | Mode::Hybrid => Version::V1,
        }
    }

    /// The deepest directory holding every placement (the cgroup root, for error messages).
    fn root(&self) -> PathBuf {
        let mut paths = self.placements.iter().map(|p| p.path.as_path());
        let Some(first) = paths.next() else {
            return PathBuf::new();
        };
        let mut root: &Path = first;
        for path in paths {
            while !path.starts_with(root) {
                root = root.parent().unwrap_or(Path::new("/"));
            }
        }
        root.to_path_buf()
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use oci_spec::runtime::{
        LinuxCpuBuilder, LinuxMemoryBuilder, LinuxPidsBuilder, LinuxResourcesBuilder,
    };

    use super::super::Placement;
    use super::*;

    #[test]
    fn update_writes_new_limits_to_an_existing_v2_cgroup() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("c1");
        fs::create_dir(&dir).unwrap();
        let cgroup = Cgroup {
            mode: Mode::Unified,
            placements: vec![Placement {
                hierarchy: String::new(),
                version: Version::V2,
                path: dir.clone(),
                created: Vec::new(),
            }],
        };
        let resources = LinuxResourcesBuilder::default()
            .memory(
                LinuxMemoryBuilder::default()
                    .limit(64_i64 << 20)
                    .build()
                    .unwrap(),
            )
            .pids(LinuxPidsBuilder::default().limit(7).build().unwrap())
            .cpu(
                LinuxCpuBuilder::default()
                    .realtime_runtime(1000_i64)
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap();
        assert_eq!(
            cgroup.unapplied(&resources).unwrap(),
            ["cpu.realtimeRuntime"]
        );
        cgroup.update(&resources).unwrap();
        assert_eq!(
            fs::read_to_string(dir.join("memory.max")).unwrap().trim(),
            "67108864"
        );
        assert_eq!(
            fs::read_to_string(dir.join("pids.max")).unwrap().trim(),
            "7"
        );
    }

    #[test]
    fn the_root_is_the_common_ancestor() {
        let placement = |path: &str| Placement {
            hierarchy: String::new(),
            version: Version::V1,
            path: PathBuf::from(path),
            created: Vec::new(),
        };
        let cgroup = Cgroup {
            mode: Mode::Hybrid,
            placements: vec![
                placement("/sys/fs/cgroup/memory/c1"),
                placement("/sys/fs/cgroup/unified/c1"),
            ],
        };
        assert_eq!(cgroup.root(), Path::new("/sys/fs/cgroup"));
    }
}
