//! User namespace id mappings (`linux.uidMappings`, `linux.gidMappings`): checked against
//! the namespace plan, and written into a new user namespace by the runtime.
//!
//! The runtime writes the maps from the host's user namespace, where it holds
//! CAP_SETUID and CAP_SETGID, so `setgroups` need not be denied first (that is only
//! required of an unprivileged writer, as in rootless runc).

use oci_spec::runtime::{Linux, LinuxIdMapping, LinuxNamespaceType};

use crate::namespace::Namespaces;

/// Why the id mappings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum IdMapError {
    /// Mappings were given, but the container has no user namespace to apply them to.
    #[error("linux.{field}: mappings need a user namespace, and linux.namespaces has none")]
    WithoutNamespace {
        /// `uidMappings` or `gidMappings`.
        field: &'static str,
    },
    /// A new user namespace has nothing mapped: its processes could not be anyone.
    #[error("linux.{field}: a new user namespace (linux.namespaces) needs mappings; none given")]
    Missing {
        /// `uidMappings` or `gidMappings`.
        field: &'static str,
    },
    /// A mapping has size 0.
    #[error("linux.{field}: mapping of container id {container_id} has size 0")]
    Empty {
        /// `uidMappings` or `gidMappings`.
        field: &'static str,
        /// The mapping's `containerID`.
        container_id: u32,
    },
    /// The kernel refused a map.
    #[error("linux.{field}: writing {path}: {source}")]
    Write {
        /// `uidMappings` or `gidMappings`.
        field: &'static str,
        /// The `/proc/<pid>/*_map` file.
        path: String,
        /// What the kernel said.
        source: std::io::Error,
    },
}

/// The two maps, with the config field each comes from and the `/proc/<pid>` file it goes to.
fn maps(linux: &Linux) -> [(&'static str, &'static str, &[LinuxIdMapping]); 2] {
    [
        (
            "uidMappings",
            "uid_map",
            linux.uid_mappings().as_deref().unwrap_or_default(),
        ),
        (
            "gidMappings",
            "gid_map",
            linux.gid_mappings().as_deref().unwrap_or_default(),
        ),
    ]
}

/// Checks the mappings against the plan, as runc does: mappings need a user namespace; a new
/// user namespace needs both maps (without a gid map the init cannot become root in it). A
/// user namespace joined by path brings its own maps, so any given are not written.
pub fn check(linux: &Linux, namespaces: &Namespaces) -> Result<(), IdMapError> {
    for (field, _, list) in maps(linux) {
        if !list.is_empty() && !namespaces.has(LinuxNamespaceType::User) {
            return Err(IdMapError::WithoutNamespace { field });
        }
        if list.is_empty() && namespaces.creates(LinuxNamespaceType::User) {
            return Err(IdMapError::Missing { field });
        }
        if let Some(m) = list.iter().find(|m| m.size() == 0) {
            return Err(IdMapError::Empty {
                field,
                container_id: m.container_id(),
            });
        }
    }
    Ok(())
}

/// The text of a `/proc/<pid>/*_map` file: one `container host size` line per mapping.
pub fn map_text(list: &[LinuxIdMapping]) -> String {
    list.iter()
        .map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()))
        .collect()
}

/// Writes the maps of the new user namespace of process `pid` (each file takes one write).
pub fn write(pid: i32, linux: &Linux) -> Result<(), IdMapError> {
    for (field, file, list) in maps(linux) {
        if list.is_empty() {
            continue;
        }
        let path = format!("/proc/{pid}/{file}");
        std::fs::write(&path, map_text(list)).map_err(|source| IdMapError::Write {
            field,
            path,
            source,
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{LinuxIdMappingBuilder, LinuxNamespace};

    fn mapping(container: u32, host: u32, size: u32) -> LinuxIdMapping {
        LinuxIdMappingBuilder::default()
            .container_id(container)
            .host_id(host)
            .size(size)
            .build()
            .unwrap()
    }

    fn plan(user: Option<Option<&str>>) -> Namespaces {
        let list: Vec<LinuxNamespace> = user
            .into_iter()
            .map(|path| {
                let mut ns = LinuxNamespace::default();
                ns.set_typ(LinuxNamespaceType::User);
                ns.set_path(path.map(Into::into));
                ns
            })
            .collect();
        Namespaces::from_spec(&list).unwrap()
    }

    fn linux(uids: Option<Vec<LinuxIdMapping>>, gids: Option<Vec<LinuxIdMapping>>) -> Linux {
        let mut linux = Linux::default();
        linux.set_uid_mappings(uids);
        linux.set_gid_mappings(gids);
        linux
    }

    #[test]
    fn maps_are_one_line_per_mapping() {
        let text = map_text(&[mapping(0, 1000, 1), mapping(1, 100_000, 65_536)]);
        assert_eq!(text, "0 1000 1\n1 100000 65536\n");
    }

    #[test]
    fn mappings_need_a_user_namespace() {
        let config = linux(Some(vec![mapping(0, 1000, 10)]), None);
        let err = check(&config, &plan(None)).unwrap_err().to_string();
        assert!(err.contains("linux.uidMappings"), "{err}");
        let config = linux(None, Some(vec![mapping(0, 1000, 10)]));
        let err = check(&config, &plan(None)).unwrap_err().to_string();
        assert!(err.contains("linux.gidMappings"), "{err}");
    }

    #[test]
    fn a_new_user_namespace_needs_both_maps() {
        let err = check(&linux(None, None), &plan(Some(None)))
            .unwrap_err()
            .to_string();
        assert!(err.contains("linux.uidMappings"), "{err}");
        let only_uids = linux(Some(vec![mapping(0, 1000, 10)]), Some(vec![]));
        let err = check(&only_uids, &plan(Some(None)))
            .unwrap_err()
            .to_string();
        assert!(err.contains("linux.gidMappings"), "{err}");
        let both = linux(
            Some(vec![mapping(0, 1000, 10)]),
            Some(vec![mapping(0, 1000, 10)]),
        );
        check(&both, &plan(Some(None))).unwrap();
    }

    #[test]
    fn a_joined_user_namespace_needs_no_maps_and_empty_ones_are_refused() {
        check(&linux(None, None), &plan(Some(Some("/proc/self/ns/user")))).unwrap();
        let empty = linux(
            Some(vec![mapping(0, 1000, 0)]),
            Some(vec![mapping(0, 1000, 1)]),
        );
        let err = check(&empty, &plan(Some(None))).unwrap_err().to_string();
        assert!(err.contains("size 0"), "{err}");
    }
}
