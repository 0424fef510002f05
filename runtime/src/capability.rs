//! The five capability sets of `process.capabilities`, applied with the `caps` crate.

use caps::{CapSet, Capability, CapsHashSet};
use oci_spec::runtime::{Capabilities, LinuxCapabilities};

/// Why capabilities could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum CapabilityError {
    /// A set could not be changed.
    #[error("capabilities: setting the {set} set: {message}")]
    Apply {
        /// Which set.
        set: &'static str,
        /// What the kernel or the crate said.
        message: String,
    },
}

/// Names of every capability this runtime knows, for `features`.
pub fn known() -> Vec<String> {
    let mut names: Vec<String> = caps::all().into_iter().map(|c| c.to_string()).collect();
    names.sort();
    names
}

/// Names of the capabilities the calling process holds (its effective set), sorted: what
/// "all capabilities" means for a container it starts, since no process can grant more
/// than it has (root here may lack some, e.g. CAP_SYS_RESOURCE).
pub fn current() -> Vec<String> {
    let mut names: Vec<String> = caps::read(None, CapSet::Effective)
        .unwrap_or_default()
        .into_iter()
        .map(|c| c.to_string())
        .collect();
    names.sort();
    names
}

/// Translate one OCI set; capabilities the running kernel lacks are skipped, as runc
/// does, so a config written for a newer kernel still runs.
fn translate(set: &Option<Capabilities>, supported: &CapsHashSet) -> CapsHashSet {
    set.iter()
        .flatten()
        .filter_map(|c| {
            serde_json::to_value(c)
                .ok()?
                .as_str()?
                .parse::<Capability>()
                .ok()
        })
        .filter(|c| supported.contains(c))
        .collect()
}

/// The capability sets a process should end up with.
#[derive(Debug, Clone, Default)]
pub struct CapabilityPlan {
    bounding: CapsHashSet,
    effective: CapsHashSet,
    permitted: CapsHashSet,
    inheritable: CapsHashSet,
    ambient: CapsHashSet,
}

impl CapabilityPlan {
    /// Build from the config; a missing `capabilities` object means none at all.
    pub fn new(caps: Option<&LinuxCapabilities>) -> CapabilityPlan {
        let supported = caps::runtime::procfs_all_supported(None).unwrap_or_else(|_| caps::all());
        let Some(c) = caps else {
            return CapabilityPlan::default();
        };
        CapabilityPlan {
            bounding: translate(c.bounding(), &supported),
            effective: translate(c.effective(), &supported),
            permitted: translate(c.permitted(), &supported),
            inheritable: translate(c.inheritable(), &supported),
            ambient: translate(c.ambient(), &supported),
        }
    }

    /// Drop from the bounding set what the config does not list. Must run while the
    /// process still has CAP_SETPCAP, i.e. before switching user.
    pub fn drop_bounding(&self) -> Result<(), CapabilityError> {
        for cap in caps::read(None, CapSet::Bounding).map_err(err("bounding"))? {
            if !self.bounding.contains(&cap) {
                caps::drop(None, CapSet::Bounding, cap).map_err(err("bounding"))?;
            }
        }
        Ok(())
    }

    /// Set inheritable, effective, permitted and ambient, in the order the kernel
    /// accepts: inheritable while CAP_SETPCAP is still effective, effective before
    /// permitted shrinks below it, ambient last (it needs both permitted and inheritable).
    pub fn apply(&self) -> Result<(), CapabilityError> {
        caps::set(None, CapSet::Inheritable, &self.inheritable).map_err(err("inheritable"))?;
        let permitted_now = caps::read(None, CapSet::Permitted).map_err(err("permitted"))?;
        let effective: CapsHashSet = self
            .effective
            .intersection(&permitted_now)
            .copied()
            .collect();
        caps::set(None, CapSet::Effective, &effective).map_err(err("effective"))?;
        caps::set(None, CapSet::Permitted, &self.permitted).map_err(err("permitted"))?;
        if !self.effective.is_subset(&self.permitted) {
            return Err(CapabilityError::Apply {
                set: "effective",
                message: "lists capabilities missing from the permitted set".into(),
            });
        }
        caps::set(None, CapSet::Effective, &self.effective).map_err(err("effective"))?;
        caps::clear(None, CapSet::Ambient).map_err(err("ambient"))?;
        for cap in &self.ambient {
            // Ambient needs the capability in permitted and inheritable; like runc, go
            // on where it cannot be raised (configs often list ambient without inheritable).
            if let Err(e) = caps::raise(None, CapSet::Ambient, *cap) {
                tracing::debug!("ambient capability {cap} not raised: {e}");
            }
        }
        Ok(())
    }
}

fn err(set: &'static str) -> impl Fn(caps::errors::CapsError) -> CapabilityError {
    move |e| CapabilityError::Apply {
        set,
        message: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn translates_names_and_keeps_sets_apart() {
        let caps: LinuxCapabilities = serde_json::from_str(
            r#"{"bounding":["CAP_KILL","CAP_CHOWN"],"effective":["CAP_KILL"],"permitted":["CAP_KILL"]}"#,
        )
        .unwrap();
        let plan = CapabilityPlan::new(Some(&caps));
        assert_eq!(plan.bounding.len(), 2);
        assert!(plan.effective.contains(&Capability::CAP_KILL));
        assert!(plan.inheritable.is_empty() && plan.ambient.is_empty());
    }

    #[test]
    fn knows_the_usual_names() {
        assert!(known().contains(&"CAP_SYS_ADMIN".to_string()));
    }
}
