//! `linux.resources.unified`: cgroup v2 interface files written as given, last (so they win
//! over the other fields), as runc does.
//!
//! A key must be a file name of the form `<controller>.<setting>`: no path separator, and the
//! controller is either `cgroup` (core files) or one enabled for the container, so a key
//! cannot reach outside the container's cgroup or name a file of a missing controller.
//! cgroup v1 has no such files: a config that sets them there is refused.

use std::collections::BTreeMap;
use std::path::Path;

use super::file::write;
use super::CgroupError;

/// Validated `unified` entries, sorted by key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Unified {
    entries: BTreeMap<String, String>,
}

impl Unified {
    /// Check the keys' form (the controllers are checked against the host later).
    pub fn new(config: &std::collections::HashMap<String, String>) -> Result<Unified, CgroupError> {
        let mut entries = BTreeMap::new();
        for (key, value) in config {
            let reason = if key.contains('/') || key == "." || key == ".." {
                Some("a key is a file name, without path separators")
            } else if !key
                .split_once('.')
                .is_some_and(|(c, s)| !c.is_empty() && !s.is_empty())
            {
                Some("a key has the form <controller>.<setting>, e.g. memory.high")
            } else {
                None
            };
            if let Some(reason) = reason {
                return Err(CgroupError::InvalidValue {
                    field: "unified",
                    value: format!("{key:?}"),
                    reason,
                });
            }
            entries.insert(key.clone(), value.clone());
        }
        Ok(Unified { entries })
    }

    /// Whether there is anything to write.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The controllers the keys need enabled (`cgroup` core files need none).
    pub fn controllers(&self) -> Vec<&str> {
        let mut out: Vec<&str> = self
            .entries
            .keys()
            .filter_map(|k| k.split_once('.').map(|(c, _)| c))
            .filter(|c| *c != "cgroup")
            .collect();
        out.dedup();
        out
    }

    /// Write every entry into the v2 cgroup `dir`, one line at a time (as runc: a file such
    /// as `io.max` takes one device per write). `enabled` is the controllers enabled there.
    pub fn apply(&self, dir: &Path, enabled: &[&str]) -> Result<(), CgroupError> {
        for (key, value) in &self.entries {
            let controller = key.split_once('.').map_or("", |(c, _)| c);
            if controller != "cgroup" && !enabled.contains(&controller) {
                return Err(CgroupError::Unsupported {
                    field: "unified",
                    reason: format!(
                        "{key} cannot be set: the {controller} controller is not enabled in {}",
                        dir.display()
                    ),
                });
            }
            if !dir.join(key).exists() {
                return Err(CgroupError::Unsupported {
                    field: "unified",
                    reason: format!("{key}: no such interface file in {}", dir.display()),
                });
            }
            for line in value.lines().filter(|l| !l.trim().is_empty()) {
                write(dir, key, line)?;
            }
            if value.trim().is_empty() {
                write(dir, key, value)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unified(pairs: &[(&str, &str)]) -> Result<Unified, CgroupError> {
        Unified::new(
            &pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn keys_are_file_names_of_a_controller() {
        for bad in [
            "../memory.max",
            "memory/max",
            "memory",
            ".max",
            "memory.",
            "..",
        ] {
            let err = unified(&[(bad, "1")]).unwrap_err().to_string();
            assert!(
                err.starts_with("invalid linux.resources.unified"),
                "{bad}: {err}"
            );
        }
        let ok = unified(&[
            ("memory.high", "1"),
            ("cgroup.max.depth", "2"),
            ("memory.max", "3"),
        ])
        .unwrap();
        assert_eq!(ok.controllers(), ["memory"]);
    }

    #[test]
    fn entries_are_written_line_by_line_into_enabled_controllers_only() {
        let dir = tempfile::tempdir().unwrap();
        for f in ["io.max", "pids.max"] {
            std::fs::write(dir.path().join(f), "").unwrap();
        }
        let ok = unified(&[("io.max", "8:0 rbps=1\n8:16 wbps=2\n")]).unwrap();
        ok.apply(dir.path(), &["io"]).unwrap();
        // A plain file keeps only the last write: the second line.
        assert_eq!(
            std::fs::read_to_string(dir.path().join("io.max")).unwrap(),
            "8:16 wbps=2"
        );
        let err = unified(&[("pids.max", "5")])
            .unwrap()
            .apply(dir.path(), &["io"])
            .unwrap_err();
        assert!(
            err.to_string().contains("pids controller is not enabled"),
            "{err}"
        );
        let err = unified(&[("io.nope", "5")])
            .unwrap()
            .apply(dir.path(), &["io"])
            .unwrap_err();
        assert!(err.to_string().contains("no such interface file"), "{err}");
    }
}
