//! The image config applied to a container's process: Entrypoint/Cmd with Kubernetes' command/args rules, Env, WorkingDir, User.

use super::Result;

/// The parts of an image config (`config` in the OCI image config) a container uses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageProcess {
    /// `Entrypoint`.
    pub entrypoint: Vec<String>,
    /// `Cmd`.
    pub cmd: Vec<String>,
    /// `Env`, `KEY=value`.
    pub env: Vec<String>,
    /// `WorkingDir` (empty: `/`).
    pub working_dir: String,
    /// `User` (`uid`, `uid:gid`, `name`, `name:group`; empty: root).
    pub user: String,
    /// `ExposedPorts` keys, e.g. `80/tcp`.
    pub exposed_ports: Vec<String>,
}

impl ImageProcess {
    /// Reads the `config` section of an image config blob.
    pub fn from_config_json(json: &[u8]) -> Result<ImageProcess> {
        let _ = json;
        todo!("config: from_config_json")
    }

    /// The argv Kubernetes runs: `command` replaces Entrypoint (and drops Cmd),
    /// `args` replaces Cmd. An empty result is an error naming the image.
    pub fn argv(&self, command: &[String], args: &[String]) -> Result<Vec<String>> {
        let _ = (command, args);
        todo!("config: argv")
    }

    /// The image's Env overlaid with `env` (later keys win), `PATH` defaulted as Docker does.
    pub fn env(&self, env: &[(String, String)]) -> Vec<String> {
        let _ = env;
        todo!("config: env")
    }
}
