//! Control groups for one container, on cgroup v1 (incl. the hybrid layout) and v2.
//! (placeholder until the cgroup branch lands)
use serde::{Deserialize, Serialize};
/// Why cgroups failed.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// placeholder
    #[error("cgroup: {0}")]
    Io(String),
}
/// A container's cgroup.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Cgroup {}
impl Cgroup {
    /// Create.
    pub fn create(
        _p: Option<&std::path::Path>,
        _id: &str,
        _r: Option<&oci_spec::runtime::LinuxResources>,
    ) -> Result<Cgroup, CgroupError> {
        Ok(Cgroup {})
    }
    /// Add.
    pub fn add_process(&self, _pid: i32) -> Result<(), CgroupError> {
        Ok(())
    }
    /// Pids.
    pub fn pids(&self) -> Result<Vec<i32>, CgroupError> {
        Ok(vec![])
    }
    /// Remove.
    pub fn remove(&self) -> Result<(), CgroupError> {
        Ok(())
    }
}
