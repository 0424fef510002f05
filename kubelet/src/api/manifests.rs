//! `POST /manifests` (apply) and `DELETE /pods/{ns}/{name}`: the API writes the
//! manifests folder, and the folder source does the rest, as if a person had
//! edited the files.
//!
//! Each applied pod gets a file of its own, so deleting it later is removing
//! that file: the file that already defines it (when it defines only it), else
//! `<manifests>/<ns>_<name>.yaml`. A pod in a hand-written file with other pods
//! is refused (409): rewriting that file would touch pods the user did not
//! apply. Files are written atomically (a `.NAME.tmp` file, which the folder
//! source ignores, fsynced and renamed over), and a request is all or nothing:
//! every pod is checked before the first file is written.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use axum::body::Bytes;
use axum::extract::{Path as Params, Query, State};
use axum::Json;
use k8s_openapi::api::core::v1::Pod;
use serde::{Deserialize, Serialize};

use super::pods::find;
use super::server::Shared;
use super::status::ApiError;
use super::Node;
use crate::source::manifest::{self, full_name};

/// Applies and deletes of the folder run one at a time, so two requests never
/// decide from the same view of the folder.
static FOLDER: Mutex<()> = Mutex::new(());

/// What apply did to one pod.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// No file defined the pod: one was written.
    Created,
    /// The pod's file held another version of it: it was replaced.
    Configured,
    /// The pod's file already says the same: nothing was written.
    Unchanged,
}

/// One pod of an apply, as the response lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    /// The pod's namespace.
    pub namespace: String,
    /// The pod's name as it runs (with the node suffix of static pods).
    pub name: String,
    /// What was done.
    pub action: Action,
}

/// The response of `POST /manifests`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplyResult {
    /// Every pod of the request, in the order written.
    pub items: Vec<Applied>,
}

/// The query of `POST /manifests`.
#[derive(Debug, Default, Deserialize)]
pub struct ApplyQuery {
    /// The user's file name, for error messages.
    file: Option<String>,
}

/// `POST /manifests?file=NAME` with the manifest as the body.
pub async fn apply(
    State(node): State<Shared>,
    Query(query): Query<ApplyQuery>,
    body: Bytes,
) -> Result<Json<ApplyResult>, ApiError> {
    let label = query.file.unwrap_or_else(|| "(request body)".into());
    blocking(move || {
        let _folder = FOLDER.lock().unwrap_or_else(|e| e.into_inner());
        apply_manifest(node.as_ref(), &label, &body).map(|items| ApplyResult { items })
    })
    .await
    .map(Json)
}

/// `DELETE /pods/{ns}/{name}`: remove the pod's manifest; the pod as it was.
pub async fn delete(
    State(node): State<Shared>,
    Params((namespace, name)): Params<(String, String)>,
) -> Result<Json<Pod>, ApiError> {
    blocking(move || {
        let _folder = FOLDER.lock().unwrap_or_else(|e| e.into_inner());
        delete_pod(node.as_ref(), &namespace, &name)
    })
    .await
    .map(Json)
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ApiError::internal(format!("the request's task failed: {e}")))?
}

/// One pod of the request and where it goes.
struct Plan {
    pod: Pod,
    target: PathBuf,
    content: Vec<u8>,
    action: Action,
}

fn apply_manifest(node: &dyn Node, label: &str, body: &[u8]) -> Result<Vec<Applied>, ApiError> {
    let node_name = node.node_name();
    let (pods, contents) = parse_request(label, body, &node_name)?;
    let dir = node.manifests_dir();
    let mut plans = Vec::new();
    for (pod, content) in pods.into_iter().zip(contents) {
        let target = target_file(node, &dir, &pod)?;
        let action = match read_pods(&target, &node_name) {
            None => Action::Created,
            Some(Ok(existing))
                if parse_as(&target, &content, &node_name).as_ref() == Ok(&existing) =>
            {
                Action::Unchanged
            }
            Some(_) => Action::Configured,
        };
        plans.push(Plan {
            pod,
            target,
            content,
            action,
        });
    }
    let mut applied = Vec::new();
    for plan in plans {
        if plan.action != Action::Unchanged {
            write_atomically(&plan.target, &plan.content)?;
        }
        applied.push(Applied {
            namespace: plan.pod.metadata.namespace.clone().unwrap_or_default(),
            name: plan.pod.metadata.name.clone().unwrap_or_default(),
            action: plan.action,
        });
    }
    Ok(applied)
}

fn delete_pod(node: &dyn Node, namespace: &str, name: &str) -> Result<Pod, ApiError> {
    let pod = find(node, namespace, name)?;
    // No file: the pod is already on its way out.
    let Some(file) = node.manifest_file(namespace, name) else {
        return Ok(pod);
    };
    match read_pods(&file, &node.node_name()) {
        None => return Ok(pod),
        Some(Ok(pods)) if pods.len() > 1 => {
            return Err(ApiError::conflict(format!(
                "pod {namespace}/{name} is defined in {} together with other pods; \
                 edit that file to remove it",
                file.display()
            )))
        }
        Some(Ok(_)) => {}
        Some(Err(e)) => {
            return Err(ApiError::conflict(format!(
                "cannot tell which pods {} defines, so it is left as is: {e}",
                file.display()
            )))
        }
    }
    match std::fs::remove_file(&file) {
        Ok(()) => sync_dir(&file)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(ApiError::internal(format!(
                "removing {}: {e}",
                file.display()
            )))
        }
    }
    Ok(pod)
}

/// The request's pods (validated as the folder source will) and, for each, the
/// content of its own manifest file.
fn parse_request(
    label: &str,
    body: &[u8],
    node_name: &str,
) -> Result<(Vec<Pod>, Vec<Vec<u8>>), ApiError> {
    let invalid = |e: manifest::ManifestError| ApiError::invalid(e.to_string());
    let file = Path::new(label);
    let Some(split) = split(body) else {
        // Not even YAML or JSON: parsing says where.
        return match manifest::parse(file, body, node_name) {
            Err(e) => Err(invalid(e)),
            Ok(_) => Err(ApiError::invalid(format!(
                "{label}: cannot split into documents"
            ))),
        };
    };
    // Parse the body as sent, for the user's document numbers and lines; a
    // List is parsed as its items, one document each.
    let pods = if split.listed {
        let joined: Vec<String> = split.items.iter().map(to_yaml).collect();
        manifest::parse(file, joined.join("---\n").as_bytes(), node_name)
    } else {
        manifest::parse(file, body, node_name)
    }
    .map_err(invalid)?;
    let documents: Vec<&serde_json::Value> = split.items.iter().filter(|v| !v.is_null()).collect();
    let contents = if documents.len() == 1 && !split.listed {
        // A one-pod file is kept as written, comments and all.
        vec![body.to_vec()]
    } else {
        documents.iter().map(|v| to_yaml(v).into_bytes()).collect()
    };
    if contents.len() != pods.len() {
        return Err(ApiError::internal(format!(
            "{label}: {} documents but {} pods",
            contents.len(),
            pods.len()
        )));
    }
    Ok((pods, contents))
}

/// The documents of a request, Lists flattened into their items; null for an
/// empty document (kept so document numbers match).
struct Split {
    items: Vec<serde_json::Value>,
    listed: bool,
}

fn split(body: &[u8]) -> Option<Split> {
    use serde::de::Deserialize as _;
    let text = std::str::from_utf8(body).ok()?;
    let documents: Vec<serde_json::Value> = if text.trim_start().starts_with('{') {
        vec![serde_json::from_str(text).ok()?]
    } else {
        let mut out = Vec::new();
        for document in yaml_serde::Deserializer::from_str(text) {
            let mut value = yaml_serde::Value::deserialize(document).ok()?;
            value.apply_merge().ok()?;
            out.push(serde_json::to_value(&value).ok()?);
        }
        out
    };
    let mut split = Split {
        items: Vec::new(),
        listed: false,
    };
    for document in documents {
        let kind = document.get("kind").and_then(|k| k.as_str());
        match (kind, document.get("items")) {
            (Some("List" | "PodList"), Some(serde_json::Value::Array(items))) => {
                split.listed = true;
                split.items.extend(items.iter().cloned());
            }
            _ => split.items.push(document),
        }
    }
    Some(split)
}

fn to_yaml(value: &serde_json::Value) -> String {
    if value.is_null() {
        return "null\n".into();
    }
    // Serializing a JSON tree to YAML cannot fail.
    yaml_serde::to_string(value).unwrap_or_default()
}

/// Where the pod's manifest goes (see the module docs).
fn target_file(node: &dyn Node, dir: &Path, pod: &Pod) -> Result<PathBuf, ApiError> {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    let conflict = |file: &Path| {
        ApiError::conflict(format!(
            "pod {namespace}/{name} is defined in {} together with other pods; \
             edit that file instead",
            file.display()
        ))
    };
    let node_name = node.node_name();
    if let Some(file) = node.manifest_file(namespace, name) {
        match read_pods(&file, &node_name) {
            Some(Ok(pods)) if pods.len() > 1 => return Err(conflict(&file)),
            Some(Ok(_)) => return Ok(file),
            // Gone or broken since the source read it: write the usual file.
            _ => {}
        }
    }
    // The file is named after the pod as written, without the node suffix.
    let suffix = format!("-{}", node_name.to_lowercase());
    let written = name.strip_suffix(&suffix).unwrap_or(name);
    let file = dir.join(format!("{namespace}_{written}.yaml"));
    if let Some(Ok(pods)) = read_pods(&file, &node_name) {
        if pods.iter().any(|p| full_name(p) != full_name(pod)) {
            return Err(conflict(&file));
        }
    }
    Ok(file)
}

/// The pods `file` defines; None if it does not exist.
fn read_pods(file: &Path, node_name: &str) -> Option<Result<Vec<Pod>, String>> {
    match std::fs::read(file) {
        Ok(content) => Some(parse_as(file, &content, node_name)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => Some(Err(format!("{}: {e}", file.display()))),
    }
}

fn parse_as(file: &Path, content: &[u8], node_name: &str) -> Result<Vec<Pod>, String> {
    manifest::parse(file, content, node_name).map_err(|e| e.to_string())
}

/// Replace `file` with `content` so readers see the old or the new file, never half.
fn write_atomically(file: &Path, content: &[u8]) -> Result<(), ApiError> {
    let fail = |what: &str, path: &Path, e: std::io::Error| {
        ApiError::internal(format!("{what} {}: {e}", path.display()))
    };
    let dir = file.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| fail("creating", dir, e))?;
    let name = file.file_name().unwrap_or_default().to_string_lossy();
    let staging = dir.join(format!(".{name}.tmp"));
    let result = std::fs::File::create(&staging)
        .and_then(|mut f| f.write_all(content).and_then(|()| f.sync_all()))
        .map_err(|e| fail("writing", &staging, e))
        .and_then(|()| std::fs::rename(&staging, file).map_err(|e| fail("renaming", &staging, e)));
    if result.is_err() {
        let _ = std::fs::remove_file(&staging);
    }
    result?;
    sync_dir(file)
}

/// Make a rename or removal in `file`'s directory durable.
fn sync_dir(file: &Path) -> Result<(), ApiError> {
    let dir = file.parent().unwrap_or(Path::new("."));
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| ApiError::internal(format!("syncing {}: {e}", dir.display())))
}
