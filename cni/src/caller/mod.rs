//! The CNI caller peapod uses: load a network from a config directory and run its
//! plugin chain for ADD, DEL, CHECK, GC and STATUS, as libcni does — prevResult
//! passed along the chain, DEL in reverse order with the cached result, results
//! cached per attachment, a timeout on every plugin, errors naming the plugin.

mod cache;
mod exec;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Map, Value};

pub use cache::{Cache, Entry};

use crate::spec::{Attachment, CniResult, NetConfList, Version};

/// The directory runtimes read network configs from.
pub const DEFAULT_CONF_DIR: &str = "/etc/cni/net.d";
/// Where plugin binaries live by default.
pub const DEFAULT_PLUGIN_DIR: &str = "/opt/cni/bin";
/// libcni's cache directory.
pub const DEFAULT_CACHE_DIR: &str = "/var/lib/cni";

/// Why a network could not be loaded or a plugin failed.
#[derive(Debug, thiserror::Error)]
pub enum CallerError {
    /// No usable config in the directory.
    #[error("no network config found in {0}")]
    NoConfig(PathBuf),
    /// A config file does not parse.
    #[error("{path}: {message}")]
    BadConfig {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// Reading a config file or directory failed.
    #[error("{path}: {source}")]
    Read {
        /// The file or directory.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// A plugin `type` that cannot be an executable name.
    #[error("invalid plugin type {0:?}")]
    BadPluginName(String),
    /// The plugin is on none of the plugin directories.
    #[error("failed to find plugin {plugin:?} in path [{path}]")]
    PluginNotFound {
        /// The plugin type.
        plugin: String,
        /// The directories searched.
        path: String,
    },
    /// Starting or talking to the plugin failed.
    #[error("plugin {plugin} {verb}: {source}")]
    Io {
        /// The plugin type.
        plugin: String,
        /// The verb.
        verb: String,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The plugin ran longer than the timeout and was killed.
    #[error("plugin {plugin} {verb}: timed out after {secs}s")]
    Timeout {
        /// The plugin type.
        plugin: String,
        /// The verb.
        verb: String,
        /// The timeout.
        secs: u64,
    },
    /// The plugin reported an error.
    #[error("plugin {plugin} {verb} failed (code {code}): {msg}{}", if details.is_empty() { String::new() } else { format!(": {details}") })]
    Plugin {
        /// The plugin type.
        plugin: String,
        /// The verb.
        verb: String,
        /// The CNI error code.
        code: u32,
        /// The message.
        msg: String,
        /// The details, or the plugin's stderr.
        details: String,
    },
    /// The plugin's output is not a valid result.
    #[error("plugin {plugin} {verb}: invalid result: {message}")]
    BadResult {
        /// The plugin type.
        plugin: String,
        /// The verb.
        verb: String,
        /// What is wrong.
        message: String,
    },
    /// The verb needs a newer config version.
    #[error("{verb} needs cniVersion {needs} or later; the network uses {has}")]
    Unsupported {
        /// The verb.
        verb: &'static str,
        /// The oldest version that has it.
        needs: &'static str,
        /// The network's version.
        has: &'static str,
    },
    /// Writing the result cache failed.
    #[error("result cache {path}: {source}")]
    Cache {
        /// The cache file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// Several plugins failed during GC.
    #[error("{}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))]
    Many(Vec<CallerError>),
}

/// A loaded network: the conflist, its raw bytes (cached with results) and its file.
#[derive(Debug, Clone)]
pub struct Network {
    /// The parsed list.
    pub list: NetConfList,
    /// The file's bytes.
    pub bytes: Vec<u8>,
    /// The file it came from.
    pub source: PathBuf,
}

impl Network {
    /// Load one file: a `.conflist`, or a single-plugin `.conf`/`.json` wrapped in a list.
    pub fn load(path: &Path) -> Result<Network, CallerError> {
        let bytes = std::fs::read(path).map_err(|source| CallerError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let bad = |message: String| CallerError::BadConfig {
            path: path.to_path_buf(),
            message,
        };
        let is_list = path.extension().is_some_and(|e| e == "conflist");
        let list = if is_list {
            NetConfList::parse(&bytes).map_err(|e| bad(e.to_string()))?
        } else {
            let conf: Map<String, Value> =
                serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
            let wrapped = serde_json::json!({
                "cniVersion": conf.get("cniVersion").cloned().unwrap_or_default(),
                "name": conf.get("name").cloned().unwrap_or_default(),
                "plugins": [conf],
            });
            NetConfList::parse(wrapped.to_string().as_bytes()).map_err(|e| bad(e.to_string()))?
        };
        Ok(Network {
            list,
            bytes,
            source: path.to_path_buf(),
        })
    }

    /// The first network in `dir` by file name (`.conflist`, `.conf`, `.json`), the one
    /// runtimes use by default.
    pub fn load_default(dir: &Path) -> Result<Network, CallerError> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|source| CallerError::Read {
                path: dir.to_path_buf(),
                source,
            })?
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.extension()
                    .is_some_and(|e| e == "conflist" || e == "conf" || e == "json")
            })
            .collect();
        files.sort();
        files
            .first()
            .ok_or_else(|| CallerError::NoConfig(dir.to_path_buf()))
            .and_then(|p| Network::load(p))
    }

    /// The network's name.
    pub fn name(&self) -> &str {
        &self.list.name
    }

    fn version(&self) -> Result<Version, CallerError> {
        self.list.version().map_err(|e| CallerError::BadConfig {
            path: self.source.clone(),
            message: e.to_string(),
        })
    }
}

/// Who the network is for: one attachment of one container.
#[derive(Debug, Clone, Default)]
pub struct RuntimeConf {
    /// `CNI_CONTAINERID`.
    pub container_id: String,
    /// `CNI_NETNS`: the network namespace path (may be empty for DEL).
    pub netns: String,
    /// `CNI_IFNAME`.
    pub ifname: String,
    /// `CNI_ARGS` pairs.
    pub args: Vec<(String, String)>,
    /// Capability arguments (e.g. `portMappings`), given to plugins that declare them.
    pub capability_args: Value,
}

/// Runs plugin chains.
#[derive(Debug, Clone)]
pub struct Caller {
    /// Directories searched for plugin binaries (`CNI_PATH`).
    pub plugin_dirs: Vec<PathBuf>,
    /// The result cache.
    pub cache: Cache,
    /// The longest a plugin may run.
    pub timeout: Duration,
}

impl Default for Caller {
    fn default() -> Self {
        Caller {
            plugin_dirs: vec![PathBuf::from(DEFAULT_PLUGIN_DIR)],
            cache: Cache::new(Path::new(DEFAULT_CACHE_DIR)),
            timeout: Duration::from_secs(60),
        }
    }
}

impl Caller {
    /// ADD: run the chain in order, each plugin getting the previous one's result;
    /// cache and return the last result (in the network's version).
    pub fn add(&self, net: &Network, rt: &RuntimeConf) -> Result<CniResult, CallerError> {
        let version = net.version()?;
        let mut prev: Option<Value> = None;
        for i in 0..net.list.plugins.len() {
            let (plugin, stdin) = self.plugin_stdin(net, i, version, prev.as_ref(), rt)?;
            let out = exec::run(
                &self.invocation(&plugin, "ADD", stdin, rt),
                &self.plugin_dirs,
                self.timeout,
            )?;
            let result = CniResult::parse(&out).map_err(|e| CallerError::BadResult {
                plugin: plugin.clone(),
                verb: "ADD".into(),
                message: e.to_string(),
            })?;
            prev = Some(result.to_value(version));
        }
        let last = prev.unwrap_or(Value::Null);
        self.cache.save(net.name(), &net.bytes, rt, last.clone())?;
        CniResult::from_value(last).map_err(|e| CallerError::BadResult {
            plugin: net.name().into(),
            verb: "ADD".into(),
            message: e.to_string(),
        })
    }

    /// DEL: run the chain in reverse with the cached result as prevResult, then forget
    /// the attachment. Plugins make DEL idempotent, so a repeated DEL succeeds.
    pub fn del(&self, net: &Network, rt: &RuntimeConf) -> Result<(), CallerError> {
        let version = net.version()?;
        let cached = self.cache.load(net.name(), rt).map(|e| e.result);
        let prev = cached.filter(|_| version >= Version::V0_4_0);
        for i in (0..net.list.plugins.len()).rev() {
            let (plugin, stdin) = self.plugin_stdin(net, i, version, prev.as_ref(), rt)?;
            exec::run(
                &self.invocation(&plugin, "DEL", stdin, rt),
                &self.plugin_dirs,
                self.timeout,
            )?;
        }
        self.cache.remove(net.name(), rt)
    }

    /// CHECK: every plugin in order, with the cached result; not for versions
    /// before 0.4.0 or networks with `disableCheck`.
    pub fn check(&self, net: &Network, rt: &RuntimeConf) -> Result<(), CallerError> {
        let version = net.version()?;
        if !version.supports_check() {
            return Err(CallerError::Unsupported {
                verb: "CHECK",
                needs: "0.4.0",
                has: version.as_str(),
            });
        }
        if net.list.check_disabled() {
            return Ok(());
        }
        let prev = self
            .cache
            .load(net.name(), rt)
            .map(|e| e.result)
            .ok_or_else(|| CallerError::BadResult {
                plugin: net.name().into(),
                verb: "CHECK".into(),
                message: format!(
                    "no cached result for container {} interface {}",
                    rt.container_id, rt.ifname
                ),
            })?;
        for i in 0..net.list.plugins.len() {
            let (plugin, stdin) = self.plugin_stdin(net, i, version, Some(&prev), rt)?;
            exec::run(
                &self.invocation(&plugin, "CHECK", stdin, rt),
                &self.plugin_dirs,
                self.timeout,
            )?;
        }
        Ok(())
    }

    /// GC (1.1): tell every plugin which attachments are still valid so it frees the
    /// rest, and drop cache entries of attachments not listed. Keeps going past
    /// failures and reports them all.
    pub fn gc(&self, net: &Network, valid: &[Attachment]) -> Result<(), CallerError> {
        let version = net.version()?;
        if !version.supports_gc_and_status() {
            return Err(CallerError::Unsupported {
                verb: "GC",
                needs: "1.1.0",
                has: version.as_str(),
            });
        }
        if net.list.gc_disabled() {
            return Ok(());
        }
        let mut errors = Vec::new();
        let attachments = serde_json::to_value(valid).unwrap_or_default();
        for i in 0..net.list.plugins.len() {
            let Some(mut conf) = net.list.plugin_config(i, version) else {
                continue;
            };
            conf.insert("cni.dev/valid-attachments".into(), attachments.clone());
            let plugin = plugin_type(&conf);
            let inv = exec::Invocation {
                plugin: &plugin,
                verb: "GC",
                env: BTreeMap::new(),
                stdin: Value::Object(conf).to_string().into_bytes(),
            };
            if let Err(e) = exec::run(&inv, &self.plugin_dirs, self.timeout) {
                errors.push(e);
            }
        }
        for (container_id, ifname) in self.cache.attachments(net.name()) {
            if !valid
                .iter()
                .any(|a| a.container_id == container_id && a.ifname == ifname)
            {
                let rt = RuntimeConf {
                    container_id,
                    ifname,
                    ..RuntimeConf::default()
                };
                if let Err(e) = self.cache.remove(net.name(), &rt) {
                    errors.push(e);
                }
            }
        }
        match errors.len() {
            0 => Ok(()),
            1 => Err(errors.remove(0)),
            _ => Err(CallerError::Many(errors)),
        }
    }

    /// STATUS (1.1): whether every plugin can serve ADD now.
    pub fn status(&self, net: &Network) -> Result<(), CallerError> {
        let version = net.version()?;
        if !version.supports_gc_and_status() {
            return Err(CallerError::Unsupported {
                verb: "STATUS",
                needs: "1.1.0",
                has: version.as_str(),
            });
        }
        for i in 0..net.list.plugins.len() {
            let Some(conf) = net.list.plugin_config(i, version) else {
                continue;
            };
            let plugin = plugin_type(&conf);
            let inv = exec::Invocation {
                plugin: &plugin,
                verb: "STATUS",
                env: BTreeMap::new(),
                stdin: Value::Object(conf).to_string().into_bytes(),
            };
            exec::run(&inv, &self.plugin_dirs, self.timeout)?;
        }
        Ok(())
    }

    /// Plugin `i`'s type and stdin: the list's name and version, the prevResult, and
    /// a `runtimeConfig` with the capability arguments the plugin declares.
    fn plugin_stdin(
        &self,
        net: &Network,
        i: usize,
        version: Version,
        prev: Option<&Value>,
        rt: &RuntimeConf,
    ) -> Result<(String, Vec<u8>), CallerError> {
        let mut conf =
            net.list
                .plugin_config(i, version)
                .ok_or_else(|| CallerError::BadConfig {
                    path: net.source.clone(),
                    message: format!("no plugin {i}"),
                })?;
        if let Some(prev) = prev {
            conf.insert("prevResult".into(), prev.clone());
        }
        let runtime_config = runtime_config(&conf, &rt.capability_args);
        if !runtime_config.is_empty() {
            conf.insert("runtimeConfig".into(), Value::Object(runtime_config));
        }
        Ok((
            plugin_type(&conf),
            Value::Object(conf).to_string().into_bytes(),
        ))
    }

    fn invocation<'a>(
        &self,
        plugin: &'a str,
        verb: &'a str,
        stdin: Vec<u8>,
        rt: &RuntimeConf,
    ) -> exec::Invocation<'a> {
        let args: Vec<String> = rt.args.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let mut env = BTreeMap::new();
        env.insert("CNI_CONTAINERID", rt.container_id.clone());
        env.insert("CNI_NETNS", rt.netns.clone());
        env.insert("CNI_IFNAME", rt.ifname.clone());
        env.insert("CNI_ARGS", args.join(";"));
        exec::Invocation {
            plugin,
            verb,
            env,
            stdin,
        }
    }
}

fn plugin_type(conf: &Map<String, Value>) -> String {
    conf.get("type")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// The capability arguments a plugin declared in its `capabilities` map.
fn runtime_config(conf: &Map<String, Value>, args: &Value) -> Map<String, Value> {
    let declared = conf.get("capabilities").and_then(Value::as_object);
    let mut out = Map::new();
    for (name, on) in declared.into_iter().flatten() {
        if on.as_bool() == Some(true) {
            if let Some(value) = args.get(name) {
                out.insert(name.clone(), value.clone());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn capability_args_go_only_to_plugins_that_declare_them() {
        let args = json!({"portMappings": [{"hostPort": 8080}], "bandwidth": {}});
        let conf = json!({"type": "portmap", "capabilities": {"portMappings": true}});
        let rc = runtime_config(conf.as_object().unwrap(), &args);
        assert_eq!(
            Value::Object(rc),
            json!({"portMappings": [{"hostPort": 8080}]})
        );
        let conf = json!({"type": "bridge"});
        assert!(runtime_config(conf.as_object().unwrap(), &args).is_empty());
    }

    #[test]
    fn single_configs_are_wrapped_and_the_first_file_wins() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("20-b.conf"),
            r#"{"cniVersion":"1.0.0","name":"b","type":"bridge"}"#,
        )
        .unwrap();
        std::fs::write(
            dir.path().join("10-a.conflist"),
            r#"{"cniVersion":"1.0.0","name":"a","plugins":[{"type":"x"},{"type":"y"}]}"#,
        )
        .unwrap();
        std::fs::write(dir.path().join("README"), "not a config").unwrap();
        let net = Network::load_default(dir.path()).unwrap();
        assert_eq!(net.name(), "a");
        assert_eq!(net.list.plugins.len(), 2);
        let single = Network::load(&dir.path().join("20-b.conf")).unwrap();
        assert_eq!(single.list.plugins[0]["type"], "bridge");
        let empty = tempfile::tempdir().unwrap();
        assert!(matches!(
            Network::load_default(empty.path()),
            Err(CallerError::NoConfig(_))
        ));
    }
}
