//! The skeleton every plugin binary runs: read stdin and the environment, dispatch a verb, print the outcome.
//!
//! A plugin implements [`Plugin`] and its `main` is `cni::plugin::run(&MyPlugin)`.
//! [`dispatch`] does the work without touching the process, so it is testable.

use crate::spec::{CniResult, Code, Command, Environment, Error, NetConf, Version, VersionInfo};
use std::collections::HashMap;
use std::io::{Read, Write};

/// One verb invocation as a plugin callback sees it.
#[derive(Debug, Clone)]
pub struct Request {
    /// The validated environment.
    pub env: Environment,
    /// The parsed network configuration.
    pub config: NetConf,
    /// The negotiated version; results are emitted in it.
    pub version: Version,
    /// The raw stdin, for plugin-specific parsing.
    pub stdin: Vec<u8>,
}

/// The verb callbacks of a plugin; GC and STATUS default to "nothing to do" and "available".
pub trait Plugin {
    /// ADD: attach and return the result (converted to the request's version by the caller).
    fn add(&self, req: &Request) -> Result<CniResult, Error>;
    /// DEL: detach; must succeed when there is nothing to remove.
    fn del(&self, req: &Request) -> Result<(), Error>;
    /// CHECK: verify the attachment still matches what ADD did.
    fn check(&self, req: &Request) -> Result<(), Error>;
    /// GC: release everything not in the request's valid attachments.
    fn gc(&self, _req: &Request) -> Result<(), Error> {
        Ok(())
    }
    /// STATUS: succeed when ADD can be serviced, else code 50 or 51.
    fn status(&self, _req: &Request) -> Result<(), Error> {
        Ok(())
    }
}

/// What the process should print on stdout and exit with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// The result, VERSION or error JSON (empty for a successful DEL/CHECK/GC/STATUS).
    pub stdout: String,
    /// 0 on success, 1 on error.
    pub exit_code: i32,
}

/// Runs one verb of `plugin` for the given environment variables and stdin.
pub fn dispatch(plugin: &impl Plugin, vars: &HashMap<String, String>, stdin: &[u8]) -> Output {
    // Errors are stamped with the request's version when it can be read at all.
    let request_version = serde_json::from_slice::<serde_json::Value>(stdin)
        .ok()
        .and_then(|v| v.get("cniVersion")?.as_str().map(str::to_string))
        .filter(|v| Version::parse(v).is_ok())
        .unwrap_or_else(|| Version::LATEST.as_str().to_string());
    match run_verb(plugin, vars, stdin) {
        Ok(stdout) => Output {
            stdout,
            exit_code: 0,
        },
        Err(e) => Output {
            stdout: e.to_json(&request_version),
            exit_code: 1,
        },
    }
}

fn run_verb(
    plugin: &impl Plugin,
    vars: &HashMap<String, String>,
    stdin: &[u8],
) -> Result<String, Error> {
    let env = Environment::from_vars(vars)?;
    if env.command == Command::Version {
        let requested = serde_json::from_slice::<serde_json::Value>(stdin)
            .ok()
            .and_then(|v| v.get("cniVersion")?.as_str().map(str::to_string));
        let info = VersionInfo::answer(requested.as_deref());
        return Ok(serde_json::to_string(&info).expect("version info always serializes"));
    }
    let config = NetConf::parse(stdin)?;
    let version = config.version()?;
    let allowed = match env.command {
        Command::Check => version.supports_check(),
        Command::Gc | Command::Status => version.supports_gc_and_status(),
        _ => true,
    };
    if !allowed {
        return Err(Error::new(
            Code::IncompatibleVersion,
            format!("config version {version} does not allow {}", env.command),
        ));
    }
    let req = Request {
        env,
        config,
        version,
        stdin: stdin.to_vec(),
    };
    match req.env.command {
        Command::Add => plugin.add(&req).map(|r| r.to_json(version)),
        Command::Del => plugin.del(&req).map(|()| String::new()),
        Command::Check => plugin.check(&req).map(|()| String::new()),
        Command::Gc => plugin.gc(&req).map(|()| String::new()),
        Command::Status => plugin.status(&req).map(|()| String::new()),
        Command::Version => unreachable!("VERSION answered above"),
    }
}

/// The `main` of a plugin binary: dispatches with the process's environment and stdin, prints, exits.
pub fn run(plugin: &impl Plugin) -> ! {
    let vars: HashMap<String, String> = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect();
    let mut stdin = Vec::new();
    let output = match std::io::stdin().read_to_end(&mut stdin) {
        Ok(_) => dispatch(plugin, &vars, &stdin),
        Err(e) => Output {
            stdout: Error::new(Code::Io, "failed to read stdin")
                .with_details(e.to_string())
                .to_json(Version::LATEST.as_str()),
            exit_code: 1,
        },
    };
    let mut out = std::io::stdout().lock();
    // A runtime that closed our stdout can no longer read anything; the exit code still tells.
    let _ = out.write_all(output.stdout.as_bytes());
    let _ = out.flush();
    std::process::exit(output.exit_code)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::IpConfig;
    use std::cell::RefCell;

    #[derive(Default)]
    struct Recorder {
        calls: RefCell<Vec<Command>>,
    }

    impl Plugin for Recorder {
        fn add(&self, req: &Request) -> Result<CniResult, Error> {
            self.calls.borrow_mut().push(req.env.command);
            Ok(CniResult {
                ips: vec![IpConfig {
                    address: "10.0.0.2/24".parse().unwrap(),
                    gateway: None,
                    interface: None,
                }],
                ..Default::default()
            })
        }
        fn del(&self, req: &Request) -> Result<(), Error> {
            self.calls.borrow_mut().push(req.env.command);
            Ok(())
        }
        fn check(&self, _req: &Request) -> Result<(), Error> {
            Err(Error::new(Code::INTERNAL, "check failed"))
        }
    }

    fn vars(cmd: &str) -> HashMap<String, String> {
        [
            ("CNI_COMMAND", cmd),
            ("CNI_CONTAINERID", "c1"),
            ("CNI_NETNS", "/run/netns/x"),
            ("CNI_IFNAME", "eth0"),
            ("CNI_PATH", "/opt/cni/bin"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    fn json(out: &Output) -> serde_json::Value {
        serde_json::from_str(&out.stdout).unwrap()
    }

    const CONF: &[u8] = br#"{"cniVersion":"0.4.0","name":"n","type":"t"}"#;

    #[test]
    fn add_prints_result_in_config_version() {
        let p = Recorder::default();
        let out = dispatch(&p, &vars("ADD"), CONF);
        assert_eq!(out.exit_code, 0);
        assert_eq!(json(&out)["cniVersion"], "0.4.0");
        assert_eq!(json(&out)["ips"][0]["version"], "4");
        assert_eq!(*p.calls.borrow(), vec![Command::Add]);
    }

    #[test]
    fn errors_are_json_with_nonzero_exit() {
        let p = Recorder::default();
        let out = dispatch(&p, &vars("CHECK"), CONF);
        assert_eq!(out.exit_code, 1);
        assert_eq!(json(&out)["code"], 999);
        assert_eq!(json(&out)["cniVersion"], "0.4.0");
        let out = dispatch(&p, &vars("ADD"), b"{not json");
        assert_eq!(json(&out)["code"], 6);
        let out = dispatch(&p, &vars("ADD"), br#"{"cniVersion":"9.0.0","name":"n"}"#);
        assert_eq!(json(&out)["code"], 1);
        let mut v = vars("ADD");
        v.remove("CNI_NETNS");
        let out = dispatch(&p, &v, CONF);
        assert_eq!(json(&out)["code"], 4);
        assert!(json(&out)["msg"].as_str().unwrap().contains("CNI_NETNS"));
        assert!(p.calls.borrow().is_empty());
    }

    #[test]
    fn version_gates() {
        let p = Recorder::default();
        let old = br#"{"cniVersion":"0.3.1","name":"n","type":"t"}"#;
        assert_eq!(json(&dispatch(&p, &vars("CHECK"), old))["code"], 1);
        assert_eq!(json(&dispatch(&p, &vars("STATUS"), CONF))["code"], 1);
        let new = br#"{"cniVersion":"1.1.0","name":"n","type":"t"}"#;
        assert_eq!(dispatch(&p, &vars("STATUS"), new).exit_code, 0);
        assert_eq!(dispatch(&p, &vars("GC"), new).exit_code, 0);
        let out = dispatch(&p, &vars("DEL"), new);
        assert_eq!((out.exit_code, out.stdout.as_str()), (0, ""));
    }

    #[test]
    fn version_verb_needs_only_command() {
        let p = Recorder::default();
        let v: HashMap<String, String> =
            [("CNI_COMMAND".to_string(), "VERSION".to_string())].into();
        let out = dispatch(&p, &v, br#"{"cniVersion":"1.0.0"}"#);
        assert_eq!(out.exit_code, 0);
        assert_eq!(json(&out)["cniVersion"], "1.0.0");
        assert_eq!(json(&out)["supportedVersions"].as_array().unwrap().len(), 5);
        assert_eq!(dispatch(&p, &v, b"").exit_code, 0);
    }
}
