//! The image config applied to a container's process: Entrypoint/Cmd with Kubernetes' command/args rules, Env, WorkingDir, User.

use super::{Error, Result};
use serde::Deserialize;
use std::collections::BTreeMap;

/// The `PATH` Docker gives a process whose image sets none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

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
    /// `StopSignal` (`SIGQUIT`, `QUIT` or `3`; empty: SIGTERM), sent to stop the container.
    pub stop_signal: String,
}

/// The image config document, reduced to what peapod reads. Docker writes
/// `null` for absent lists, hence the `Option`s.
#[derive(Debug, Default, Deserialize)]
struct ConfigFile {
    #[serde(default)]
    config: Option<ProcessSection>,
    #[serde(default)]
    rootfs: Option<RootFs>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ProcessSection {
    #[serde(default)]
    entrypoint: Option<Vec<String>>,
    #[serde(default)]
    cmd: Option<Vec<String>>,
    #[serde(default)]
    env: Option<Vec<String>>,
    #[serde(default)]
    working_dir: Option<String>,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    exposed_ports: Option<BTreeMap<String, serde_json::Value>>,
    #[serde(default)]
    stop_signal: Option<String>,
}

#[derive(Debug, Deserialize)]
struct RootFs {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    diff_ids: Vec<String>,
}

fn parse(json: &[u8]) -> Result<ConfigFile> {
    serde_json::from_slice(json).map_err(|e| Error::Invalid {
        what: "image config".into(),
        reason: format!("not a valid image config document: {e}"),
    })
}

/// The layers' diff ids (`rootfs.diff_ids`, bottom first) of an image config blob.
pub fn diff_ids(json: &[u8]) -> Result<Vec<String>> {
    let invalid = |reason: String| Error::Invalid {
        what: "image config".into(),
        reason,
    };
    let rootfs = parse(json)?
        .rootfs
        .ok_or_else(|| invalid("rootfs is missing".into()))?;
    if rootfs.kind != "layers" {
        return Err(invalid(format!(
            "rootfs.type is {:?}, expected \"layers\"",
            rootfs.kind
        )));
    }
    Ok(rootfs.diff_ids)
}

impl ImageProcess {
    /// Reads the `config` section of an image config blob.
    pub fn from_config_json(json: &[u8]) -> Result<ImageProcess> {
        let section = parse(json)?.config.unwrap_or_default();
        Ok(ImageProcess {
            entrypoint: section.entrypoint.unwrap_or_default(),
            cmd: section.cmd.unwrap_or_default(),
            env: section.env.unwrap_or_default(),
            working_dir: section.working_dir.unwrap_or_default(),
            user: section.user.unwrap_or_default(),
            exposed_ports: section
                .exposed_ports
                .map(|ports| ports.into_keys().collect())
                .unwrap_or_default(),
            stop_signal: section.stop_signal.unwrap_or_default(),
        })
    }

    /// The argv Kubernetes runs: `command` replaces Entrypoint (and drops Cmd),
    /// `args` replaces Cmd. An empty result is an error (the caller adds the
    /// image and container names).
    pub fn argv(&self, command: &[String], args: &[String]) -> Result<Vec<String>> {
        let argv: Vec<String> = match (command.is_empty(), args.is_empty()) {
            (false, _) => command.iter().chain(args).cloned().collect(),
            (true, false) => self.entrypoint.iter().chain(args).cloned().collect(),
            (true, true) => self.entrypoint.iter().chain(&self.cmd).cloned().collect(),
        };
        if argv.is_empty() {
            return Err(Error::Invalid {
                what: "container command".into(),
                reason: "nothing to run: the image has no Entrypoint or Cmd and the \
                         container gives no command or args"
                    .into(),
            });
        }
        Ok(argv)
    }

    /// The image's Env overlaid with `env` (later keys win), `PATH` defaulted as Docker does.
    ///
    /// A key keeps the position of its first appearance, so the result reads
    /// like the image's list with values replaced and new keys appended.
    pub fn env(&self, env: &[(String, String)]) -> Vec<String> {
        let mut merged: Vec<(String, String)> = Vec::new();
        let mut set = |key: &str, value: &str| match merged.iter_mut().find(|(k, _)| k == key) {
            Some(entry) => entry.1 = value.to_string(),
            None => merged.push((key.to_string(), value.to_string())),
        };
        if !self.env.iter().any(|e| e.split('=').next() == Some("PATH")) {
            set("PATH", DEFAULT_PATH);
        }
        for entry in &self.env {
            // A bare `KEY` in an image's Env means an empty value.
            let (key, value) = entry.split_once('=').unwrap_or((entry, ""));
            set(key, value);
        }
        for (key, value) in env {
            set(key, value);
        }
        merged
            .into_iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    fn process(entrypoint: &[&str], cmd: &[&str]) -> ImageProcess {
        ImageProcess {
            entrypoint: strings(entrypoint),
            cmd: strings(cmd),
            ..Default::default()
        }
    }

    #[test]
    fn reads_docker_and_oci_configs() {
        let json = br#"{
            "architecture": "amd64", "os": "linux",
            "config": {
                "Entrypoint": ["/docker-entrypoint.sh"],
                "Cmd": ["nginx", "-g", "daemon off;"],
                "Env": ["PATH=/usr/bin", "NGINX_VERSION=1.25"],
                "WorkingDir": "/srv",
                "User": "101:101",
                "ExposedPorts": {"80/tcp": {}, "443/tcp": {}}
            },
            "rootfs": {"type": "layers", "diff_ids": ["sha256:aa", "sha256:bb"]}
        }"#;
        let p = ImageProcess::from_config_json(json).unwrap();
        assert_eq!(p.entrypoint, strings(&["/docker-entrypoint.sh"]));
        assert_eq!(p.cmd, strings(&["nginx", "-g", "daemon off;"]));
        assert_eq!(p.env, strings(&["PATH=/usr/bin", "NGINX_VERSION=1.25"]));
        assert_eq!(p.working_dir, "/srv");
        assert_eq!(p.user, "101:101");
        assert_eq!(p.exposed_ports, strings(&["443/tcp", "80/tcp"]));
        assert_eq!(
            diff_ids(json).unwrap(),
            strings(&["sha256:aa", "sha256:bb"])
        );
    }

    #[test]
    fn nulls_and_missing_sections_are_empty() {
        let json = br#"{"config": {"Entrypoint": null, "Cmd": null, "Env": null}, "rootfs": {"type": "layers", "diff_ids": []}}"#;
        assert_eq!(
            ImageProcess::from_config_json(json).unwrap(),
            ImageProcess::default()
        );
        assert_eq!(
            ImageProcess::from_config_json(b"{}").unwrap(),
            ImageProcess::default()
        );
    }

    #[test]
    fn bad_configs_say_why() {
        let err = ImageProcess::from_config_json(br#"{"config": {"Cmd": "sh"}}"#).unwrap_err();
        assert!(
            err.to_string().starts_with("image config: not a valid"),
            "{err}"
        );
        let err = diff_ids(b"{}").unwrap_err();
        assert!(err.to_string().contains("rootfs is missing"), "{err}");
        let err = diff_ids(br#"{"rootfs": {"type": "zfs"}}"#).unwrap_err();
        assert!(err.to_string().contains(r#"rootfs.type is "zfs""#), "{err}");
    }

    #[test]
    fn kubernetes_command_and_args_rules() {
        let image = process(&["/entry"], &["default", "cmd"]);
        let (none, cmd, args) = (
            strings(&[]),
            strings(&["/bin/sh", "-c"]),
            strings(&["x", "y"]),
        );
        // Neither: Entrypoint + Cmd.
        assert_eq!(
            image.argv(&none, &none).unwrap(),
            strings(&["/entry", "default", "cmd"])
        );
        // args only: Entrypoint + args.
        assert_eq!(
            image.argv(&none, &args).unwrap(),
            strings(&["/entry", "x", "y"])
        );
        // command only: Cmd is ignored too.
        assert_eq!(
            image.argv(&cmd, &none).unwrap(),
            strings(&["/bin/sh", "-c"])
        );
        // Both: command + args.
        assert_eq!(
            image.argv(&cmd, &args).unwrap(),
            strings(&["/bin/sh", "-c", "x", "y"])
        );
        // Cmd alone is the whole argv.
        assert_eq!(
            process(&[], &["sh"]).argv(&none, &none).unwrap(),
            strings(&["sh"])
        );
    }

    #[test]
    fn nothing_to_run_is_an_error() {
        let err = ImageProcess::default().argv(&[], &[]).unwrap_err();
        assert!(err.to_string().contains("nothing to run"), "{err}");
        // An image with only a Cmd and a container replacing it with no args still runs Cmd,
        // but an image with only an Entrypoint-less Cmd and explicit args runs the args.
        assert_eq!(
            process(&[], &["sh"]).argv(&[], &strings(&["ls"])).unwrap(),
            strings(&["ls"])
        );
    }

    #[test]
    fn env_merge_keeps_order_and_later_wins() {
        let image = ImageProcess {
            env: strings(&["A=1", "PATH=/img/bin", "B=2", "A=3", "EMPTY"]),
            ..Default::default()
        };
        let env = image.env(&[
            ("B".into(), "from-pod".into()),
            ("C".into(), "new".into()),
            ("C".into(), "newer".into()),
        ]);
        assert_eq!(
            env,
            strings(&["A=3", "PATH=/img/bin", "B=from-pod", "EMPTY=", "C=newer"])
        );
    }

    #[test]
    fn default_path_only_when_the_image_sets_none() {
        let env = ImageProcess::default().env(&[("X".into(), "1".into())]);
        assert_eq!(env, vec![format!("PATH={DEFAULT_PATH}"), "X=1".to_string()]);
        // The pod may still override it.
        let env = ImageProcess::default().env(&[("PATH".into(), "/mine".into())]);
        assert_eq!(env, strings(&["PATH=/mine"]));
    }
}
