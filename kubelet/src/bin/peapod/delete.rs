//! `peapod delete pod NAME... | -f FILE`: remove pods' manifests, then wait
//! until the pods are gone (as `kubectl delete` waits by default).

use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;

use crate::apply::manifests;
use crate::client::{encode, Client, ServerError};
use crate::get::pod_names;
use crate::pods;

/// How often a deleted pod is looked for while waiting.
const POLL: Duration = Duration::from_millis(200);

/// Arguments of `peapod delete`.
#[derive(clap::Args)]
pub struct DeleteArgs {
    /// `pod NAME...`, or `pod/NAME`.
    #[arg(value_name = "TYPE NAME")]
    args: Vec<String>,
    /// Delete the pods these manifests define.
    #[arg(short = 'f', long = "filename", value_name = "FILE")]
    files: Vec<PathBuf>,
    /// Treat a pod that is not there as deleted (no error).
    #[arg(long)]
    ignore_not_found: bool,
    /// Wait until the pods are gone.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    wait: bool,
}

/// Run `peapod delete`.
pub async fn run(client: &Client, namespace: &str, args: &DeleteArgs) -> anyhow::Result<()> {
    let targets: Vec<(String, String)> = if args.files.is_empty() {
        let Some((resource, names)) = args.args.split_first() else {
            anyhow::bail!("resource(s) were provided, but no name was specified: peapod delete pod NAME | -f FILE");
        };
        let names = pod_names(resource, names)?;
        if names.is_empty() {
            anyhow::bail!("resource(s) were provided, but no name was specified");
        }
        names
            .into_iter()
            .map(|n| (namespace.to_owned(), n))
            .collect()
    } else {
        from_files(client, namespace, &args.files).await?
    };
    let mut deleted = Vec::new();
    for (ns, name) in targets {
        let path = format!("/pods/{}/{}", encode(&ns), encode(&name));
        match client.delete::<Pod>(&path).await {
            Ok(_) => out!("pod \"{name}\" deleted"),
            Err(e) if args.ignore_not_found && not_found(&e) => continue,
            Err(e) => return Err(e),
        }
        deleted.push(path);
    }
    if args.wait {
        for path in deleted {
            wait_gone(client, &path).await?;
        }
    }
    Ok(())
}

/// Whether the kubelet answered 404.
fn not_found(error: &anyhow::Error) -> bool {
    error
        .downcast_ref::<ServerError>()
        .is_some_and(|s| s.is_not_found())
}

/// Poll `path` until the kubelet says 404.
async fn wait_gone(client: &Client, path: &str) -> anyhow::Result<()> {
    loop {
        match client.get::<Pod>(path).await {
            Ok(_) => tokio::time::sleep(POLL).await,
            Err(e) if not_found(&e) => return Ok(()),
            Err(e) => return Err(e),
        }
    }
}

/// The pods the manifests define, by the names they run under: a static pod
/// runs as `<name>-<node>`, so a written name is looked up among the node's pods.
async fn from_files(
    client: &Client,
    namespace: &str,
    files: &[PathBuf],
) -> anyhow::Result<Vec<(String, String)>> {
    let running = pods::fetch_all(client).await?;
    let mut out = Vec::new();
    for (file, content) in manifests(files)? {
        for (ns, name) in written_pods(&file, &content, namespace)? {
            let found = running.iter().find(|p| {
                let suffixed = p
                    .spec
                    .as_ref()
                    .and_then(|s| s.node_name.as_deref())
                    .map(|node| format!("{name}-{}", node.to_lowercase()));
                pods::namespace(p) == ns
                    && (pods::name(p) == name || Some(pods::name(p)) == suffixed.as_deref())
            });
            match found {
                Some(pod) => out.push((ns, pods::name(pod).to_owned())),
                None => {
                    return Err(ServerError {
                        code: 404,
                        reason: "NotFound".into(),
                        message: format!("pods \"{name}\" not found"),
                    }
                    .into())
                }
            }
        }
    }
    Ok(out)
}

/// `(namespace, name)` of each pod a manifest writes (Lists flattened).
fn written_pods(
    file: &str,
    content: &[u8],
    namespace: &str,
) -> anyhow::Result<Vec<(String, String)>> {
    use serde::Deserialize as _;
    let text =
        std::str::from_utf8(content).map_err(|e| anyhow::anyhow!("{file}: not UTF-8 text: {e}"))?;
    let mut out = Vec::new();
    for (i, document) in yaml_serde::Deserializer::from_str(text).enumerate() {
        let value = serde_json::Value::deserialize(document)
            .map_err(|e| anyhow::anyhow!("{file}: document {}: {e}", i + 1))?;
        let items = match value.get("items").and_then(|v| v.as_array()) {
            Some(items) => items.clone(),
            None if value.is_null() => continue,
            None => vec![value],
        };
        for item in items {
            let meta = &item["metadata"];
            let Some(name) = meta["name"].as_str() else {
                anyhow::bail!("{file}: document {}: metadata.name: Required value", i + 1);
            };
            let ns = meta["namespace"].as_str().unwrap_or(namespace);
            out.push((ns.to_owned(), name.to_owned()));
        }
    }
    Ok(out)
}
