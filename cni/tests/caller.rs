//! The CNI caller against fake plugins (shell scripts that record what they are given)
//! and the real `peapod-host-local`: chaining, prevResult, DEL order, the result
//! cache, errors naming the plugin, timeouts, GC and STATUS.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cni::caller::{Cache, Caller, CallerError, Network, RuntimeConf};
use cni::spec::Attachment;
use serde_json::{json, Value};

/// A plugin directory and log directory for one test.
struct Bench {
    dir: tempfile::TempDir,
}

impl Bench {
    fn new() -> Bench {
        let bench = Bench {
            dir: tempfile::tempdir().unwrap(),
        };
        fs::create_dir_all(bench.plugins()).unwrap();
        fs::create_dir_all(bench.logs()).unwrap();
        bench
    }

    fn plugins(&self) -> PathBuf {
        self.dir.path().join("bin")
    }

    fn logs(&self) -> PathBuf {
        self.dir.path().join("log")
    }

    /// A plugin that logs its verb and stdin, then runs `body` (sh).
    fn plugin(&self, name: &str, body: &str) {
        let logs = self.logs();
        let script = format!(
            "#!/bin/sh\nin=$(cat)\nprintf '%s\\n' \"{name} $CNI_COMMAND\" >> {order}\nprintf '%s' \"$in\" > {logs}/{name}-$CNI_COMMAND.json\n{body}\n",
            order = logs.join("order").display(),
            logs = logs.display(),
        );
        let path = self.plugins().join(name);
        fs::write(&path, script).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
    }

    /// A plugin that prints `result` on ADD and nothing otherwise.
    fn result_plugin(&self, name: &str, result: &Value) {
        self.plugin(
            name,
            &format!("[ \"$CNI_COMMAND\" = ADD ] && printf '%s' '{result}'\nexit 0"),
        );
    }

    fn logged(&self, name: &str, verb: &str) -> Value {
        let text = fs::read(self.logs().join(format!("{name}-{verb}.json"))).unwrap();
        serde_json::from_slice(&text).unwrap()
    }

    fn order(&self) -> Vec<String> {
        fs::read_to_string(self.logs().join("order"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn caller(&self, extra_dirs: &[&Path]) -> Caller {
        let mut dirs = vec![self.plugins()];
        dirs.extend(extra_dirs.iter().map(|d| d.to_path_buf()));
        Caller {
            plugin_dirs: dirs,
            cache: Cache::new(&self.dir.path().join("cache")),
            timeout: Duration::from_secs(10),
        }
    }

    fn network(&self, conflist: &Value) -> Network {
        let path = self.dir.path().join("net.conflist");
        fs::write(&path, conflist.to_string()).unwrap();
        Network::load(&path).unwrap()
    }
}

fn runtime(id: &str) -> RuntimeConf {
    RuntimeConf {
        container_id: id.into(),
        netns: "/run/netns/fake".into(),
        ifname: "eth0".into(),
        args: vec![
            ("IgnoreUnknown".into(), "1".into()),
            ("K8S_POD_NAME".into(), "web".into()),
        ],
        capability_args: json!({"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]}),
    }
}

fn ip_result(addr: &str) -> Value {
    json!({"cniVersion": "1.0.0", "ips": [{"address": addr, "gateway": "10.9.0.1"}]})
}

#[test]
fn add_chains_prev_results_and_del_runs_in_reverse_with_the_cache() {
    let bench = Bench::new();
    bench.result_plugin("first", &ip_result("10.9.0.2/24"));
    // The last plugin's result is the chain's: "second" adds DNS to what it got.
    let mut with_dns = ip_result("10.9.0.2/24");
    with_dns["dns"] = json!({"nameservers": ["10.9.0.1"]});
    bench.result_plugin("second", &with_dns);
    let net = bench.network(&json!({
        "cniVersion": "1.0.0", "name": "chain",
        "plugins": [{"type": "first"}, {"type": "second", "capabilities": {"portMappings": true}}]
    }));
    let caller = bench.caller(&[]);
    let result = caller.add(&net, &runtime("c1")).unwrap();
    assert_eq!(result.ips[0].address.to_string(), "10.9.0.2/24");
    assert_eq!(result.dns.nameservers, ["10.9.0.1"]);

    let first = bench.logged("first", "ADD");
    assert_eq!(first["name"], "chain");
    assert_eq!(first["cniVersion"], "1.0.0");
    assert!(
        first.get("prevResult").is_none(),
        "the first plugin gets no prevResult"
    );
    assert!(
        first.get("runtimeConfig").is_none(),
        "first declared no capabilities"
    );
    let second = bench.logged("second", "ADD");
    assert_eq!(second["prevResult"]["ips"][0]["address"], "10.9.0.2/24");
    assert_eq!(second["runtimeConfig"]["portMappings"][0]["hostPort"], 8080);

    let cache = bench.dir.path().join("cache/results/chain-c1-eth0");
    let entry: Value = serde_json::from_slice(&fs::read(&cache).unwrap()).unwrap();
    assert_eq!(entry["kind"], "cniCacheV1");
    assert_eq!(entry["result"]["ips"][0]["address"], "10.9.0.2/24");

    caller.check(&net, &runtime("c1")).unwrap();
    assert_eq!(
        bench.logged("second", "CHECK")["prevResult"]["ips"][0]["address"],
        "10.9.0.2/24"
    );

    caller.del(&net, &runtime("c1")).unwrap();
    assert_eq!(
        bench.order(),
        [
            "first ADD",
            "second ADD",
            "first CHECK",
            "second CHECK",
            "second DEL",
            "first DEL"
        ]
    );
    assert_eq!(
        bench.logged("first", "DEL")["prevResult"]["ips"][0]["address"],
        "10.9.0.2/24"
    );
    assert!(!cache.exists(), "DEL forgets the attachment");
    // A second DEL (nothing cached) still runs the plugins and succeeds.
    caller.del(&net, &runtime("c1")).unwrap();
}

#[test]
fn a_failing_plugin_is_named_with_its_code_and_message() {
    let bench = Bench::new();
    bench.plugin(
        "broken",
        "printf '%s' '{\"cniVersion\":\"1.0.0\",\"code\":7,\"msg\":\"bad bridge name\",\"details\":\"too long\"}'\nexit 1",
    );
    let net = bench
        .network(&json!({"cniVersion": "1.0.0", "name": "n", "plugins": [{"type": "broken"}]}));
    let err = bench.caller(&[]).add(&net, &runtime("c2")).unwrap_err();
    assert!(matches!(err, CallerError::Plugin { code: 7, .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("broken") && text.contains("bad bridge name") && text.contains("too long"),
        "{text}"
    );

    let net = bench
        .network(&json!({"cniVersion": "1.0.0", "name": "n", "plugins": [{"type": "absent"}]}));
    let err = bench
        .caller(&[])
        .add(&net, &runtime("c2"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("failed to find plugin \"absent\""), "{err}");
}

#[test]
fn a_hung_plugin_is_killed_at_the_timeout() {
    let bench = Bench::new();
    bench.plugin("slow", "sleep 30");
    let net =
        bench.network(&json!({"cniVersion": "1.0.0", "name": "n", "plugins": [{"type": "slow"}]}));
    let mut caller = bench.caller(&[]);
    caller.timeout = Duration::from_secs(1);
    let started = Instant::now();
    let err = caller.add(&net, &runtime("c3")).unwrap_err();
    assert!(matches!(err, CallerError::Timeout { .. }), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn old_versions_refuse_check_and_gc() {
    let bench = Bench::new();
    bench.result_plugin("p", &ip_result("10.9.0.3/24"));
    let net =
        bench.network(&json!({"cniVersion": "0.3.1", "name": "old", "plugins": [{"type": "p"}]}));
    let caller = bench.caller(&[]);
    caller.add(&net, &runtime("c4")).unwrap();
    assert!(matches!(
        caller.check(&net, &runtime("c4")),
        Err(CallerError::Unsupported { .. })
    ));
    assert!(matches!(
        caller.gc(&net, &[]),
        Err(CallerError::Unsupported { .. })
    ));
    caller.del(&net, &runtime("c4")).unwrap();
    // 0.3.x plugins get no prevResult on DEL.
    assert!(bench.logged("p", "DEL").get("prevResult").is_none());
}

#[test]
fn host_local_through_the_caller_add_gc_status_del() {
    let bench = Bench::new();
    let ours = Path::new(env!("CARGO_BIN_EXE_peapod-host-local"));
    let data = bench.dir.path().join("ipam");
    let net = bench.network(&json!({
        "cniVersion": "1.1.0", "name": "ipamnet",
        "plugins": [{
            "type": "peapod-host-local",
            "ipam": {"type": "peapod-host-local", "subnet": "10.77.0.0/29", "dataDir": data}
        }]
    }));
    let caller = bench.caller(&[ours.parent().unwrap()]);
    let a = caller.add(&net, &runtime("ca")).unwrap();
    let b = caller.add(&net, &runtime("cb")).unwrap();
    assert_ne!(a.ips[0].address, b.ips[0].address);
    let file = |r: &cni::spec::CniResult| {
        data.join("ipamnet")
            .join(r.ips[0].address.to_string().split('/').next().unwrap())
    };
    assert!(file(&a).exists() && file(&b).exists());
    caller.status(&net).unwrap();
    caller.check(&net, &runtime("ca")).unwrap();

    // GC keeps "ca" and releases "cb", in IPAM and in the cache.
    let valid = [Attachment {
        container_id: "ca".into(),
        ifname: "eth0".into(),
    }];
    caller.gc(&net, &valid).unwrap();
    assert!(file(&a).exists());
    assert!(!file(&b).exists(), "GC released cb's address");
    assert!(!bench
        .dir
        .path()
        .join("cache/results/ipamnet-cb-eth0")
        .exists());

    caller.del(&net, &runtime("ca")).unwrap();
    assert!(!file(&a).exists());
}
