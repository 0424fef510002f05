//! An OCI bundle: a directory holding `config.json` and the root filesystem it names.

use std::path::{Path, PathBuf};

use oci_spec::runtime::{Process, Spec};

/// Why a bundle cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// The bundle directory itself is missing or unreadable.
    #[error("bundle {path}: {source}")]
    Dir {
        /// The bundle path as given.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// `config.json` is absent.
    #[error("bundle {0}: no config.json (an OCI bundle needs config.json beside its rootfs)")]
    NoConfig(PathBuf),
    /// `config.json` does not parse as an OCI runtime spec.
    #[error("{path}: {message}")]
    BadConfig {
        /// The config file.
        path: PathBuf,
        /// The parser's complaint, with line and column.
        message: String,
    },
    /// A field is missing or holds a value the runtime cannot use.
    #[error("{path}: field {field}: {expected}")]
    Field {
        /// The config file.
        path: PathBuf,
        /// The JSON path of the field, e.g. `process.args`.
        field: &'static str,
        /// What was expected instead.
        expected: String,
    },
}

/// A loaded and validated bundle.
#[derive(Debug, Clone)]
pub struct Bundle {
    /// The bundle directory, absolute.
    pub dir: PathBuf,
    /// The parsed `config.json`.
    pub spec: Spec,
    /// The root filesystem, absolute and canonical.
    pub rootfs: PathBuf,
}

impl Bundle {
    /// Load `<dir>/config.json` and check the fields every container needs (`process`
    /// is checked when present).
    pub fn load(dir: &Path) -> Result<Bundle, BundleError> {
        let dir = std::fs::canonicalize(dir).map_err(|source| BundleError::Dir {
            path: dir.to_path_buf(),
            source,
        })?;
        let config = dir.join("config.json");
        let text = match std::fs::read(&config) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(BundleError::NoConfig(dir))
            }
            Err(source) => {
                return Err(BundleError::Dir {
                    path: config,
                    source,
                })
            }
        };
        let spec: Spec = serde_json::from_slice(&text).map_err(|e| BundleError::BadConfig {
            path: config.clone(),
            message: e.to_string(),
        })?;
        let field = |field, expected: &str| BundleError::Field {
            path: config.clone(),
            field,
            expected: expected.to_string(),
        };
        if !spec.version().starts_with("1.") {
            return Err(field(
                "ociVersion",
                &format!("a 1.x version, got {:?}", spec.version()),
            ));
        }
        let root = spec
            .root()
            .as_ref()
            .ok_or_else(|| field("root", "an object with the rootfs path"))?;
        let rootfs = dir.join(root.path());
        let rootfs = std::fs::canonicalize(&rootfs).map_err(|e| {
            field(
                "root.path",
                &format!("an existing directory, {} : {e}", rootfs.display()),
            )
        })?;
        if !rootfs.is_dir() {
            return Err(field("root.path", "a directory"));
        }
        // `process` is optional at create and required at start (runtime.md).
        if let Some(process) = spec.process() {
            check_process(process).map_err(|(f, e)| field(f, e))?;
        }
        Ok(Bundle { dir, spec, rootfs })
    }
}

/// The checks `create` and `exec` share for a process object.
pub fn check_process(process: &Process) -> Result<(), (&'static str, &'static str)> {
    check_args(process)
}

/// A console socket only makes sense with a terminal, and a terminal needs one: the
/// same rule runc enforces.
pub fn check_console(process: &Process, console: bool) -> Result<(), String> {
    match (process.terminal() == Some(true), console) {
        (false, true) => Err(
            "--console-socket given but process.terminal is false: there is no terminal to send"
                .into(),
        ),
        (true, false) => {
            Err("process.terminal is true: give --console-socket to receive the terminal".into())
        }
        _ => Ok(()),
    }
}

fn check_args(process: &Process) -> Result<(), (&'static str, &'static str)> {
    if process.args().as_ref().is_none_or(|a| a.is_empty()) {
        return Err((
            "process.args",
            "a non-empty list (the program and its arguments)",
        ));
    }
    if !process.cwd().is_absolute() {
        return Err(("process.cwd", "an absolute path"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bundle_with(config: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("rootfs")).unwrap();
        std::fs::write(dir.path().join("config.json"), config).unwrap();
        dir
    }

    #[test]
    fn loads_a_minimal_bundle() {
        let dir = bundle_with(
            r#"{"ociVersion":"1.0.2","root":{"path":"rootfs"},"process":{"args":["sh"],"cwd":"/","user":{"uid":0,"gid":0}}}"#,
        );
        let bundle = Bundle::load(dir.path()).unwrap();
        assert_eq!(
            bundle.rootfs,
            dir.path().canonicalize().unwrap().join("rootfs")
        );
        let dir = bundle_with(r#"{"ociVersion":"1.0.2","root":{"path":"rootfs"}}"#);
        assert!(Bundle::load(dir.path()).unwrap().spec.process().is_none());
    }

    #[test]
    fn names_the_missing_config() {
        let dir = tempfile::tempdir().unwrap();
        let err = Bundle::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("no config.json"), "{err}");
    }

    #[test]
    fn names_the_bad_field() {
        let dir = bundle_with(
            r#"{"ociVersion":"1.0.2","root":{"path":"rootfs"},"process":{"args":[],"cwd":"/","user":{"uid":0,"gid":0}}}"#,
        );
        let err = Bundle::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("process.args"), "{err}");
        let dir = bundle_with(r#"{"ociVersion":"1.0.2","root":{"path":"nope"}}"#);
        let err = Bundle::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("root.path"), "{err}");
    }

    #[test]
    fn reports_json_position() {
        let dir = bundle_with("{\"ociVersion\": ");
        let err = Bundle::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("config.json") && err.contains("line"), "{err}");
    }
}
