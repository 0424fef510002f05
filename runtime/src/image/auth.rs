//! Registry credentials: a docker `config.json` and Kubernetes-style pull secrets (`.dockerconfigjson`).

use super::Result;
use std::path::Path;

/// Credentials for one registry.
#[derive(Debug, Clone, PartialEq, Eq)]
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

/// Credentials by registry host, in the order they were added (pull secrets first).
#[derive(Debug, Clone, Default)]
pub struct Keyring {
    entries: Vec<(String, Credentials)>,
}

impl Keyring {
    /// Adds the `auths` of a docker `config.json` (a missing file adds nothing).
    pub fn add_docker_config(&mut self, path: &Path) -> Result<()> {
        let _ = (path, &self.entries);
        todo!("auth: add_docker_config")
    }

    /// Adds a pull secret's `.dockerconfigjson` (or legacy `.dockercfg`) content.
    pub fn add_pull_secret(&mut self, json: &[u8]) -> Result<()> {
        let _ = json;
        todo!("auth: add_pull_secret")
    }

    /// The credentials for `registry` (`docker.io` also matches `index.docker.io`
    /// and `https://index.docker.io/v1/`), if any.
    pub fn lookup(&self, registry: &str) -> Option<&Credentials> {
        let _ = registry;
        todo!("auth: lookup")
    }
}
