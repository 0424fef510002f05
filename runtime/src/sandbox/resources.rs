//! The cgroup values the kubelet computes for a container or a whole pod, in the plain
//! terms of the CRI's `LinuxContainerResources`, and their OCI `linux.resources` form.
//!
//! The numbers are cgroup v1's (cpu shares, CFS quota and period in µs, bytes); the
//! [`cgroup`](crate::cgroup) module converts them for v2 (shares to `cpu.weight`, quota and
//! period to `cpu.max`), as runc does, so the kubelet never needs to know the host's layout.

use oci_spec::runtime::LinuxResources;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

/// Limits for one cgroup. Zero means "leave the kernel's value", as in the CRI.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Resources {
    /// Relative CPU weight in cgroup v1 shares (2 to 262144).
    pub cpu_shares: u64,
    /// CFS quota in µs per period; 0: no quota.
    pub cpu_quota: i64,
    /// CFS period in µs; 0: the kernel's.
    pub cpu_period: u64,
    /// Hard memory limit in bytes; 0: none.
    pub memory_limit: i64,
    /// Most processes (tasks) the cgroup may hold; 0: unlimited.
    pub pids_limit: i64,
}

impl Resources {
    /// Whether any limit is set.
    pub fn is_set(&self) -> bool {
        *self != Resources::default()
    }

    /// The OCI `linux.resources` object for these limits, without the fields left unset.
    pub fn to_json(&self) -> Value {
        let mut out = Map::new();
        let mut cpu = Map::new();
        if self.cpu_shares != 0 {
            cpu.insert("shares".into(), json!(self.cpu_shares));
        }
        if self.cpu_quota != 0 {
            cpu.insert("quota".into(), json!(self.cpu_quota));
        }
        if self.cpu_period != 0 {
            cpu.insert("period".into(), json!(self.cpu_period));
        }
        if !cpu.is_empty() {
            out.insert("cpu".into(), Value::Object(cpu));
        }
        if self.memory_limit != 0 {
            out.insert("memory".into(), json!({"limit": self.memory_limit}));
        }
        if self.pids_limit != 0 {
            out.insert("pids".into(), json!({"limit": self.pids_limit}));
        }
        Value::Object(out)
    }

    /// The OCI form, for [`Cgroup::create_on`](crate::cgroup::Cgroup::create_on); `None` when
    /// nothing is set, so a cgroup without limits needs no controller at all.
    pub fn to_oci(&self) -> Option<LinuxResources> {
        if !self.is_set() {
            return None;
        }
        // Every field above maps onto a field oci-spec knows, so this cannot fail.
        serde_json::from_value(self.to_json()).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_set_fields_reach_the_oci_form() {
        assert_eq!(Resources::default().to_json(), json!({}));
        assert_eq!(Resources::default().to_oci(), None);
        let r = Resources {
            cpu_shares: 256,
            cpu_quota: 50_000,
            cpu_period: 100_000,
            memory_limit: 64 << 20,
            pids_limit: 0,
        };
        assert_eq!(
            r.to_json(),
            json!({
                "cpu": {"shares": 256, "quota": 50_000, "period": 100_000},
                "memory": {"limit": 64 << 20},
            })
        );
        let oci = r.to_oci().unwrap();
        let cpu = oci.cpu().as_ref().unwrap();
        assert_eq!(
            (cpu.shares(), cpu.quota(), cpu.period()),
            (Some(256), Some(50_000), Some(100_000))
        );
        assert_eq!(oci.memory().as_ref().unwrap().limit(), Some(64 << 20));
        let pids = Resources {
            pids_limit: 100,
            ..Resources::default()
        };
        assert_eq!(pids.to_oci().unwrap().pids().as_ref().unwrap().limit(), 100);
    }
}
