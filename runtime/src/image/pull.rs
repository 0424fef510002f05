//! Pulling images from OCI and Docker registries into the [`Store`], with the `oci-client` crate.
//!
//! A pull resolves the name to a manifest (through an index for the wanted
//! platform), stores the manifests and config exactly as served, then
//! fetches the layers not yet present, a few at a time, each streamed
//! straight into the blob store and the unpacker ([`layer`]). The image is
//! recorded only when all of it is in place.

mod layer;
mod registry;

use super::auth::Keyring;
use super::manifest::{self, Descriptor, Document, Platform};
use super::{config, unpack, Error, Image, Layer, Reference, Result, Store};
use futures::{StreamExt, TryStreamExt};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use registry::{Registry, Subject};
use std::io::IsTerminal;

/// Layers downloaded at the same time.
const PARALLEL_LAYERS: usize = 4;

/// Times a pull fetches and tries to record an image whose content a
/// concurrent prune collected under it.
const PUT_ROUNDS: u32 = 3;

/// Indexes followed before giving up (an index may point at another index).
const MAX_INDEX_DEPTH: usize = 2;

/// When to contact the registry (Kubernetes' `imagePullPolicy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullPolicy {
    /// Always resolve the name again (layers already present are not fetched again).
    Always,
    /// Pull only when no image of that name is stored.
    IfNotPresent,
    /// Never pull; a missing image is an error.
    Never,
}

/// How a pull reports progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Nothing (the kubelet, `--quiet`).
    Quiet,
    /// One bar per layer on stdout, when it is a terminal (as `docker pull`).
    Bars,
}

/// What a pull needs besides the name.
#[derive(Debug, Clone)]
pub struct PullOptions {
    /// Credentials to offer.
    pub keyring: Keyring,
    /// The platform to pick from an index, e.g. `linux/amd64` (default: the host's).
    pub platform: String,
    /// Registries reached over plain HTTP besides loopback ones (`host:port`).
    pub insecure_registries: Vec<String>,
    /// Attempts per request on transient errors (connection reset, 5xx, 429).
    pub retries: u32,
    /// How to report progress.
    pub progress: Progress,
}

impl Default for PullOptions {
    /// No credentials, the host's platform, 3 attempts, no progress output.
    fn default() -> PullOptions {
        PullOptions {
            keyring: Keyring::default(),
            platform: Platform::host().to_string(),
            insecure_registries: Vec::new(),
            retries: 3,
            progress: Progress::Quiet,
        }
    }
}

/// Pulls `name` into `store` and records it: resolves the name, picks the
/// platform's manifest from an index, fetches config and missing layers in
/// parallel (checked against their digests), unpacks each layer once.
pub async fn pull(store: &Store, name: &str, options: &PullOptions) -> Result<Image> {
    let reference = Reference::parse(name)?;
    let platform = Platform::parse(&options.platform)?;
    let registry = Registry::new(&reference, options);
    let mut rounds = 0;
    loop {
        rounds += 1;
        let image = fetch_image(&registry, store, &reference, &platform, options.progress).await?;
        match store.put(&image) {
            Ok(()) => return Ok(image),
            // A concurrent prune or rmi may collect content no record named
            // yet; fetching again restores it (the store's documented contract).
            Err(err) if rounds < PUT_ROUNDS && !complete(store, &image) => {
                tracing::debug!(image = %image.name, %err, "content collected before the record was written; fetching again");
            }
            Err(err) => return Err(err),
        }
    }
}

/// Fetches everything `reference` needs into the store and describes the
/// image, without recording it.
async fn fetch_image(
    registry: &Registry,
    store: &Store,
    reference: &Reference,
    platform: &Platform,
    progress: Progress,
) -> Result<Image> {
    let wanted = match (&reference.digest, &reference.tag) {
        (Some(digest), _) => digest.clone(),
        (None, tag) => tag.clone().unwrap_or_else(|| "latest".into()),
    };
    let (repo_digest, bytes) = fetch_manifest(registry, store, reference, &wanted).await?;
    if let Some(expected) = &reference.digest {
        check_digest(expected, &repo_digest, bytes.len())?;
    }
    let (manifest_digest, config, layers) = resolve(
        registry,
        store,
        reference,
        platform,
        repo_digest.clone(),
        bytes,
    )
    .await?;

    let config_bytes = layer::document(registry, store, &config.digest, config.size).await?;
    let layers = describe_layers(&config.digest, &config_bytes, layers)?;
    fetch_layers(registry, store, &layers, progress).await?;

    Ok(Image {
        name: reference.to_string(),
        digest: repo_digest,
        manifest: manifest_digest,
        config: config.digest,
        layers,
        stored_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    })
}

/// Whether every blob and unpacked layer `image` names is in the store.
fn complete(store: &Store, image: &Image) -> bool {
    let content = store.content();
    [&image.digest, &image.manifest, &image.config]
        .into_iter()
        .all(|digest| content.has(digest))
        && image
            .layers
            .iter()
            .all(|l| content.has(&l.digest) && store.layer_dir(&l.diff_id).is_some())
}

/// Returns the stored image for `name`, pulling it first as `policy` says.
pub async fn ensure(
    store: &Store,
    name: &str,
    policy: PullPolicy,
    options: &PullOptions,
) -> Result<Image> {
    let reference = Reference::parse(name)?;
    match policy {
        PullPolicy::Always => pull(store, name, options).await,
        PullPolicy::IfNotPresent => match store.get(&reference)? {
            Some(image) => Ok(image),
            None => pull(store, name, options).await,
        },
        PullPolicy::Never => store.get(&reference)?.ok_or_else(|| {
            Error::NotFound(format!(
                "{reference} (the pull policy is Never, so it is not pulled)"
            ))
        }),
    }
}

/// Fetches the manifest or index `wanted` (tag or digest) names and stores
/// its exact bytes under their digest; returns both.
async fn fetch_manifest(
    registry: &Registry,
    store: &Store,
    reference: &Reference,
    wanted: &str,
) -> Result<(String, Vec<u8>)> {
    let bytes = registry
        .retry(|| registry.manifest_once(wanted))
        .await
        .map_err(|f| f.into_error(registry, Subject::Manifest(&reference.to_string()), 0))?;
    let digest = sha256(&bytes);
    store.content().write(&digest, &bytes)?;
    Ok((digest, bytes))
}

/// Follows an index to the manifest for `platform`; returns that manifest's
/// digest, its config and its layers.
async fn resolve(
    registry: &Registry,
    store: &Store,
    reference: &Reference,
    platform: &Platform,
    mut digest: String,
    mut bytes: Vec<u8>,
) -> Result<(String, Descriptor, Vec<Descriptor>)> {
    for _ in 0..=MAX_INDEX_DEPTH {
        match Document::parse(&bytes, &format!("manifest {digest}"))? {
            Document::Manifest { config, layers } => return Ok((digest, config, layers)),
            Document::Index(manifests) => {
                let entry =
                    manifest::select_platform(&manifests, platform).map_err(|available| {
                        Error::NoMatchingPlatform {
                            image: reference.to_string(),
                            platform: platform.to_string(),
                            available,
                        }
                    })?;
                let (next, next_bytes) =
                    fetch_manifest(registry, store, reference, &entry.digest).await?;
                check_digest(&entry.digest, &next, next_bytes.len())?;
                (digest, bytes) = (next, next_bytes);
            }
        }
    }
    Err(Error::Invalid {
        what: reference.to_string(),
        reason: format!("indexes nested more than {MAX_INDEX_DEPTH} deep"),
    })
}

/// Pairs the manifest's layer blobs with the config's diff ids, checking the
/// media types are layers peapod can unpack.
fn describe_layers(
    config_digest: &str,
    config_json: &[u8],
    blobs: Vec<Descriptor>,
) -> Result<Vec<Layer>> {
    let diff_ids = config::diff_ids(config_json).map_err(|e| match e {
        Error::Invalid { reason, .. } => Error::Invalid {
            what: format!("image config {config_digest}"),
            reason,
        },
        other => other,
    })?;
    if diff_ids.len() != blobs.len() {
        return Err(Error::Invalid {
            what: format!("image config {config_digest}"),
            reason: format!(
                "it lists {} diff ids but the manifest has {} layers",
                diff_ids.len(),
                blobs.len()
            ),
        });
    }
    blobs
        .into_iter()
        .zip(diff_ids)
        .map(|(blob, diff_id)| {
            if unpack::Compression::from_media_type(&blob.media_type).is_none() {
                return Err(Error::Invalid {
                    what: format!("layer {}", blob.digest),
                    reason: format!("unsupported layer media type {:?}", blob.media_type),
                });
            }
            Ok(Layer {
                digest: blob.digest,
                diff_id,
                media_type: blob.media_type,
                size: blob.size,
            })
        })
        .collect()
}

/// The layers that still need work: not both stored and unpacked, each blob once.
fn missing_layers<'a>(store: &Store, layers: &'a [Layer]) -> Vec<&'a Layer> {
    let mut missing: Vec<&Layer> = Vec::new();
    for layer in layers {
        let present =
            store.content().has(&layer.digest) && store.layer_dir(&layer.diff_id).is_some();
        if !present && !missing.iter().any(|m| m.digest == layer.digest) {
            missing.push(layer);
        }
    }
    missing
}

/// Fetches and unpacks the missing layers, [`PARALLEL_LAYERS`] at a time; the
/// first failure stops the rest.
async fn fetch_layers(
    registry: &Registry,
    store: &Store,
    layers: &[Layer],
    progress: Progress,
) -> Result<()> {
    let missing = missing_layers(store, layers);
    let bars = (progress == Progress::Bars && std::io::stdout().is_terminal())
        .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stdout()));
    // Futures are lazy: building them all first only lays out the bars.
    let fetches: Vec<_> = missing
        .into_iter()
        .map(|layer| {
            let bar = bars.as_ref().map(|bars| bars.add(layer_bar(layer)));
            layer::fetch(registry, store, layer, bar)
        })
        .collect();
    futures::stream::iter(fetches)
        .buffer_unordered(PARALLEL_LAYERS)
        .try_collect::<()>()
        .await
}

/// A byte-counting bar named by the layer's short digest.
fn layer_bar(layer: &Layer) -> ProgressBar {
    let style = ProgressStyle::with_template(
        "{prefix} [{bar:30.cyan/blue}] {bytes:>10}/{total_bytes:10} {bytes_per_sec:>12} {msg}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ");
    let hex = layer
        .digest
        .strip_prefix("sha256:")
        .unwrap_or(&layer.digest);
    ProgressBar::new(layer.size)
        .with_style(style)
        .with_prefix(hex[..hex.len().min(12)].to_string())
}

use super::content::sha256_digest as sha256;

/// Fails unless content announced as `expected` hashed to `actual`.
fn check_digest(expected: &str, actual: &str, size: usize) -> Result<()> {
    if expected == actual {
        return Ok(());
    }
    Err(Error::DigestMismatch {
        expected: expected.to_string(),
        actual: actual.to_string(),
        size: size as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn descriptor(digest: &str, media_type: &str) -> Descriptor {
        Descriptor {
            media_type: media_type.into(),
            digest: digest.into(),
            size: 10,
            platform: None,
            annotations: Default::default(),
        }
    }

    #[test]
    fn default_options_pick_the_host_platform() {
        let options = PullOptions::default();
        assert_eq!(options.platform, Platform::host().to_string());
        assert!(options.retries >= 1);
        assert_eq!(options.progress, Progress::Quiet);
    }

    #[test]
    fn pulls_can_run_on_any_tokio_worker() {
        fn send<T: Send>(_: &T) {}
        // Type-checks only: the futures are never polled.
        let check = |store: &Store| {
            let options = PullOptions::default();
            send(&pull(store, "x", &options));
            send(&ensure(store, "x", PullPolicy::Always, &options));
        };
        let _ = check;
    }

    #[test]
    fn sha256_of_known_input() {
        assert_eq!(
            sha256(b"abc"),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn digest_check_reports_both_sides() {
        assert!(check_digest("sha256:a", "sha256:a", 1).is_ok());
        let err = check_digest("sha256:a", "sha256:b", 7).unwrap_err();
        assert_eq!(
            err.to_string(),
            "digest mismatch for sha256:a: got sha256:b (7 bytes)"
        );
    }

    #[test]
    fn diff_ids_must_match_the_layers() {
        let config = br#"{"rootfs": {"type": "layers", "diff_ids": ["sha256:d1"]}}"#;
        let two = vec![descriptor("sha256:l1", "x"), descriptor("sha256:l2", "x")];
        let err = describe_layers("sha256:c", config, two)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("image config sha256:c")
                && err.contains("1 diff ids but the manifest has 2"),
            "{err}"
        );
        let err = describe_layers("sha256:c", b"{}", vec![])
            .unwrap_err()
            .to_string();
        assert_eq!(err, "image config sha256:c: rootfs is missing");
    }

    /// A store holding `name` as an image without layers (no registry needed).
    fn store_with(name: &str) -> (tempfile::TempDir, Store, Image) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let config = br#"{"rootfs": {"type": "layers", "diff_ids": []}}"#;
        let manifest = br#"{"schemaVersion": 2, "layers": []}"#;
        let (config_digest, manifest_digest) = (sha256(config), sha256(manifest));
        store.content().write(&config_digest, config).unwrap();
        store.content().write(&manifest_digest, manifest).unwrap();
        let image = Image {
            name: Reference::parse(name).unwrap().to_string(),
            digest: manifest_digest.clone(),
            manifest: manifest_digest,
            config: config_digest,
            layers: vec![],
            stored_at: "2024-01-01T00:00:00Z".into(),
        };
        store.put(&image).unwrap();
        (dir, store, image)
    }

    /// Options for a registry nobody listens on: any contact fails fast.
    fn offline() -> PullOptions {
        PullOptions {
            retries: 1,
            ..PullOptions::default()
        }
    }

    /// `127.0.0.1:<port>/<repo>` on a loopback port just freed, so nothing
    /// listens there: any contact is refused at once and goes nowhere else.
    fn closed(repo: &str) -> String {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        format!("127.0.0.1:{port}/{repo}")
    }

    #[tokio::test]
    async fn never_uses_the_store_only() {
        let stored = closed("team/app:1");
        let (_dir, store, image) = store_with(&stored);
        let found = ensure(&store, &stored, PullPolicy::Never, &offline())
            .await
            .unwrap();
        assert_eq!(found, image);
        let err = ensure(
            &store,
            &closed("team/other:1"),
            PullPolicy::Never,
            &offline(),
        )
        .await
        .unwrap_err();
        assert!(matches!(err, Error::NotFound(_)), "{err:?}");
        assert!(err.to_string().contains("pull policy is Never"), "{err}");
    }

    #[tokio::test]
    async fn if_not_present_pulls_only_what_is_missing() {
        let stored = closed("team/app:1");
        let (_dir, store, image) = store_with(&stored);
        let found = ensure(&store, &stored, PullPolicy::IfNotPresent, &offline())
            .await
            .unwrap();
        assert_eq!(
            found, image,
            "served from the store without contacting the registry"
        );
        let err = ensure(
            &store,
            &closed("team/app:2"),
            PullPolicy::IfNotPresent,
            &offline(),
        )
        .await
        .unwrap_err();
        assert!(err.to_string().contains("registry unreachable"), "{err}");
    }

    #[tokio::test]
    async fn always_contacts_the_registry() {
        let stored = closed("team/app:1");
        let (_dir, store, _image) = store_with(&stored);
        let err = ensure(&store, &stored, PullPolicy::Always, &offline())
            .await
            .unwrap_err();
        assert!(err.to_string().contains(": registry unreachable"), "{err}");
    }
}
