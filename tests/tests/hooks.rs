//! Lifecycle hooks: each of the six runs once, in order, at its point, in its
//! namespace, with the container's state on stdin; timeouts; what a failing hook
//! does to the operation and what it leaves behind; a container without a process.

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use peapod_tests::host::{ns_link, process_gone, remove_cgroup_tree, unique_suffix};
use peapod_tests::{runtime_path, Bundle, Container};

/// A hook that records what it sees: appends its name to `<dir>/order` and writes
/// `<dir>/<name>`: the state from stdin on the first line, then `key value` lines.
const RECORD: &str = r#"name=$1; dir=$2
state=$(cat)
echo "$name" >> "$dir/order"
pid=$(echo "$state" | sed -n 's/.*"pid":\([0-9]*\).*/\1/p')
{
  echo "$state"
  echo "mnt $(readlink /proc/self/ns/mnt)"
  echo "uts $(readlink /proc/self/ns/uts)"
  echo "pidns $(readlink /proc/self/ns/pid)"
  echo "timens $(readlink /proc/self/ns/time)"
  echo "hostname $(cat /proc/sys/kernel/hostname)"
  echo "env $HOOK_VAR"
  echo "exe $(readlink /proc/$pid/exe)"
} > "$dir/$name"
"#;

/// Blocks until the test creates `/shared/go`.
const WAIT_FOR_GO: &str = "until [ -e /shared/go ]; do sleep 0.05; done";

/// A bundle whose rootfs holds the [`RECORD`] script at `/record.sh`, with a
/// `/shared` dir; returns the host path of the shared dir.
fn recording_bundle() -> (Bundle, PathBuf) {
    let mut bundle = Bundle::new();
    let shared = bundle.share();
    fs::write(bundle.rootfs().join("record.sh"), RECORD).expect("write record.sh");
    bundle.sh(WAIT_FOR_GO);
    (bundle, shared)
}

/// A hook running the [`RECORD`] script. Runtime-side hooks (and createContainer,
/// which runs before pivot_root) use the host's paths, startContainer the
/// container's.
fn record_hook(bundle: &Bundle, shared: &Path, name: &str) -> Value {
    let (script, dir) = if name == "startContainer" {
        ("/record.sh".to_string(), "/shared".to_string())
    } else {
        (
            bundle.rootfs().join("record.sh").display().to_string(),
            shared.display().to_string(),
        )
    };
    json!({
        "path": "/bin/sh",
        "args": ["sh", script, name, dir],
        "env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin", format!("HOOK_VAR={name}-env")],
        "timeout": 10,
    })
}

/// What a [`RECORD`] hook saw.
struct Seen {
    state: Value,
    facts: Vec<(String, String)>,
}

impl Seen {
    #[track_caller]
    fn read(shared: &Path, name: &str) -> Seen {
        let text = fs::read_to_string(shared.join(name))
            .unwrap_or_else(|e| panic!("the {name} hook left no record: {e}"));
        let mut lines = text.lines();
        let state = serde_json::from_str(lines.next().unwrap_or_default())
            .unwrap_or_else(|e| panic!("{name}: stdin is not the state JSON ({e}): {text}"));
        let facts = lines
            .filter_map(|l| l.split_once(' '))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        Seen { state, facts }
    }

    #[track_caller]
    fn fact(&self, key: &str) -> &str {
        self.facts
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("no {key} in {:?}", self.facts))
    }
}

/// Every mounted cgroup hierarchy's directory for the absolute `cgroupsPath`.
fn cgroup_dirs_for(path: &str) -> Vec<PathBuf> {
    fs::read_dir("/sys/fs/cgroup")
        .expect("/sys/fs/cgroup")
        .flatten()
        .map(|e| e.path().join(path.trim_start_matches('/')))
        .chain(std::iter::once(
            Path::new("/sys/fs/cgroup").join(path.trim_start_matches('/')),
        ))
        .collect()
}

/// Removes a test's cgroup if the runtime left it behind.
struct CgroupGuard(String);

impl Drop for CgroupGuard {
    fn drop(&mut self) {
        remove_cgroup_tree(Path::new(&self.0));
    }
}

/// Live processes whose command line mentions `needle`.
fn processes_mentioning(needle: &str) -> Vec<String> {
    fs::read_dir("/proc")
        .expect("/proc")
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| *pid != std::process::id() as i32 && !process_gone(*pid))
        .filter_map(|pid| {
            let raw = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let line = String::from_utf8_lossy(&raw).replace('\0', " ");
            line.contains(needle).then(|| format!("{pid}: {line}"))
        })
        .collect()
}

#[test]
fn all_six_run_once_in_order_with_their_state_and_namespaces() {
    let (mut bundle, shared) = recording_bundle();
    bundle.spec["hostname"] = json!("hooked");
    let mut hooks = serde_json::Map::new();
    for name in [
        "prestart",
        "createRuntime",
        "createContainer",
        "startContainer",
        "poststart",
        "poststop",
    ] {
        hooks.insert(name.into(), json!([record_hook(&bundle, &shared, name)]));
    }
    bundle.spec["hooks"] = Value::Object(hooks);
    let ctr = Container::new(bundle);
    let bundle_dir = fs::canonicalize(ctr.bundle().path()).unwrap();

    ctr.create();
    let pid = ctr.pid();
    let inside = |ns: &str| ns_link(&pid.to_string(), ns);
    let (ctr_mnt, ctr_uts) = (inside("mnt"), inside("uts"));
    let order = || fs::read_to_string(shared.join("order")).unwrap_or_default();
    assert_eq!(order(), "prestart\ncreateRuntime\ncreateContainer\n");
    ctr.start();
    assert_eq!(
        order(),
        "prestart\ncreateRuntime\ncreateContainer\nstartContainer\npoststart\n",
        "poststart must have run before start returned"
    );
    fs::write(shared.join("go"), "").unwrap();
    ctr.wait_for_status("stopped");
    ctr.cmd(["delete", ctr.id()]).ok();
    assert_eq!(
        order(),
        "prestart\ncreateRuntime\ncreateContainer\nstartContainer\npoststart\npoststop\n"
    );

    let host = |ns: &str| ns_link("self", ns);
    for (name, status, in_container) in [
        ("prestart", "created", false),
        ("createRuntime", "created", false),
        ("createContainer", "created", true),
        ("startContainer", "created", true),
        ("poststart", "running", false),
        ("poststop", "stopped", false),
    ] {
        let seen = Seen::read(&shared, name);
        let state = &seen.state;
        assert_eq!(state["id"], ctr.id(), "{name}: {state}");
        assert_eq!(state["status"], status, "{name}: {state}");
        assert_eq!(state["bundle"], json!(bundle_dir), "{name}: {state}");
        // Runtime namespace: the host's pid; container namespace: the container's.
        let want_pid = match (name, in_container) {
            ("poststop", _) => 0,
            (_, true) => 1,
            (_, false) => pid,
        };
        assert_eq!(state["pid"], want_pid, "{name}: {state}");
        assert_eq!(seen.fact("env"), format!("{name}-env"), "{name}: env");
        let (mnt, uts) = (seen.fact("mnt"), seen.fact("uts"));
        if in_container {
            assert_eq!((mnt, uts), (ctr_mnt.as_str(), ctr_uts.as_str()), "{name}");
        } else {
            assert_eq!(
                (mnt, uts),
                (host("mnt").as_str(), host("uts").as_str()),
                "{name}"
            );
        }
    }
    // The hostname is set after createContainer (runc's order), before startContainer.
    assert_eq!(
        Seen::read(&shared, "startContainer").fact("hostname"),
        "hooked"
    );
    // createRuntime ran while the init was still the runtime; poststart after execve.
    let exe = |name| Seen::read(&shared, name).fact("exe").to_owned();
    let runtime = runtime_path().file_name().unwrap().to_str().unwrap();
    assert!(
        exe("createRuntime").ends_with(runtime),
        "{}",
        exe("createRuntime")
    );
    assert!(
        exe("poststart").ends_with("/bin/busybox"),
        "{}",
        exe("poststart")
    );
}

#[test]
fn runtime_hooks_stay_in_the_runtime_pid_and_time_namespaces() {
    let holder = Container::with_args(&["sleep", "1000"]);
    holder.run_detached();
    let joined = format!("/proc/{}/ns/pid", holder.pid());
    let (mut bundle, shared) = recording_bundle();
    // Both only change the runtime's namespaces for its children, hooks included.
    bundle.namespace("pid", Some(Path::new(&joined)));
    bundle.namespace("time", None);
    bundle.spec["hooks"] = json!({
        "createRuntime": [record_hook(&bundle, &shared, "createRuntime")],
        "poststart": [record_hook(&bundle, &shared, "poststart")],
    });
    let ctr = Container::new(bundle);
    // `run` creates and starts in one process: poststart must be back home too.
    ctr.run_detached();
    for (ns, fact) in [("pid", "pidns"), ("time", "timens")] {
        let host = ns_link("self", ns);
        assert_ne!(ns_link(&ctr.pid().to_string(), ns), host, "{ns}");
        for name in ["createRuntime", "poststart"] {
            assert_eq!(Seen::read(&shared, name).fact(fact), host, "{name}: {ns}");
        }
    }
    fs::write(shared.join("go"), "").unwrap();
}

#[test]
fn a_hook_past_its_timeout_is_killed_and_create_leaves_nothing_behind() {
    let (mut bundle, shared) = recording_bundle();
    let cgroup = format!("/pp-hooks-timeout-{}", unique_suffix());
    let _guard = CgroupGuard(cgroup.clone());
    bundle.spec["linux"]["cgroupsPath"] = json!(cgroup);
    let marker = format!("hook-of-{}", unique_suffix());
    bundle.spec["hooks"] = json!({
        "createRuntime": [{
            "path": "/bin/sh",
            "args": ["sh", "-c", "sleep 30 & wait", marker],
            "timeout": 1,
        }],
        "poststop": [record_hook(&bundle, &shared, "poststop")],
    });
    let ctr = Container::new(bundle);

    let started = std::time::Instant::now();
    let out = ctr.create_with(&[]).failed();
    assert!(
        started.elapsed().as_secs() < 10,
        "create took {:?}",
        started.elapsed()
    );
    assert!(
        out.stderr
            .contains("createRuntime hook #0 /bin/sh: timed out after 1s"),
        "{out}"
    );
    // The lifecycle goes on at "destroy", then the poststop hooks.
    assert_eq!(Seen::read(&shared, "poststop").state["status"], "stopped");
    ctr.cmd(["state", ctr.id()]).failed();
    assert!(!ctr.root().join(ctr.id()).exists(), "state dir left behind");
    for dir in cgroup_dirs_for(&cgroup) {
        assert!(!dir.exists(), "cgroup {} left behind", dir.display());
    }
    for needle in [ctr.id(), marker.as_str()] {
        let left = processes_mentioning(needle);
        assert!(left.is_empty(), "processes left behind: {left:?}");
    }
}

#[test]
fn a_failing_start_container_hook_fails_start_and_destroys_the_container() {
    let (mut bundle, shared) = recording_bundle();
    bundle.spec["hooks"] = json!({
        "startContainer": [{ "path": "/bin/sh", "args": ["sh", "-c", "echo nope >&2; exit 3"] }],
        "poststart": [record_hook(&bundle, &shared, "poststart")],
        "poststop": [record_hook(&bundle, &shared, "poststop")],
    });
    let ctr = Container::new(bundle);
    ctr.create();
    let pid = ctr.pid();

    let out = ctr.cmd(["start", ctr.id()]).failed();
    assert!(
        out.stderr
            .contains("startContainer hook #0 /bin/sh: exit status 3: nope"),
        "{out}"
    );
    assert!(
        process_gone(pid),
        "the init survived a failed startContainer hook"
    );
    ctr.cmd(["state", ctr.id()]).failed();
    assert!(
        !shared.join("poststart").exists(),
        "poststart ran after a failed start"
    );
    assert_eq!(Seen::read(&shared, "poststop").state["status"], "stopped");
}

#[test]
fn failing_poststart_and_poststop_hooks_only_warn() {
    let (mut bundle, shared) = recording_bundle();
    let fail = json!({ "path": "/bin/false", "args": ["false"] });
    bundle.spec["hooks"] = json!({
        "poststart": [fail, record_hook(&bundle, &shared, "poststart")],
        "poststop": [fail, record_hook(&bundle, &shared, "poststop")],
    });
    let ctr = Container::new(bundle);
    ctr.create();
    let out = ctr.start();
    assert!(out.stderr.contains("poststart hook #0 /bin/false"), "{out}");
    assert_eq!(ctr.status(), "running");
    fs::write(shared.join("go"), "").unwrap();
    ctr.wait_for_status("stopped");
    let out = ctr.cmd(["delete", ctr.id()]).ok();
    assert!(out.stderr.contains("poststop hook #0 /bin/false"), "{out}");
    assert_eq!(
        fs::read_to_string(shared.join("order")).unwrap(),
        "poststart\npoststop\n"
    );
}

#[test]
fn a_container_without_a_process_is_created_but_cannot_start() {
    let mut bundle = Bundle::new();
    bundle.spec.as_object_mut().unwrap().remove("process");
    let ctr = Container::new(bundle);
    ctr.create();
    assert_eq!(ctr.status(), "created");
    let out = ctr.cmd(["start", ctr.id()]).failed();
    assert!(out.stderr.contains("no process"), "{out}");
    assert_eq!(
        ctr.status(),
        "created",
        "a refused start must change nothing"
    );
    ctr.delete_force();
}

// runtime-tools: prestart_fail
#[test]
fn a_failing_prestart_hook_fails_create_before_the_program_runs() {
    let (mut bundle, shared) = recording_bundle();
    bundle.sh("touch /shared/ran");
    bundle.spec["hooks"] = json!({
        "prestart": [{ "path": "/bin/false", "args": ["false"] }],
    });
    let ctr = Container::new(bundle);
    let out = ctr.create_with(&[]).failed();
    assert!(out.stderr.contains("prestart"), "{out}");
    ctr.cmd(["start", ctr.id()]).failed();
    ctr.cmd(["state", ctr.id()]).failed();
    assert!(
        !shared.join("ran").exists(),
        "the program ran after a failed prestart hook"
    );
}
