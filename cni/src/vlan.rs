//! The bridge plugin's VLAN settings: `vlan`, `vlanTrunk` and `preserveDefaultVlan`, checked and expanded.
//!
//! A pod's bridge port is an access port of `vlan` (its PVID, untagged) and,
//! with `vlanTrunk`, also carries the listed VLANs tagged. Either one turns on
//! VLAN filtering on a bridge the plugin creates. Unless `preserveDefaultVlan`
//! is set, the bridge's default VLAN (1) is taken off the port, so the pod
//! only sees its own VLANs — the reference plugin's semantics.

use crate::link::{self, Netlink};
use serde::Deserialize;

/// The highest usable 802.1Q VLAN id (4095 is reserved).
pub const MAX_ID: i64 = 4094;

/// One `vlanTrunk` entry: a single `id`, or a `minID`..=`maxID` range, or both.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Trunk {
    /// A single VLAN id.
    #[serde(default)]
    pub id: Option<i64>,
    /// First id of a range (needs `maxID`).
    #[serde(default, rename = "minID")]
    pub min_id: Option<i64>,
    /// Last id of a range (needs `minID`).
    #[serde(default, rename = "maxID")]
    pub max_id: Option<i64>,
}

/// The VLAN layout of a pod's bridge port.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PortVlans {
    /// The access VLAN (PVID, untagged); 0 = none.
    pub access: u16,
    /// Tagged trunk VLANs, sorted, without duplicates.
    pub trunk: Vec<u16>,
    /// Keep the bridge's default VLAN on the port.
    pub preserve_default: bool,
}

impl PortVlans {
    /// Checks `vlan` and expands `vlanTrunk`; the error names the field and what was expected.
    pub fn new(
        vlan: i64,
        trunk: Option<&[Trunk]>,
        preserve_default: bool,
    ) -> Result<PortVlans, String> {
        if !(0..=MAX_ID).contains(&vlan) {
            return Err(format!(
                "invalid vlan {vlan}: expected a VLAN id between 0 and {MAX_ID}"
            ));
        }
        Ok(PortVlans {
            access: vlan as u16,
            trunk: trunk.map(expand).transpose()?.unwrap_or_default(),
            preserve_default,
        })
    }

    /// Whether the port needs a VLAN-filtering bridge at all.
    pub fn any(&self) -> bool {
        self.access != 0 || !self.trunk.is_empty()
    }

    /// The untagged PVID of the port: the access VLAN, or 1 on a trunk without one
    /// (so untagged traffic keeps flowing, as the reference does).
    pub fn pvid(&self) -> Option<u16> {
        match (self.access, self.trunk.is_empty()) {
            (0, true) => None,
            (0, false) => Some(1),
            (vid, _) => Some(vid),
        }
    }

    /// Makes bridge port `port` carry exactly these VLANs (plus the default one if preserved).
    pub async fn apply(&self, nl: &Netlink, port: u32) -> Result<(), link::Error> {
        if !self.preserve_default {
            for vid in nl.port_vlans(port).await? {
                nl.del_port_vlan(port, vid).await?;
            }
        }
        if let Some(pvid) = self.pvid() {
            nl.add_port_vlan(port, pvid, true).await?;
        }
        for &vid in &self.trunk {
            nl.add_port_vlan(port, vid, false).await?;
        }
        Ok(())
    }
}

fn trunk_id(field: &str, id: i64) -> Result<u16, String> {
    if (1..=MAX_ID).contains(&id) {
        Ok(id as u16)
    } else {
        Err(format!(
            "invalid vlanTrunk {field} {id}: expected a VLAN id between 1 and {MAX_ID}"
        ))
    }
}

/// All VLAN ids named by `vlanTrunk`, sorted and deduplicated.
fn expand(trunks: &[Trunk]) -> Result<Vec<u16>, String> {
    let mut ids = Vec::new();
    for t in trunks {
        match (t.min_id, t.max_id) {
            (Some(min), Some(max)) => {
                let (min, max) = (trunk_id("minID", min)?, trunk_id("maxID", max)?);
                if max < min {
                    return Err(format!(
                        "invalid vlanTrunk range: minID {min} is greater than maxID {max}"
                    ));
                }
                ids.extend(min..=max);
            }
            (None, Some(_)) => {
                return Err("invalid vlanTrunk entry: maxID given without minID".to_string())
            }
            (Some(_), None) => {
                return Err("invalid vlanTrunk entry: minID given without maxID".to_string())
            }
            (None, None) => {}
        }
        if let Some(id) = t.id {
            ids.push(trunk_id("id", id)?);
        }
    }
    ids.sort_unstable();
    ids.dedup();
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trunk(json: &str) -> Vec<Trunk> {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn access_vlan_is_range_checked() {
        assert_eq!(PortVlans::new(100, None, false).unwrap().access, 100);
        assert!(PortVlans::new(4095, None, false)
            .unwrap_err()
            .contains("invalid vlan 4095"));
        assert!(PortVlans::new(-1, None, false).is_err());
        assert!(!PortVlans::new(0, None, false).unwrap().any());
    }

    #[test]
    fn trunk_merges_ids_and_ranges() {
        let t = trunk(r#"[{"id": 42}, {"minID": 10, "maxID": 12}, {"id": 11}]"#);
        let v = PortVlans::new(0, Some(&t), false).unwrap();
        assert_eq!(v.trunk, vec![10, 11, 12, 42]);
        assert_eq!(v.pvid(), Some(1));
        assert_eq!(PortVlans::new(7, Some(&t), false).unwrap().pvid(), Some(7));
    }

    #[test]
    fn bad_trunks_name_the_field() {
        for (json, want) in [
            (r#"[{"minID": 5}]"#, "maxID"),
            (r#"[{"maxID": 5}]"#, "minID"),
            (r#"[{"minID": 9, "maxID": 5}]"#, "greater than maxID"),
            (r#"[{"id": 0}]"#, "vlanTrunk id 0"),
            (r#"[{"minID": 1, "maxID": 5000}]"#, "maxID 5000"),
        ] {
            let err = PortVlans::new(0, Some(&trunk(json)), false).unwrap_err();
            assert!(err.contains(want), "{json}: {err}");
        }
    }
}
