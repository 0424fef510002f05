//! The result cache: the final ADD result of each attachment, kept so DEL and CHECK
//! can hand plugins their `prevResult`, in libcni's layout
//! (`<dir>/results/<network>-<containerID>-<ifname>`, kind `cniCacheV1`) so tools
//! that read libcni's cache read ours.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{CallerError, RuntimeConf};

/// One cached attachment.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entry {
    /// Always `cniCacheV1`.
    pub kind: String,
    /// The container id.
    #[serde(rename = "containerId")]
    pub container_id: String,
    /// The conflist the result came from, base64 as libcni writes it.
    #[serde(default)]
    pub config: String,
    /// The interface name.
    #[serde(rename = "ifName")]
    pub if_name: String,
    /// The network name.
    #[serde(rename = "networkName")]
    pub network_name: String,
    /// The netns path at ADD time.
    #[serde(rename = "netns", default)]
    pub netns: String,
    /// CNI_ARGS as key/value pairs.
    #[serde(rename = "cniArgs", default, skip_serializing_if = "Vec::is_empty")]
    pub cni_args: Vec<(String, String)>,
    /// The capability arguments given at ADD.
    #[serde(
        rename = "capabilityArgs",
        default,
        skip_serializing_if = "Value::is_null"
    )]
    pub capability_args: Value,
    /// The final ADD result.
    pub result: Value,
}

/// The cache directory (libcni's default is /var/lib/cni).
#[derive(Debug, Clone)]
pub struct Cache {
    dir: PathBuf,
}

impl Cache {
    /// A cache under `dir`.
    pub fn new(dir: &Path) -> Cache {
        Cache {
            dir: dir.to_path_buf(),
        }
    }

    fn path(&self, network: &str, rt: &RuntimeConf) -> PathBuf {
        self.dir
            .join("results")
            .join(format!("{network}-{}-{}", rt.container_id, rt.ifname))
    }

    /// Store an attachment's result (temp file + rename).
    pub fn save(
        &self,
        network: &str,
        config: &[u8],
        rt: &RuntimeConf,
        result: Value,
    ) -> Result<(), CallerError> {
        let entry = Entry {
            kind: "cniCacheV1".into(),
            container_id: rt.container_id.clone(),
            config: base64(config),
            if_name: rt.ifname.clone(),
            network_name: network.into(),
            netns: rt.netns.clone(),
            cni_args: rt.args.clone(),
            capability_args: rt.capability_args.clone(),
            result,
        };
        let path = self.path(network, rt);
        let io = |e| CallerError::Cache {
            path: path.clone(),
            source: e,
        };
        std::fs::create_dir_all(path.parent().unwrap_or(&self.dir)).map_err(io)?;
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, serde_json::to_vec(&entry).unwrap_or_default()).map_err(io)?;
        std::fs::rename(&tmp, &path).map_err(io)
    }

    /// The cached result of an attachment, if any (an unreadable entry counts as none).
    pub fn load(&self, network: &str, rt: &RuntimeConf) -> Option<Entry> {
        let text = std::fs::read(self.path(network, rt)).ok()?;
        serde_json::from_slice(&text).ok()
    }

    /// Forget an attachment.
    pub fn remove(&self, network: &str, rt: &RuntimeConf) -> Result<(), CallerError> {
        let path = self.path(network, rt);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(CallerError::Cache { path, source: e })
            }
            _ => Ok(()),
        }
    }

    /// Every cached attachment of `network`: (container id, ifname).
    pub fn attachments(&self, network: &str) -> Vec<(String, String)> {
        let Ok(dir) = std::fs::read_dir(self.dir.join("results")) else {
            return Vec::new();
        };
        dir.flatten()
            .filter_map(|e| serde_json::from_slice::<Entry>(&std::fs::read(e.path()).ok()?).ok())
            .filter(|e| e.network_name == network)
            .map(|e| (e.container_id, e.if_name))
            .collect()
    }
}

/// Standard base64 with padding, as Go's encoding/json writes a []byte.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_standard_encoding() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"{\"a\":1}"), "eyJhIjoxfQ==");
    }

    #[test]
    fn entries_round_trip_and_are_listed() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path());
        let rt = RuntimeConf {
            container_id: "c1".into(),
            netns: "/run/netns/x".into(),
            ifname: "eth0".into(),
            ..RuntimeConf::default()
        };
        cache
            .save(
                "net",
                b"{}",
                &rt,
                serde_json::json!({"cniVersion": "1.0.0"}),
            )
            .unwrap();
        assert!(dir.path().join("results/net-c1-eth0").exists());
        let entry = cache.load("net", &rt).unwrap();
        assert_eq!(entry.kind, "cniCacheV1");
        assert_eq!(entry.result["cniVersion"], "1.0.0");
        assert_eq!(
            cache.attachments("net"),
            vec![("c1".to_string(), "eth0".to_string())]
        );
        cache.remove("net", &rt).unwrap();
        cache.remove("net", &rt).unwrap();
        assert!(cache.load("net", &rt).is_none());
    }
}
