//! Manifests and indexes (OCI and Docker schema 2) as registries serve them and archives hold them, their media types, and picking a platform from an index.

use crate::image::{Error, Result};
use serde::Deserialize;
use std::collections::HashMap;
use std::fmt;

/// An OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// An OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// A Docker schema 2 image manifest.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// A Docker schema 2 manifest list.
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// An OCI image config.
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// An uncompressed OCI layer.
pub const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
/// A gzip-compressed OCI layer.
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// A zstd-compressed OCI layer.
pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";

/// What a pull asks the registry for, in order of preference.
pub const ACCEPTED: &[&str] = &[
    OCI_INDEX,
    DOCKER_MANIFEST_LIST,
    OCI_MANIFEST,
    DOCKER_MANIFEST,
];

/// A content descriptor: what a manifest or index says about a blob.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// The blob's media type.
    #[serde(default)]
    pub media_type: String,
    /// `sha256:…`.
    pub digest: String,
    /// Size in bytes.
    pub size: u64,
    /// In an index: the platform the manifest is for.
    #[serde(default)]
    pub platform: Option<Platform>,
    /// Free-form metadata, e.g. an OCI layout's `org.opencontainers.image.ref.name`.
    #[serde(default)]
    pub annotations: HashMap<String, String>,
}

/// An OS/architecture pair with an optional CPU variant, e.g. `linux/arm64/v8`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Platform {
    /// `linux`, `windows`, …
    pub os: String,
    /// Go's GOARCH names: `amd64`, `arm64`, `arm`, `ppc64le`, `s390x`, …
    pub architecture: String,
    /// `v7`, `v8`, … when the architecture has variants.
    #[serde(default)]
    pub variant: Option<String>,
}

impl Platform {
    /// Parses `os/arch[/variant]`.
    pub fn parse(text: &str) -> Result<Platform> {
        let parts: Vec<&str> = text.split('/').collect();
        let invalid = || Error::Invalid {
            what: format!("platform {text:?}"),
            reason: "expected os/architecture[/variant], e.g. linux/amd64 or linux/arm64/v8".into(),
        };
        if !(2..=3).contains(&parts.len()) || parts.iter().any(|p| p.trim().is_empty()) {
            return Err(invalid());
        }
        Ok(Platform {
            os: parts[0].to_ascii_lowercase(),
            architecture: parts[1].to_ascii_lowercase(),
            variant: parts.get(2).map(|v| v.to_ascii_lowercase()),
        })
    }

    /// The platform this program runs on, in registry (GOARCH) names.
    pub fn host() -> Platform {
        let architecture = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "x86" => "386",
            "aarch64" => "arm64",
            "powerpc64" if cfg!(target_endian = "little") => "ppc64le",
            "powerpc64" => "ppc64",
            "loongarch64" => "loong64",
            other => other,
        };
        Platform {
            os: std::env::consts::OS.to_string(),
            architecture: architecture.to_string(),
            variant: None,
        }
    }

    /// Whether an index entry for `have` can run where `self` is wanted. No
    /// wanted variant accepts any; arm64's only variant, v8, may be left out.
    fn accepts(&self, have: &Platform) -> bool {
        if self.os != have.os || self.architecture != have.architecture {
            return false;
        }
        match (&self.variant, &have.variant) {
            (None, _) => true,
            (Some(want), Some(have)) => want == have,
            (Some(want), None) => self.architecture == "arm64" && want == "v8",
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(variant) = &self.variant {
            write!(f, "/{variant}")?;
        }
        Ok(())
    }
}

/// A parsed manifest document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Document {
    /// An OCI index or Docker manifest list: one manifest per platform.
    Index(Vec<Descriptor>),
    /// An image manifest: its config and layers, bottom first.
    Manifest {
        /// The image config blob.
        config: Descriptor,
        /// The layer blobs.
        layers: Vec<Descriptor>,
    },
}

/// The fields of both documents; which are present says which it is.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Raw {
    schema_version: Option<u32>,
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Option<Vec<Descriptor>>,
    #[serde(default)]
    manifests: Option<Vec<Descriptor>>,
}

impl Document {
    /// Parses a manifest or index `what` (e.g. `manifest sha256:…`); the
    /// `mediaType` field decides, or the fields present when it is absent.
    pub fn parse(bytes: &[u8], what: &str) -> Result<Document> {
        let invalid = |reason: String| Error::Invalid {
            what: what.to_string(),
            reason,
        };
        let raw: Raw = serde_json::from_slice(bytes)
            .map_err(|e| invalid(format!("not a manifest or index: {e}")))?;
        if raw.schema_version != Some(2) {
            return Err(invalid(format!(
                "schemaVersion is {}, only 2 is supported (Docker schema 1 manifests are not)",
                raw.schema_version
                    .map_or("missing".to_string(), |v| v.to_string())
            )));
        }
        let is_index = match raw.media_type.as_deref() {
            Some(OCI_INDEX | DOCKER_MANIFEST_LIST) => true,
            Some(OCI_MANIFEST | DOCKER_MANIFEST) => false,
            Some(other) => {
                return Err(invalid(format!(
                    "unsupported media type {other:?} (expected one of {})",
                    ACCEPTED.join(", ")
                )))
            }
            None => raw.manifests.is_some(),
        };
        if is_index {
            let manifests = raw
                .manifests
                .ok_or_else(|| invalid("an index without \"manifests\"".into()))?;
            return Ok(Document::Index(manifests));
        }
        let config = raw
            .config
            .ok_or_else(|| invalid("a manifest without \"config\"".into()))?;
        Ok(Document::Manifest {
            config,
            layers: raw.layers.unwrap_or_default(),
        })
    }
}

/// Picks the manifest for `want` from an index's entries; on failure returns
/// the platforms the index offers, for the error message.
pub fn select_platform<'a>(
    manifests: &'a [Descriptor],
    want: &Platform,
) -> std::result::Result<&'a Descriptor, String> {
    let runnable = |d: &&Descriptor| d.platform.as_ref().is_some_and(|p| want.accepts(p));
    // An exact variant match beats an entry that merely qualifies.
    manifests
        .iter()
        .filter(runnable)
        .find(|d| d.platform.as_ref().map(|p| &p.variant) == Some(&want.variant))
        .or_else(|| manifests.iter().find(runnable))
        .ok_or_else(|| available(manifests))
}

/// The platforms of an index, skipping `unknown/unknown` attestation entries.
fn available(manifests: &[Descriptor]) -> String {
    let mut seen: Vec<String> = Vec::new();
    for platform in manifests.iter().filter_map(|d| d.platform.as_ref()) {
        let name = platform.to_string();
        if platform.os != "unknown" && !seen.contains(&name) {
            seen.push(name);
        }
    }
    if seen.is_empty() {
        "none".into()
    } else {
        seen.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(digest: &str, platform: Option<&str>) -> Descriptor {
        Descriptor {
            media_type: OCI_MANIFEST.into(),
            digest: digest.into(),
            size: 1,
            platform: platform.map(|p| Platform::parse(p).unwrap()),
            annotations: Default::default(),
        }
    }

    fn index() -> Vec<Descriptor> {
        vec![
            entry("sha256:arm7", Some("linux/arm/v7")),
            entry("sha256:arm64", Some("linux/arm64/v8")),
            entry("sha256:amd64", Some("linux/amd64")),
            entry("sha256:att", Some("unknown/unknown")),
            entry("sha256:win", Some("windows/amd64")),
            entry("sha256:nop", None),
        ]
    }

    fn pick(want: &str) -> std::result::Result<String, String> {
        select_platform(&index(), &Platform::parse(want).unwrap()).map(|d| d.digest.clone())
    }

    #[test]
    fn parses_platform_strings() {
        let p = Platform::parse("linux/arm64/v8").unwrap();
        assert_eq!((p.os.as_str(), p.architecture.as_str()), ("linux", "arm64"));
        assert_eq!(p.variant.as_deref(), Some("v8"));
        assert_eq!(p.to_string(), "linux/arm64/v8");
        assert_eq!(
            Platform::parse("Linux/AMD64").unwrap().to_string(),
            "linux/amd64"
        );
        for bad in ["linux", "linux/", "/amd64", "a/b/c/d", ""] {
            let err = Platform::parse(bad).unwrap_err().to_string();
            assert!(err.contains("os/architecture"), "{bad}: {err}");
        }
    }

    #[test]
    fn host_platform_uses_registry_names() {
        let host = Platform::host();
        assert_eq!(host.os, "linux");
        if cfg!(target_arch = "x86_64") {
            assert_eq!(host.to_string(), "linux/amd64");
        }
    }

    #[test]
    fn selects_by_os_architecture_and_variant() {
        assert_eq!(pick("linux/amd64").unwrap(), "sha256:amd64");
        assert_eq!(pick("linux/arm64").unwrap(), "sha256:arm64");
        assert_eq!(pick("linux/arm64/v8").unwrap(), "sha256:arm64");
        assert_eq!(pick("linux/arm/v7").unwrap(), "sha256:arm7");
        assert_eq!(pick("windows/amd64").unwrap(), "sha256:win");
        // arm64 entries without a variant are v8.
        let bare = vec![entry("sha256:a", Some("linux/arm64"))];
        let want = Platform::parse("linux/arm64/v8").unwrap();
        assert_eq!(select_platform(&bare, &want).unwrap().digest, "sha256:a");
    }

    #[test]
    fn exact_variant_is_preferred() {
        let manifests = vec![
            entry("sha256:v6", Some("linux/arm/v6")),
            entry("sha256:v7", Some("linux/arm/v7")),
        ];
        let want = Platform::parse("linux/arm/v7").unwrap();
        assert_eq!(
            select_platform(&manifests, &want).unwrap().digest,
            "sha256:v7"
        );
        let any = Platform::parse("linux/arm").unwrap();
        assert_eq!(
            select_platform(&manifests, &any).unwrap().digest,
            "sha256:v6"
        );
    }

    #[test]
    fn no_match_lists_what_is_available() {
        let available = pick("linux/s390x").unwrap_err();
        assert_eq!(
            available,
            "linux/arm/v7, linux/arm64/v8, linux/amd64, windows/amd64"
        );
        assert!(pick("linux/arm/v6").is_err());
        assert_eq!(select_platform(&[], &Platform::host()).unwrap_err(), "none");
    }

    #[test]
    fn parses_oci_and_docker_documents() {
        let manifest = br#"{
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": "sha256:c", "size": 7},
            "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "digest": "sha256:l", "size": 9}]
        }"#;
        match Document::parse(manifest, "m").unwrap() {
            Document::Manifest { config, layers } => {
                assert_eq!((config.digest.as_str(), config.size), ("sha256:c", 7));
                assert_eq!(layers.len(), 1);
                assert!(layers[0].media_type.ends_with("tar.gzip"));
            }
            other => panic!("{other:?}"),
        }
        let list = br#"{"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.list.v2+json",
            "manifests": [{"mediaType": "x", "digest": "sha256:a", "size": 1, "platform": {"os": "linux", "architecture": "amd64"}}]}"#;
        assert!(matches!(Document::parse(list, "l").unwrap(), Document::Index(m) if m.len() == 1));
        // OCI documents may leave out mediaType; the fields decide.
        let bare_index = br#"{"schemaVersion": 2, "manifests": []}"#;
        assert_eq!(
            Document::parse(bare_index, "i").unwrap(),
            Document::Index(vec![])
        );
        let bare_manifest =
            br#"{"schemaVersion": 2, "config": {"digest": "sha256:c", "size": 2}, "layers": []}"#;
        assert!(matches!(
            Document::parse(bare_manifest, "m").unwrap(),
            Document::Manifest { .. }
        ));
    }

    #[test]
    fn rejects_unsupported_documents() {
        let reason = |json: &str| {
            Document::parse(json.as_bytes(), "manifest x")
                .unwrap_err()
                .to_string()
        };
        assert!(reason(r#"{"schemaVersion": 1, "fsLayers": []}"#).contains("schema 1"));
        assert!(reason(r#"{"schemaVersion": 2, "mediaType": "text/html"}"#)
            .contains("unsupported media type"));
        assert!(reason(
            r#"{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json"}"#
        )
        .contains("without \"config\""));
        assert!(reason("<html>").starts_with("manifest x: not a manifest"));
    }
}
