//! Parse one static-pod manifest file into validated, defaulted `v1.Pod`s.
//!
//! A file holds YAML (one or more `---`-separated documents) or JSON (one
//! object). Each document goes through the same steps as a static pod does in
//! the upstream kubelet: decode against the Kubernetes API types (refusing
//! unknown fields, as `kubectl apply` does, where upstream drops them), apply the
//! defaults the API server would, validate what the API server would reject,
//! then give it its static identity (see [`super::identity`]).
//!
//! A file is all or nothing: one bad document rejects the whole file, so a pod
//! never runs half-described.

use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::Pod;
use serde::de::{Deserialize, Deserializer};

use super::validate::{self, FieldError};
use super::{defaults, identity};

/// Why a manifest file yielded no pods.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    /// {file}: {message} — the file could not be read.
    #[error("{}: {message}", file.display())]
    Read {
        /// The manifest file.
        file: PathBuf,
        /// What the OS said.
        message: String,
    },
    /// {file}: document {document}: {message} — not YAML or JSON at all.
    #[error("{}: document {document}: {message}", file.display())]
    Syntax {
        /// The manifest file.
        file: PathBuf,
        /// 1-based index of the document in the file.
        document: usize,
        /// What the parser said, with its line and column.
        message: String,
    },
    /// {file}: document {document}: {message} — the document is not a `v1` `Pod`.
    #[error("{}: document {document}: {message}", file.display())]
    NotAPod {
        /// The manifest file.
        file: PathBuf,
        /// 1-based index of the document in the file.
        document: usize,
        /// Which of `apiVersion`/`kind` is wrong and what was expected.
        message: String,
    },
    /// {file}: document {document}: {path}: {message}; … — fields have the wrong
    /// shape or values the API server would reject.
    #[error("{}: document {document}: {}", file.display(), join(errors))]
    Invalid {
        /// The manifest file.
        file: PathBuf,
        /// 1-based index of the document in the file.
        document: usize,
        /// Every field found wrong, with its path.
        errors: Vec<FieldError>,
    },
    /// {file}: no Pod in the file — it is empty or holds only empty documents.
    #[error("{}: no Pod in the file (it is empty)", file.display())]
    Empty {
        /// The manifest file.
        file: PathBuf,
    },
    /// {file}: pod {pod} is already defined in {other}.
    #[error("{}: pod {pod} is already defined in {}", file.display(), other.display())]
    Duplicate {
        /// The file whose pod was refused.
        file: PathBuf,
        /// `namespace/name` of the pod, as it runs (with the node suffix).
        pod: String,
        /// The file that defined it first (may be `file` itself).
        other: PathBuf,
    },
}

impl ManifestError {
    /// The manifest file the error is about.
    pub fn file(&self) -> &Path {
        match self {
            ManifestError::Read { file, .. }
            | ManifestError::Syntax { file, .. }
            | ManifestError::NotAPod { file, .. }
            | ManifestError::Invalid { file, .. }
            | ManifestError::Empty { file }
            | ManifestError::Duplicate { file, .. } => file,
        }
    }
}

fn join(errors: &[FieldError]) -> String {
    let parts: Vec<String> = errors.iter().map(ToString::to_string).collect();
    parts.join("; ")
}

/// Parse `content`, read from `file`, into the static pods it describes for
/// node `node_name`. `file` names the file in errors and is part of each pod's
/// UID (see [`super::identity`]); pass the path the folder source lists.
///
/// The pods carry every annotation but `kubernetes.io/config.seen`, which
/// depends on when the source first saw them ([`identity::mark_seen`]).
pub fn parse(file: &Path, content: &[u8], node_name: &str) -> Result<Vec<Pod>, ManifestError> {
    let text = std::str::from_utf8(content).map_err(|e| ManifestError::Syntax {
        file: file.to_path_buf(),
        document: 1,
        message: format!("not UTF-8 text: {e}"),
    })?;
    let mut pods: Vec<Pod> = Vec::new();
    for (index, document) in documents(file, text)?.into_iter().enumerate() {
        let number = index + 1;
        let Some(document) = document else { continue };
        let pod = parse_document(file, number, document, node_name)?;
        if pods.iter().any(|p| full_name(p) == full_name(&pod)) {
            return Err(ManifestError::Duplicate {
                file: file.to_path_buf(),
                pod: full_name(&pod),
                other: file.to_path_buf(),
            });
        }
        pods.push(pod);
    }
    if pods.is_empty() {
        return Err(ManifestError::Empty {
            file: file.to_path_buf(),
        });
    }
    Ok(pods)
}

/// `namespace/name` of a pod, the key static pods are unique by.
pub fn full_name(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        pod.metadata.name.as_deref().unwrap_or_default()
    )
}

/// One document, decoded to a generic tree of the syntax it was written in.
enum Document {
    Yaml(yaml_serde::Value),
    Json(serde_json::Value),
}

/// Every document of the file in order; `None` for an empty one (a stray
/// `---`), which kubectl skips too, but which still counts in the numbering.
fn documents(file: &Path, text: &str) -> Result<Vec<Option<Document>>, ManifestError> {
    let syntax = |document: usize, message: String| ManifestError::Syntax {
        file: file.to_path_buf(),
        document,
        message,
    };
    // JSON is mostly YAML too, but serde_json's messages fit JSON better and it
    // takes what libyaml's YAML 1.1 would not (e.g. tabs for indentation).
    if text.trim_start().starts_with('{') {
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| syntax(1, e.to_string()))?;
        return Ok(vec![Some(Document::Json(value))]);
    }
    let mut out = Vec::new();
    for (index, document) in yaml_serde::Deserializer::from_str(text).enumerate() {
        let mut value = yaml_serde::Value::deserialize(document)
            .map_err(|e| syntax(index + 1, e.to_string()))?;
        // `<<: *anchor` merge keys, which the Go YAML decoder upstream applies.
        value
            .apply_merge()
            .map_err(|e| syntax(index + 1, e.to_string()))?;
        octal_modes(&mut value);
        out.push(if value.is_null() {
            None
        } else {
            Some(Document::Yaml(value))
        });
    }
    Ok(out)
}

/// File modes written the usual way (`defaultMode: 0644`) are octal in the YAML 1.1 that
/// kubectl's decoder reads, but not in this YAML 1.2 one; read them as upstream does.
fn octal_modes(value: &mut yaml_serde::Value) {
    use yaml_serde::Value;
    match value {
        Value::Mapping(map) => {
            for (key, item) in map.iter_mut() {
                let is_mode = matches!(key.as_str(), Some("mode" | "defaultMode"));
                // This decoder keeps `0644` as the string it would be in YAML 1.2.
                let octal = match (&*item, is_mode) {
                    (Value::String(text), true) => yaml11_octal(text),
                    _ => None,
                };
                match octal {
                    Some(mode) => *item = Value::Number(mode.into()),
                    None => octal_modes(item),
                }
            }
        }
        Value::Sequence(items) => items.iter_mut().for_each(octal_modes),
        Value::Tagged(tagged) => octal_modes(&mut tagged.value),
        _ => {}
    }
}

/// `0644` or `0o644` as a number; None for anything else.
fn yaml11_octal(text: &str) -> Option<u64> {
    let digits = text.strip_prefix("0o").or_else(|| text.strip_prefix('0'))?;
    if digits.is_empty() || !digits.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        return None;
    }
    u64::from_str_radix(digits, 8).ok()
}

fn parse_document(
    file: &Path,
    document: usize,
    tree: Document,
    node_name: &str,
) -> Result<Pod, ManifestError> {
    let invalid = |errors: Vec<FieldError>| ManifestError::Invalid {
        file: file.to_path_buf(),
        document,
        errors,
    };
    let not_a_pod = |message: String| ManifestError::NotAPod {
        file: file.to_path_buf(),
        document,
        message,
    };
    let shape = match &tree {
        Document::Yaml(v) => yaml_shape(v),
        Document::Json(v) => json_shape(v),
    };
    if shape != "object" {
        return Err(not_a_pod(format!("expected a Pod object, found {shape}")));
    }
    let (api_version, kind) = match &tree {
        Document::Yaml(v) => (
            v.get("apiVersion").map(yaml_text),
            v.get("kind").map(yaml_text),
        ),
        Document::Json(v) => (
            v.get("apiVersion").map(json_text),
            v.get("kind").map(json_text),
        ),
    };
    check_type(api_version, kind).map_err(not_a_pod)?;
    let (mut pod, written): (Pod, Option<serde_json::Value>) = match tree {
        // Non-string YAML keys have no JSON form; decode refuses them anyway.
        Document::Yaml(v) => (
            decode(&v).map_err(|e| invalid(vec![e]))?,
            serde_json::to_value(&v).ok(),
        ),
        Document::Json(v) => (decode(&v).map_err(|e| invalid(vec![e]))?, Some(v)),
    };
    if let (Some(written), Ok(decoded)) = (written, serde_json::to_value(&pod)) {
        let mut errors = Vec::new();
        unknown_fields(&written, &decoded, "", &mut errors);
        if !errors.is_empty() {
            return Err(invalid(errors));
        }
    }
    defaults::apply(&mut pod);
    let errors = validate::pod(&pod, node_name);
    if !errors.is_empty() {
        return Err(invalid(errors));
    }
    identity::assign(&mut pod, file, node_name);
    Ok(pod)
}

/// Only core `v1` Pods are static pods; anything else is refused by name so a
/// Deployment dropped into the folder does not fail with a puzzling field error.
fn check_type(api_version: Option<String>, kind: Option<String>) -> Result<(), String> {
    match kind.as_deref() {
        None => return Err("kind: Required value: expected \"Pod\"".into()),
        Some("Pod") => {}
        Some(other) => {
            return Err(format!(
                "kind: expected \"Pod\", found {other:?}: only Pods can be static pods"
            ))
        }
    }
    match api_version.as_deref() {
        None => Err("apiVersion: Required value: expected \"v1\"".into()),
        Some("v1") => Ok(()),
        Some(other) => Err(format!(
            "apiVersion: expected \"v1\" for kind Pod, found {other:?}"
        )),
    }
}

fn yaml_shape(value: &yaml_serde::Value) -> &'static str {
    use yaml_serde::Value;
    match value {
        Value::Mapping(_) => "object",
        Value::Sequence(_) => "a list",
        Value::Tagged(_) => "a tagged value",
        Value::Null => "nothing",
        _ => "a scalar",
    }
}

fn json_shape(value: &serde_json::Value) -> &'static str {
    use serde_json::Value;
    match value {
        Value::Object(_) => "object",
        Value::Array(_) => "a list",
        Value::Null => "nothing",
        _ => "a scalar",
    }
}

fn yaml_text(value: &yaml_serde::Value) -> String {
    match value.as_str() {
        Some(s) => s.to_owned(),
        None => yaml_serde::to_string(value)
            .unwrap_or_default()
            .trim()
            .to_owned(),
    }
}

fn json_text(value: &serde_json::Value) -> String {
    match value.as_str() {
        Some(s) => s.to_owned(),
        None => value.to_string(),
    }
}

/// Decode a tree into a Pod, keeping the path of the field that failed.
fn decode<'de, D>(tree: D) -> Result<Pod, FieldError>
where
    D: Deserializer<'de>,
    D::Error: std::fmt::Display,
{
    serde_path_to_error::deserialize(tree).map_err(|e| {
        let path = e.path().to_string();
        FieldError {
            // serde_path_to_error writes the root as "."; say what it is.
            path: if path == "." {
                "(document)".into()
            } else {
                path
            },
            message: e.into_inner().to_string(),
        }
    })
}

/// Fields written in the document that the Pod type does not have, found by
/// comparing with the decoded Pod serialized back. The decoder drops them
/// without a word, so a typo such as `imagePulPolicy` would silently run a
/// different pod; `kubectl apply` refuses them too (strict field validation).
fn unknown_fields(
    written: &serde_json::Value,
    decoded: &serde_json::Value,
    path: &str,
    out: &mut Vec<FieldError>,
) {
    use serde_json::Value;
    match (written, decoded) {
        (Value::Object(written), Value::Object(decoded)) => {
            for (key, value) in written {
                let here = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                match decoded.get(key) {
                    Some(d) => unknown_fields(value, d, &here, out),
                    // `key: null` (or `key: ~`) means "unset" and is not serialized back.
                    None if value.is_null() => {}
                    None => out.push(FieldError {
                        path: here,
                        message: "unknown field: the v1 Pod has no such field (a typo?)".into(),
                    }),
                }
            }
        }
        (Value::Array(written), Value::Array(decoded)) => {
            for (i, (w, d)) in written.iter().zip(decoded).enumerate() {
                unknown_fields(w, d, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}
