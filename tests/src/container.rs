//! [`Container`]: a guard owning a unique container id, its bundle and a
//! private `--root` state directory; dropping it force-deletes the container.

use std::ffi::OsStr;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use tempfile::TempDir;

use crate::bundle::Bundle;
use crate::cli::{self, Output};
use crate::host::{process_gone, unique_suffix, wait_until};

/// How long a test waits for a container to reach a status.
pub const STATUS_TIMEOUT: Duration = Duration::from_secs(20);

/// A container under test: id `pp-<test name>-<pid>-<n>`, its [`Bundle`] and
/// a `--root` state directory of its own, so tests never see each other's
/// containers.
///
/// Nothing is run on construction. On drop, even when the test panicked, the
/// container is deleted with `delete --force`, its init is killed if that
/// did not work, and the bundle and state directories are removed.
pub struct Container {
    id: String,
    root: TempDir,
    bundle: Bundle,
}

impl Container {
    /// Starts `sleep 1000` detached in a busybox container whose `linux.resources` are
    /// `resources`.
    #[track_caller]
    pub fn sleeping_with(resources: Value) -> Container {
        let mut bundle = Bundle::new();
        bundle.args(&["sleep", "1000"]);
        bundle.spec["linux"]["resources"] = resources;
        let ctr = Container::new(bundle);
        ctr.run_detached();
        ctr
    }

    /// Saves `bundle`'s `config.json` and takes a fresh id and state dir.
    #[track_caller]
    pub fn new(bundle: Bundle) -> Self {
        bundle.save();
        let root = tempfile::Builder::new()
            .prefix("pp-state-")
            .tempdir()
            .expect("a state directory");
        Container {
            id: format!("pp-{}-{}", test_name(), unique_suffix()),
            root,
            bundle,
        }
    }

    /// A container of a fresh [`Bundle`] whose process runs `args`.
    #[track_caller]
    pub fn with_args(args: &[&str]) -> Self {
        let mut bundle = Bundle::new();
        bundle.args(args);
        Container::new(bundle)
    }

    /// The container id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The bundle.
    pub fn bundle(&self) -> &Bundle {
        &self.bundle
    }

    /// The state directory passed as `--root`.
    pub fn root(&self) -> &Path {
        self.root.path()
    }

    /// Runs `RUNTIME --root <root> <args...>`; `args` name the id themselves.
    pub fn cmd<I, S>(&self, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut all = vec![
            OsStr::new("--root").to_owned(),
            self.root.path().as_os_str().to_owned(),
        ];
        all.extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        cli::run(all)
    }

    /// `create --bundle <bundle> <id>` plus `extra` flags before the id.
    pub fn create_with(&self, extra: &[&str]) -> Output {
        self.cmd(self.with_bundle("create", extra))
    }

    /// `create --bundle <bundle> <id>`, which must succeed.
    #[track_caller]
    pub fn create(&self) -> Output {
        self.create_with(&[]).ok()
    }

    /// `start <id>`, which must succeed.
    #[track_caller]
    pub fn start(&self) -> Output {
        self.cmd(["start", &self.id]).ok()
    }

    /// `run --bundle <bundle> <id>` in the foreground plus `extra` flags:
    /// returns when the container's process has exited, with its exit code
    /// and output.
    pub fn run_with(&self, extra: &[&str]) -> Output {
        self.cmd(self.with_bundle("run", extra))
    }

    /// `run --bundle <bundle> <id>` in the foreground.
    pub fn run(&self) -> Output {
        self.run_with(&[])
    }

    /// `run --detach`, which must succeed.
    #[track_caller]
    pub fn run_detached(&self) -> Output {
        self.run_with(&["--detach"]).ok()
    }

    /// `state <id>` as JSON; panics if `state` fails.
    #[track_caller]
    pub fn state(&self) -> Value {
        self.cmd(["state", &self.id]).ok().json()
    }

    /// The `status` field of `state`.
    #[track_caller]
    pub fn status(&self) -> String {
        self.state()["status"]
            .as_str()
            .expect("state has a status string")
            .to_owned()
    }

    /// The `pid` field of `state`: the init process on the host.
    #[track_caller]
    pub fn pid(&self) -> i32 {
        let state = self.state();
        state["pid"]
            .as_i64()
            .unwrap_or_else(|| panic!("state has no pid: {state}")) as i32
    }

    /// Waits until `state` reports `status`; panics after [`STATUS_TIMEOUT`].
    #[track_caller]
    pub fn wait_for_status(&self, status: &str) {
        let mut last = String::new();
        let reached = wait_until(STATUS_TIMEOUT, || {
            last = self.status();
            last == status
        });
        assert!(reached, "{} still {last}, not {status}", self.id);
    }

    /// `kill <id> <signal>`.
    pub fn kill(&self, signal: &str) -> Output {
        self.cmd(["kill", &self.id, signal])
    }

    /// `exec <id> <args...>` with `flags` before the id, in the foreground.
    pub fn exec(&self, flags: &[&str], args: &[&str]) -> Output {
        let mut all = vec!["exec"];
        all.extend_from_slice(flags);
        all.push(&self.id);
        all.extend_from_slice(args);
        self.cmd(all)
    }

    /// `delete --force <id>`, which must succeed.
    #[track_caller]
    pub fn delete_force(&self) -> Output {
        self.cmd(["delete", "--force", &self.id]).ok()
    }

    /// Panics unless the state dir knows neither this container nor any
    /// other: what a refused `create` must leave.
    #[track_caller]
    pub fn assert_nothing_left(&self) {
        self.cmd(["state", &self.id]).failed();
        let out = self.cmd(["list", "-q"]).ok();
        assert_eq!(out.stdout, "", "{out}");
    }

    fn with_bundle<'a>(&'a self, command: &'a str, extra: &[&'a str]) -> Vec<&'a OsStr> {
        let mut args = vec![
            OsStr::new(command),
            OsStr::new("--bundle"),
            self.bundle.path().as_os_str(),
        ];
        args.extend(extra.iter().map(|flag| OsStr::new(*flag)));
        args.push(OsStr::new(&self.id));
        args
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        // Everything here is best effort: a panic in drop while the test is
        // already panicking would abort the whole test binary.
        let pid = self
            .cmd(["state", &self.id])
            .json_opt()
            .and_then(|state| state["pid"].as_i64())
            .map(|pid| pid as i32)
            .filter(|pid| *pid > 0);
        let deleted = self.cmd(["delete", "--force", &self.id]);
        if let Some(pid) = pid.filter(|pid| !process_gone(*pid)) {
            eprintln!(
                "container {} outlived `delete --force` ({}); killing pid {pid}",
                self.id,
                deleted.stderr.trim()
            );
            // Best effort: the process may have exited in the meantime.
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// The running test's name (libtest names each test's thread after it),
/// reduced to characters that are safe in ids, cgroup names and paths.
fn test_name() -> String {
    let thread = std::thread::current();
    let name = thread.name().unwrap_or("test");
    let name = name.rsplit("::").next().unwrap_or(name);
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .take(40)
        .collect()
}
