//! `peapod apply -f FILE|DIR|-`: send manifests to the kubelet, which writes
//! them into its manifests folder.

use std::io::Read as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use kubelet::api::ApplyResult;

use crate::client::{encode, Client};

/// Arguments of `peapod apply`.
#[derive(clap::Args)]
pub struct ApplyArgs {
    /// A manifest file, a directory of them (.yaml, .yml, .json), or - for stdin.
    #[arg(short = 'f', long = "filename", required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
}

/// Run `peapod apply`.
pub async fn run(client: &Client, args: &ApplyArgs) -> anyhow::Result<()> {
    for (name, content) in manifests(&args.files)? {
        let path = format!("/manifests?file={}", encode(&name));
        let result: ApplyResult = client.post(&path, content).await?;
        for item in result.items {
            let action = serde_json::to_value(&item.action)?;
            out!("pod/{} {}", item.name, action.as_str().unwrap_or_default());
        }
    }
    Ok(())
}

/// Every manifest named by `-f` with its bytes, in order (a directory's sorted).
pub fn manifests(files: &[PathBuf]) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let mut out = Vec::new();
    for file in files {
        if file.as_os_str() == "-" {
            let mut content = Vec::new();
            std::io::stdin()
                .read_to_end(&mut content)
                .context("reading the manifest from stdin")?;
            out.push(("(stdin)".to_owned(), content));
        } else if file.is_dir() {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(file)
                .with_context(|| format!("listing {}", file.display()))?
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.is_file() && is_manifest(p))
                .collect();
            entries.sort();
            if entries.is_empty() {
                anyhow::bail!(
                    "error: no objects passed to apply ({} has no .yaml, .yml or .json file)",
                    file.display()
                );
            }
            for entry in entries {
                out.push(read(&entry)?);
            }
        } else {
            out.push(read(file)?);
        }
    }
    Ok(out)
}

fn is_manifest(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml" | "json")
    )
}

fn read(file: &Path) -> anyhow::Result<(String, Vec<u8>)> {
    let content = std::fs::read(file)
        .with_context(|| format!("the path {:?} cannot be read", file.display().to_string()))?;
    Ok((file.display().to_string(), content))
}
