//! Registry credentials: a docker `config.json` and Kubernetes-style pull secrets (`.dockerconfigjson`).
//!
//! Both hold a map from a registry key to an entry. Keys are hosts
//! (`127.0.0.1:5000`) or URLs (`https://index.docker.io/v1/`); Docker Hub's
//! many spellings all match `docker.io`. An entry has `auth` (base64 of
//! `user:password`), or `username` and `password`, or an `identitytoken`.
//! Credential helpers (`credsStore`, `credHelpers`) are not run.

use super::{Error, Result};
use base64::Engine as _;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;

/// Credentials for one registry.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    /// User name and password (also used to obtain bearer tokens).
    Basic {
        /// The user name.
        username: String,
        /// The password or access token.
        password: String,
    },
    /// A registry identity token / bearer token used as is.
    Token(String),
}

impl std::fmt::Debug for Credentials {
    /// Never prints a secret, so credentials can sit in logged structs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::Basic { username, .. } => f
                .debug_struct("Basic")
                .field("username", username)
                .field("password", &"<redacted>")
                .finish(),
            Credentials::Token(_) => f.debug_tuple("Token").field(&"<redacted>").finish(),
        }
    }
}

/// Credentials by registry host, in the order they were added (pull secrets first).
#[derive(Debug, Clone, Default)]
pub struct Keyring {
    entries: Vec<(String, Credentials)>,
}

/// One entry of `auths`, as docker writes it.
#[derive(Debug, Default, Deserialize)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    identitytoken: Option<String>,
    #[serde(default)]
    registrytoken: Option<String>,
}

impl Keyring {
    /// Adds the `auths` of a docker `config.json` (a missing file adds nothing).
    pub fn add_docker_config(&mut self, path: &Path) -> Result<()> {
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(source) => {
                return Err(Error::Io {
                    op: "read docker config",
                    path: path.to_path_buf(),
                    source,
                })
            }
        };
        let what = format!("docker config {}", path.display());
        let value: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| Error::Invalid {
                what: what.clone(),
                reason: format!("not JSON: {e}"),
            })?;
        match value.get("auths") {
            None | Some(serde_json::Value::Null) => Ok(()),
            Some(auths) => self.add_auths(&what, "auths", auths),
        }
    }

    /// Adds a pull secret's `.dockerconfigjson` (or legacy `.dockercfg`) content.
    pub fn add_pull_secret(&mut self, json: &[u8]) -> Result<()> {
        let what = "pull secret";
        let value: serde_json::Value =
            serde_json::from_slice(json).map_err(|e| Error::Invalid {
                what: what.into(),
                reason: format!("not JSON: {e}"),
            })?;
        // `.dockerconfigjson` wraps the map in `auths`; `.dockercfg` is the map itself.
        match value.get("auths") {
            Some(auths) if auths.is_object() => self.add_auths(what, "auths", auths),
            _ => self.add_auths(what, "", &value),
        }
    }

    /// Adds credentials for `registry` (a host or URL), e.g. from `--creds`.
    pub fn add(&mut self, registry: &str, credentials: Credentials) {
        self.entries.push((registry_key(registry), credentials));
    }

    /// The credentials for `registry` (`docker.io` also matches `index.docker.io`
    /// and `https://index.docker.io/v1/`), if any.
    pub fn lookup(&self, registry: &str) -> Option<&Credentials> {
        let key = registry_key(registry);
        self.entries
            .iter()
            .find(|(host, _)| *host == key)
            .map(|(_, credentials)| credentials)
    }

    /// Whether no credentials were added.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Adds each entry of the `auths` map `auths`, found at `field` in `what`.
    fn add_auths(&mut self, what: &str, field: &str, auths: &serde_json::Value) -> Result<()> {
        let invalid = |field: String, reason: String| Error::Invalid {
            what: what.to_string(),
            reason: format!("{field}: {reason}"),
        };
        let prefix = if field.is_empty() {
            String::new()
        } else {
            format!("{field}.")
        };
        let map: BTreeMap<String, AuthEntry> =
            serde_json::from_value(auths.clone()).map_err(|e| {
                invalid(
                    field_or_top(field),
                    format!("not a map of registry entries: {e}"),
                )
            })?;
        for (key, entry) in map {
            let field = format!("{prefix}{key:?}");
            if let Some(credentials) = entry.credentials().map_err(|r| invalid(field, r))? {
                self.add(&key, credentials);
            }
        }
        Ok(())
    }
}

fn field_or_top(field: &str) -> String {
    if field.is_empty() {
        "top level".into()
    } else {
        field.into()
    }
}

impl AuthEntry {
    /// The credentials the entry holds; `None` for an empty entry (docker
    /// writes those when a credential helper keeps the secret).
    fn credentials(self) -> std::result::Result<Option<Credentials>, String> {
        let non_empty = |s: Option<String>| s.filter(|s| !s.is_empty());
        let (username, password) = match non_empty(self.auth) {
            Some(auth) => {
                let (username, password) = decode_auth(&auth)?;
                (Some(username), Some(password))
            }
            None => (non_empty(self.username), non_empty(self.password)),
        };
        // A user name and password work with every registry (basic auth or
        // the token dance); a token alone is used as a bearer token.
        match (username, password) {
            (Some(username), Some(password)) => Ok(Some(Credentials::Basic { username, password })),
            (Some(_), None) if non_empty(self.identitytoken.clone()).is_none() => {
                Err("username is set but password is missing".into())
            }
            _ => Ok(non_empty(self.identitytoken)
                .or(non_empty(self.registrytoken))
                .map(Credentials::Token)),
        }
    }
}

/// Decodes `auth`: base64 of `user:password`.
fn decode_auth(auth: &str) -> std::result::Result<(String, String), String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(auth.trim())
        .map_err(|e| format!("auth is not valid base64: {e}"))?;
    let text =
        String::from_utf8(bytes).map_err(|_| "auth does not decode to UTF-8 text".to_string())?;
    let (username, password) = text
        .split_once(':')
        .ok_or("auth does not decode to user:password (no ':')")?;
    if username.is_empty() {
        return Err("auth decodes to an empty user name".into());
    }
    Ok((username.to_string(), password.to_string()))
}

/// The host a config key or registry name stands for: scheme and path dropped,
/// Docker Hub's aliases folded into `docker.io`.
fn registry_key(key: &str) -> String {
    let key = key.trim();
    let key = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let host = key.split('/').next().unwrap_or(key).to_ascii_lowercase();
    match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            super::reference::DEFAULT_REGISTRY.to_string()
        }
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    fn basic(u: &str, p: &str) -> Credentials {
        Credentials::Basic {
            username: u.into(),
            password: p.into(),
        }
    }

    fn invalid_reason(result: Result<()>) -> String {
        match result {
            Err(Error::Invalid { what, reason }) => format!("{what}: {reason}"),
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn docker_config_auths_in_every_form() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        let config = serde_json::json!({
            "auths": {
                "https://index.docker.io/v1/": { "auth": b64("hub:secret:with:colons") },
                "127.0.0.1:5000": { "username": "alice", "password": "pw" },
                "http://registry.local:8080/v2/": { "identitytoken": "tok" },
                "helper.example.com": {}
            },
            "credsStore": "desktop"
        });
        std::fs::write(&path, config.to_string()).unwrap();
        let mut keyring = Keyring::default();
        keyring.add_docker_config(&path).unwrap();

        let hub = basic("hub", "secret:with:colons");
        assert_eq!(keyring.lookup("docker.io"), Some(&hub));
        assert_eq!(keyring.lookup("index.docker.io"), Some(&hub));
        assert_eq!(keyring.lookup("registry-1.docker.io"), Some(&hub));
        assert_eq!(
            keyring.lookup("127.0.0.1:5000"),
            Some(&basic("alice", "pw"))
        );
        assert_eq!(
            keyring.lookup("registry.local:8080"),
            Some(&Credentials::Token("tok".into()))
        );
        assert_eq!(keyring.lookup("helper.example.com"), None);
        assert_eq!(keyring.lookup("127.0.0.1:5001"), None);
        assert_eq!(keyring.lookup("quay.io"), None);
    }

    #[test]
    fn missing_docker_config_adds_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut keyring = Keyring::default();
        keyring
            .add_docker_config(&dir.path().join("absent.json"))
            .unwrap();
        assert!(keyring.is_empty());
    }

    #[test]
    fn docker_config_errors_name_file_and_field() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(&path, r#"{"auths": {"quay.io": {"auth": "!!!"}}}"#).unwrap();
        let why = invalid_reason(Keyring::default().add_docker_config(&path));
        assert!(why.contains(&path.display().to_string()), "{why}");
        assert!(why.contains(r#"auths."quay.io""#), "{why}");
        assert!(why.contains("base64"), "{why}");

        std::fs::write(
            &path,
            format!(
                r#"{{"auths": {{"q.io": {{"auth": "{}"}}}}}}"#,
                b64("nocolon")
            ),
        )
        .unwrap();
        assert!(invalid_reason(Keyring::default().add_docker_config(&path)).contains("no ':'"));

        std::fs::write(&path, "{not json").unwrap();
        assert!(invalid_reason(Keyring::default().add_docker_config(&path)).contains("not JSON"));

        std::fs::write(&path, r#"{"auths": ["x"]}"#).unwrap();
        assert!(invalid_reason(Keyring::default().add_docker_config(&path)).contains("auths"));

        std::fs::write(&path, r#"{"auths": {"q.io": {"username": "bob"}}}"#).unwrap();
        assert!(invalid_reason(Keyring::default().add_docker_config(&path))
            .contains("password is missing"));
    }

    #[test]
    fn pull_secrets_new_and_legacy_forms() {
        let mut keyring = Keyring::default();
        let secret = format!(
            r#"{{"auths": {{"127.0.0.1:5000": {{"auth": "{}"}}}}}}"#,
            b64("a:b")
        );
        keyring.add_pull_secret(secret.as_bytes()).unwrap();
        let legacy = format!(
            r#"{{"https://index.docker.io/v1/": {{"auth": "{}", "email": "x@y"}}}}"#,
            b64("c:d")
        );
        keyring.add_pull_secret(legacy.as_bytes()).unwrap();
        assert_eq!(keyring.lookup("127.0.0.1:5000"), Some(&basic("a", "b")));
        assert_eq!(keyring.lookup("docker.io"), Some(&basic("c", "d")));

        let why = invalid_reason(Keyring::default().add_pull_secret(b"[1]"));
        assert!(why.starts_with("pull secret: top level"), "{why}");
    }

    #[test]
    fn first_added_wins() {
        let mut keyring = Keyring::default();
        keyring.add("127.0.0.1:5000", basic("first", "1"));
        keyring.add("https://127.0.0.1:5000/v2/", basic("second", "2"));
        assert_eq!(keyring.lookup("127.0.0.1:5000"), Some(&basic("first", "1")));
    }

    #[test]
    fn debug_hides_secrets() {
        let shown = format!(
            "{:?} {:?}",
            basic("u", "hunter2"),
            Credentials::Token("t0ken".into())
        );
        assert!(
            !shown.contains("hunter2") && !shown.contains("t0ken"),
            "{shown}"
        );
    }
}
