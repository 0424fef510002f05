//! containerd drives the runtime through its runc shim: import, run, exec, pause,
//! resume, kill, delete, and a container killed by the OOM killer that containerd
//! reports.
//!
//! The test starts a private containerd (root, state, socket and runtime
//! root all under one temp dir, its own ctr namespace), imports the busybox
//! image that `scripts/oci-image.sh` builds, and runs containers on the
//! `io.containerd.runc.v2` shim with `BinaryName` set to the runtime.
//!
//! # Where `BinaryName` comes from
//! containerd 1.6 has no daemon-wide setting that points the runc v2 shim
//! at another binary for every client. `BinaryName` is a field of the runc
//! shim's options (`containerd.runc.v1.Options`), which travel with each
//! container record and task request; the shim runs `runc` from its PATH
//! when it is empty. Who fills them in:
//!
//! - **CRI** (the kubelet, crictl): from the daemon's config.toml,
//!   `[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]`
//!   `BinaryName = "/usr/bin/peapod-runtime"` (with `runtime_type =
//!   "io.containerd.runc.v2"`). This is the route for Kubernetes users; it
//!   applies only to containers the CRI plugin creates.
//! - **ctr**: from its own flags. With `--runtime io.containerd.runc.v2` (the
//!   default) `ctr run` always sends runc options built from `--runc-binary`,
//!   `--runc-root` and `--runc-systemd-cgroup`, and ignores
//!   `--runtime-config-path` (that one is only sent for other runtimes, as a
//!   different options type the runc shim cannot read). The daemon's
//!   `[plugins."io.containerd.runtime.v2.task"]` section only knows
//!   `platforms` and `sched_core`, and `[plugins."io.containerd.runtime.v1.linux"]`
//!   `runtime = ...` configures the deprecated v1 shim, not runc.v2.
//!
//! So a ctr user gets peapod-runtime per run, with `--runc-binary`, which is
//! what this test does: it is the same `BinaryName` field the CRI config
//! sets, read by the same shim code.
//!
//! # What the shim calls
//! containerd 1.6's `containerd-shim-runc-v2` calls the runtime exactly as
//! it calls runc (`<ns>` is the ctr namespace, `<bundle>` is
//! `<state>/io.containerd.runtime.v2.task/<ns>/<id>`):
//!
//! ```text
//! G = --root <runc-root>/<ns> --log <bundle>/log.json --log-format json
//! <rt> G create --bundle <bundle> --pid-file <bundle>/init.pid [--console-socket <sock>] <id>
//! <rt> G start <id>
//! <rt> G exec --process <tmp>/runc-process<N> [--console-socket <sock>] --detach --pid-file <bundle>/<exec-id>.pid <id>
//! <rt> G kill [--all] <id> 9
//! <rt> G delete <id>
//! <rt> G delete --force <id>      (shim cleanup, after the container is gone: must succeed)
//! ```
//!
//! (`ctr task ps`, `pause` and `resume` add `G ps --format json <id>`,
//! `G pause <id>` and `G resume <id>`; this shim never calls `state`.)
//!
//! The shim reads the pid file once the call returns, learns exits by reaping
//! (it is a child subreaper, so `create` and `exec --detach` must leave the
//! process behind and exit), and on failure reports the `msg` of the last
//! error line of `log.json`.
//!
//! # OOM
//! On this host's cgroup v1 (and hybrid) layout the shim finds the task's
//! cgroups from `/proc/<pid>/cgroup` once `start` returns and registers an
//! eventfd on the memory cgroup's `memory.oom_control`; each OOM kill there
//! becomes a `/tasks/oom` event. So the runtime must have put the init into
//! the container's memory cgroup (with the limit) by then. The OOM container
//! sleeps a moment before allocating, so that the shim is listening.
//!
//! The runtime under test is `$PEAPOD_RUNTIME`, else the `peapod-runtime`
//! built next to this test (`target/<profile>/peapod-runtime`). The test
//! needs root, containerd, ctr and containerd-shim-runc-v2; without them it
//! fails, it never skips.

use std::fs;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context, Result};
use sha2::{Digest, Sha256};
use tempfile::TempDir;

/// The reference `scripts/oci-image.sh` writes into the image's annotations.
const IMAGE: &str = "peapod.test/busybox:latest";
/// Container ids; unique enough because the namespace is.
const CONTAINER: &str = "busybox";
/// The container that runs out of memory.
const OOM_CONTAINER: &str = "oom";
/// Every container the test makes, for the checks and the cleanup.
const CONTAINERS: [&str; 2] = [CONTAINER, OOM_CONTAINER];
/// The OOM container's memory limit: 32 MiB (busybox itself needs ~1 MiB).
const OOM_LIMIT: &str = "33554432";
/// Upper bound for one ctr call; each takes well under a second.
const CTR_TIMEOUT: Duration = Duration::from_secs(15);
/// Upper bound for each wait on containerd, the task or the shim.
const WAIT_TIMEOUT: Duration = Duration::from_secs(10);
/// How much of containerd's log a failure message shows.
const LOG_TAIL_LINES: usize = 40;

#[test]
fn ctr_runs_execs_and_deletes_a_container() {
    require_root();
    for tool in ["containerd", "ctr", "containerd-shim-runc-v2"] {
        if find_in_path(tool).is_none() {
            panic!("`{tool}` is not in PATH; install containerd (Debian package `containerd`)");
        }
    }
    let runtime = runtime_binary().unwrap_or_else(|err| panic!("{err:#}"));
    let mut containerd = Containerd::start(runtime).unwrap_or_else(|err| panic!("{err:#}"));
    if let Err(err) = scenario(&mut containerd).and_then(|()| containerd.shutdown()) {
        panic!(
            "{err:#}\n--- containerd log (last {LOG_TAIL_LINES} lines) ---\n{}",
            containerd.log_tail()
        );
    }
}

/// Import, run, exec twice, kill and delete, checking each step.
fn scenario(cd: &mut Containerd) -> Result<()> {
    let archive = cd.path.join("busybox.tar");
    build_image(&archive)?;
    cd.ctr(&["images", "import", utf8(&archive)?])?;

    let fifo_dir = utf8(&cd.fifo_dir)?;
    cd.ctr(&cd.run_args(&["--detach"], CONTAINER, &["sleep", "1000"])?)?;
    cd.wait_for_task("RUNNING")?;
    let address = cd.read_shim_address(CONTAINER);
    let expected = cd.shim_socket(CONTAINER);
    ensure!(
        address.as_ref() == Some(&expected),
        "the shim's address file says {address:?}, expected {}",
        expected.display()
    );

    let exec = |id: &str, script: &str| {
        cd.ctr_output(&[
            "task",
            "exec",
            "--fifo-dir",
            fifo_dir,
            "--exec-id",
            id,
            CONTAINER,
            "sh",
            "-c",
            script,
        ])
    };
    let out = exec("e1", "echo hello-from-exec")?;
    ensure!(
        out.status.success() && out.stdout == b"hello-from-exec\n",
        "exec e1: expected \"hello-from-exec\\n\", got {}",
        describe(&out)
    );
    // The shim learns an exec's exit code by reaping it, so this only
    // works if `exec --detach` left the process to the shim.
    let out = exec("e2", "exit 3")?;
    ensure!(
        out.status.code() == Some(3),
        "exec e2: expected exit status 3, got {}",
        describe(&out)
    );

    // The shim pauses and resumes through the runtime (`pause`/`resume`: the freezer).
    cd.ctr(&["task", "pause", CONTAINER])?;
    cd.wait_for_task("PAUSED")?;
    cd.ctr(&["task", "resume", CONTAINER])?;
    cd.wait_for_task("RUNNING")?;
    let out = exec("e3", "echo resumed")?;
    ensure!(
        out.status.success() && out.stdout == b"resumed\n",
        "exec e3 after resume: expected \"resumed\\n\", got {}",
        describe(&out)
    );

    cd.ctr(&["task", "kill", "--signal", "SIGKILL", CONTAINER])?;
    cd.wait_for_task("STOPPED")?;
    cd.ctr(&["task", "delete", CONTAINER])?;
    cd.ctr(&["container", "delete", CONTAINER])?;

    let state = cd.runtime_root.join(&cd.namespace).join(CONTAINER);
    ensure!(
        !state.exists(),
        "runtime `delete` left its state dir {}",
        state.display()
    );
    out_of_memory(cd)
}

/// A container with a memory limit allocates past it: the kernel kills it,
/// `ctr run` exits 137 (128 + SIGKILL), and containerd publishes an OOM
/// event and the task's exit with that status.
fn out_of_memory(cd: &Containerd) -> Result<()> {
    let events = Events::start(cd)?;
    // busybox `tail` keeps a line that never ends (there is no newline in
    // /dev/zero) in memory, so it grows until the limit stops it.
    let out = cd.ctr_output(&cd.run_args(
        &["--rm", "--memory-limit", OOM_LIMIT],
        OOM_CONTAINER,
        &["sh", "-c", "sleep 1; exec tail /dev/zero"],
    )?)?;
    ensure!(
        out.status.code() == Some(137),
        "OOM container: expected exit status 137, got {}",
        describe(&out)
    );
    // Lines are `<time> <namespace> <topic> <event as JSON>`.
    let id = format!(r#""container_id":"{OOM_CONTAINER}""#);
    let mut seen = String::new();
    wait_until("containerd's OOM, exit and delete events", || {
        seen = events.read()?;
        let has = |topic: &str, field: &str| {
            seen.lines()
                .any(|l| l.contains(topic) && l.contains(&id) && l.contains(field))
        };
        Ok(has(" /tasks/oom ", "")
            && has(" /tasks/exit ", r#""exit_status":137"#)
            && has(" /tasks/delete ", ""))
    })
    .with_context(|| format!("`ctr events` so far:\n{seen}"))?;
    let state = cd.runtime_root.join(&cd.namespace).join(OOM_CONTAINER);
    ensure!(
        !state.exists(),
        "runtime `delete` left its state dir {}",
        state.display()
    );
    Ok(())
}

/// `ctr events` running in the background, its output in a file; stopped
/// (by its PID) when dropped.
struct Events {
    child: Child,
    out: PathBuf,
}

impl Events {
    /// Starts `ctr events` and waits until containerd serves its stream
    /// (an event published before that would be missed).
    fn start(cd: &Containerd) -> Result<Events> {
        let out = cd.path.join("events.log");
        let file = fs::File::create(&out)?;
        let child = cd
            .ctr_command(&["events"])
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(Stdio::null())
            .spawn()
            .context("cannot run `ctr events`")?;
        let events = Events { child, out };
        // Publish events of our own (image tags) until one comes through.
        let mut attempt = 0;
        wait_until("`ctr events` to subscribe", || {
            attempt += 1;
            let probe = format!("peapod.test/events-probe:{attempt}");
            cd.ctr(&["images", "tag", IMAGE, &probe])?;
            cd.ctr(&["images", "remove", &probe])?;
            Ok(events.read()?.contains(&probe))
        })?;
        Ok(events)
    }

    fn read(&self) -> Result<String> {
        Ok(fs::read_to_string(&self.out)?)
    }
}

impl Drop for Events {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A private containerd with its own root, state, socket and ctr namespace,
/// torn down (containers, shims, mounts, cgroups, files) when dropped.
struct Containerd {
    /// The daemon; `None` once stopped.
    daemon: Option<Child>,
    /// Holds every file of this containerd; `None` once removed.
    dir: Option<TempDir>,
    /// Path of `dir`, kept for the checks after its removal.
    path: PathBuf,
    /// The grpc socket given to ctr with `--address`.
    socket: PathBuf,
    /// The ctr namespace, also the parent of the container's cgroup.
    namespace: String,
    /// containerd's stdout and stderr.
    log: PathBuf,
    /// The runtime under test, absolute.
    runtime: PathBuf,
    /// The runtime's `--root` is this plus `/<namespace>`.
    runtime_root: PathBuf,
    /// Where ctr makes the fifos of a task's I/O.
    fifo_dir: PathBuf,
}

impl Containerd {
    /// Writes a config, starts containerd and waits for its socket.
    fn start(runtime: PathBuf) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("peapod-containerd-")
            .tempdir()
            .context("cannot create temp dir")?;
        let path = dir.path().to_path_buf();
        let socket = path.join("containerd.sock");
        // sun_path holds 108 bytes; containerd also binds `<socket>.ttrpc`.
        ensure!(
            socket.as_os_str().len() + ".ttrpc".len() < 108,
            "socket path {} is too long; set TMPDIR to a shorter dir",
            socket.display()
        );
        let config = path.join("config.toml");
        fs::write(&config, config_toml(&path, &socket)?)?;
        let log = path.join("containerd.log");
        let log_file = fs::File::create(&log)?;

        // stdout and stderr go to a file, not a pipe: the shims containerd
        // starts may inherit them and outlive it.
        let daemon = Command::new("containerd")
            .arg("--config")
            .arg(&config)
            .args(["--log-level", "debug"])
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .spawn()
            .context("cannot start containerd")?;
        let containerd = Containerd {
            daemon: Some(daemon),
            dir: Some(dir),
            runtime_root: path.join("runtime"),
            fifo_dir: path.join("fifo"),
            path,
            socket,
            namespace: format!("pp-test-{}", std::process::id()),
            log,
            runtime,
        };
        containerd.wait_ready().with_context(|| {
            format!(
                "containerd did not come up\n--- containerd log ---\n{}",
                containerd.log_tail()
            )
        })?;
        Ok(containerd)
    }

    fn wait_ready(&self) -> Result<()> {
        wait_until("containerd's socket to accept connections", || {
            Ok(UnixStream::connect(&self.socket).is_ok())
        })?;
        let out = self.ctr(&["version"])?;
        ensure!(out.contains("Server:"), "unexpected `ctr version`: {out}");
        Ok(())
    }

    /// Runs `ctr --address <socket> --namespace <ns> ARGS`, failing on a
    /// non-zero exit; returns stdout.
    fn ctr(&self, args: &[&str]) -> Result<String> {
        let out = self.ctr_output(args)?;
        if !out.status.success() {
            bail!("`ctr {}` failed: {}", args.join(" "), describe(&out));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Runs ctr like [`Containerd::ctr`] but returns its output as is.
    fn ctr_output(&self, args: &[&str]) -> Result<Output> {
        output_within(&mut self.ctr_command(args), CTR_TIMEOUT)
            .with_context(|| format!("`ctr {}`", args.join(" ")))
    }

    /// `ctr --address <socket> --namespace <ns> ARGS`, not started.
    fn ctr_command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("ctr");
        cmd.arg("--address")
            .arg(&self.socket)
            .arg("--namespace")
            .arg(&self.namespace)
            .args(args)
            // ctr would take the snapshotter from here.
            .env_remove("CONTAINERD_SNAPSHOTTER");
        cmd
    }

    /// `ctr run` arguments: `flags`, no I/O, the runc shim pointed at the
    /// runtime under test (`BinaryName`, see the module documentation) with
    /// its state under the temp dir, then the image, `id` and `argv`.
    fn run_args<'a>(
        &'a self,
        flags: &[&'a str],
        id: &'a str,
        argv: &[&'a str],
    ) -> Result<Vec<&'a str>> {
        let mut args = vec!["run", "--null-io"];
        args.extend_from_slice(flags);
        args.extend([
            "--runc-binary",
            utf8(&self.runtime)?,
            "--runc-root",
            utf8(&self.runtime_root)?,
            "--fifo-dir",
            utf8(&self.fifo_dir)?,
            IMAGE,
            id,
        ]);
        args.extend_from_slice(argv);
        Ok(args)
    }

    /// Waits until `ctr task ls` shows the container's task in `status`.
    fn wait_for_task(&self, status: &str) -> Result<()> {
        let mut last = String::new();
        wait_until(&format!("task {CONTAINER} to be {status}"), || {
            last = self.ctr(&["task", "ls"])?;
            Ok(last.lines().skip(1).any(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                fields.first() == Some(&CONTAINER) && fields.last() == Some(&status)
            }))
        })
        .with_context(|| format!("last `ctr task ls`:\n{last}"))
    }

    /// Stops containerd and checks that nothing of the run is left: shims
    /// and runtime processes, mounts, the container's cgroups, the shim
    /// socket, the temp dir.
    fn shutdown(&mut self) -> Result<()> {
        // The shim exits on its own once its task is deleted.
        let mut strays = Vec::new();
        let gone = wait_until("the shim to exit", || {
            strays = self.strays();
            Ok(strays.is_empty())
        });
        self.stop_daemon()?;

        let mut left = Vec::new();
        if gone.is_err() {
            left.extend(
                strays
                    .iter()
                    .map(|(pid, argv)| format!("process {pid}: {argv}")),
            );
        }
        left.extend(self.mounts().iter().map(|m| format!("mount {m}")));
        for socket in CONTAINERS.map(|id| self.shim_socket(id)) {
            if socket.exists() {
                left.push(format!("shim socket {}", socket.display()));
            }
        }
        for cgroup in self.container_cgroups() {
            left.push(format!("cgroup {}", cgroup.display()));
        }
        if left.is_empty() {
            // The runtime creates the namespace's cgroup as the parent of
            // the container's (runc leaves it); it is this test's to remove.
            for cgroup in self.namespace_cgroups() {
                if let Err(err) = fs::remove_dir(&cgroup) {
                    left.push(format!("cgroup {} ({err})", cgroup.display()));
                }
            }
        }
        ensure!(left.is_empty(), "left behind:\n  {}", left.join("\n  "));

        if let Some(dir) = self.dir.take() {
            dir.close()
                .with_context(|| format!("cannot remove {}", self.path.display()))?;
        }
        ensure!(!self.path.exists(), "{} still exists", self.path.display());
        Ok(())
    }

    /// SIGTERM, then SIGKILL if containerd has not exited in time.
    fn stop_daemon(&mut self) -> Result<()> {
        let Some(mut daemon) = self.daemon.take() else {
            return Ok(());
        };
        signal(daemon.id(), libc::SIGTERM);
        let deadline = Instant::now() + WAIT_TIMEOUT;
        while Instant::now() < deadline {
            if daemon.try_wait()?.is_some() {
                return Ok(());
            }
            thread::sleep(Duration::from_millis(20));
        }
        daemon.kill()?;
        daemon.wait()?;
        bail!("containerd ignored SIGTERM for {WAIT_TIMEOUT:?}; killed it")
    }

    /// Processes other than containerd whose argv mentions the temp dir:
    /// its shims (`-address <socket>`) and runtime calls (`--root ...`).
    /// Zombies have no argv and do not count.
    fn strays(&self) -> Vec<(u32, String)> {
        let dir = self.path.as_os_str().as_bytes();
        let daemon = self.daemon.as_ref().map(Child::id);
        processes()
            .filter(|(pid, argv)| {
                Some(*pid) != daemon
                    && argv
                        .iter()
                        .any(|arg| arg.windows(dir.len()).any(|w| w == dir))
            })
            .map(|(pid, argv)| {
                let argv: Vec<_> = argv.iter().map(|a| String::from_utf8_lossy(a)).collect();
                (pid, argv.join(" "))
            })
            .collect()
    }

    /// The ttrpc socket of container `id`'s shim. containerd 1.6 puts it in
    /// `/run/containerd/s/`, whatever the state dir, named by the SHA-256 of
    /// `<containerd socket>/<namespace>/<id>`.
    fn shim_socket(&self, id: &str) -> PathBuf {
        let key = self.socket.join(&self.namespace).join(id);
        let digest = Sha256::digest(key.as_os_str().as_bytes());
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        Path::new("/run/containerd/s").join(hex)
    }

    /// The shim's socket from the `address` file (`unix://<path>`) in
    /// container `id`'s bundle, which exists from shim start to task delete.
    fn read_shim_address(&self, id: &str) -> Option<PathBuf> {
        let bundle = self
            .path
            .join("state/io.containerd.runtime.v2.task")
            .join(&self.namespace)
            .join(id);
        let address = fs::read_to_string(bundle.join("address")).ok()?;
        let path = address.trim().strip_prefix("unix://")?;
        Some(PathBuf::from(path))
    }

    /// Mount points under the temp dir, innermost last.
    fn mounts(&self) -> Vec<String> {
        let prefix = format!("{}/", self.path.display());
        mount_table()
            .into_iter()
            .map(|(point, _)| point)
            .filter(|point| point.starts_with(&prefix))
            .collect()
    }

    /// The containers' cgroups in every hierarchy where they still exist;
    /// containerd asks for cgroupsPath `/<namespace>/<id>`.
    fn container_cgroups(&self) -> Vec<PathBuf> {
        self.namespace_cgroups()
            .into_iter()
            .flat_map(|ns| CONTAINERS.map(|id| ns.join(id)))
            .filter(|p| p.exists())
            .collect()
    }

    /// The namespace's cgroup in every hierarchy where it exists.
    fn namespace_cgroups(&self) -> Vec<PathBuf> {
        mount_table()
            .into_iter()
            .filter(|(_, fstype)| fstype == "cgroup" || fstype == "cgroup2")
            .map(|(point, _)| Path::new(&point).join(&self.namespace))
            .filter(|p| p.exists())
            .collect()
    }

    /// The last lines of containerd's log.
    fn log_tail(&self) -> String {
        let log = fs::read_to_string(&self.log).unwrap_or_else(|err| format!("({err})"));
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
    }
}

impl Drop for Containerd {
    /// Best effort after a failure; after a passing run there is nothing
    /// left to do.
    fn drop(&mut self) {
        if self.daemon.is_some() {
            for id in CONTAINERS {
                let _ = self.ctr(&["task", "delete", "--force", id]);
                let _ = self.ctr(&["container", "delete", id]);
            }
            let _ = self.stop_daemon();
        }
        // The container's processes first: with its shim gone they would
        // be orphans.
        for cgroup in self.container_cgroups() {
            let procs = fs::read_to_string(cgroup.join("cgroup.procs")).unwrap_or_default();
            for pid in procs.lines().filter_map(|l| l.parse().ok()) {
                signal(pid, libc::SIGKILL);
            }
        }
        for (pid, _) in self.strays() {
            signal(pid, libc::SIGKILL);
        }
        for point in self.mounts().iter().rev() {
            if let Ok(point) = std::ffi::CString::new(point.as_str()) {
                // SAFETY: `point` is a valid NUL-terminated path; a lazy
                // unmount only affects that mount.
                unsafe { libc::umount2(point.as_ptr(), libc::MNT_DETACH) };
            }
        }
        // The killed processes need a moment to leave their cgroups.
        let _ = wait_until("cgroups to be removable", || {
            for cgroup in self.container_cgroups() {
                let _ = fs::remove_dir(cgroup);
            }
            for cgroup in self.namespace_cgroups() {
                let _ = fs::remove_dir(cgroup);
            }
            Ok(self.namespace_cgroups().is_empty())
        });
        // A shim killed above could not remove its socket; it is named
        // after this containerd's socket, so it is this test's.
        for socket in CONTAINERS.map(|id| self.shim_socket(id)) {
            let _ = fs::remove_file(socket);
        }
        // `dir` is removed when dropped.
    }
}

/// The containerd config: everything under `dir`, no CRI, and no other
/// snapshotter than overlayfs (the default one).
fn config_toml(dir: &Path, socket: &Path) -> Result<String> {
    let s = |p: PathBuf| -> Result<String> { Ok(serde_json::to_string(&p)?) };
    Ok(format!(
        r#"version = 2
root = {root}
state = {state}
disabled_plugins = [
  "io.containerd.grpc.v1.cri",
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
]

[grpc]
  address = {socket}

# Defaults to /opt/containerd.
[plugins."io.containerd.internal.v1.opt"]
  path = {opt}
"#,
        root = s(dir.join("root"))?,
        state = s(dir.join("state"))?,
        socket = s(socket.to_path_buf())?,
        opt = s(dir.join("opt"))?,
    ))
}

/// Builds the busybox image archive with the repository's script.
fn build_image(archive: &Path) -> Result<()> {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("tests crate has no parent dir")?;
    let script = repo.join("scripts/oci-image.sh");
    let mut cmd = Command::new("bash");
    cmd.arg(&script).arg(archive).arg(IMAGE);
    let out = output_within(&mut cmd, Duration::from_secs(30))?;
    ensure!(
        out.status.success(),
        "{} failed: {}",
        script.display(),
        describe(&out)
    );
    Ok(())
}

/// `$PEAPOD_RUNTIME`, else `peapod-runtime` in this test's target dir
/// (the test is `target/<profile>/deps/containerd-<hash>`), made absolute
/// because the shim runs it from the bundle dir.
fn runtime_binary() -> Result<PathBuf> {
    let path = match std::env::var_os("PEAPOD_RUNTIME") {
        Some(path) => PathBuf::from(path),
        None => {
            let exe = std::env::current_exe()?;
            exe.parent()
                .and_then(Path::parent)
                .context("test executable has no target dir")?
                .join("peapod-runtime")
        }
    };
    fs::canonicalize(&path).with_context(|| {
        format!(
            "runtime {} not found: build it (`cargo build -p peapod-runtime`) \
             or set PEAPOD_RUNTIME",
            path.display()
        )
    })
}

fn require_root() {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        panic!("this test runs containerd and containers: run it as root");
    }
}

fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// Runs `cmd` with no stdin, collecting its output; kills it after `timeout`.
fn output_within(cmd: &mut Command, timeout: Duration) -> Result<Output> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run {:?}", cmd.get_program()))?;
    // Read both pipes while waiting, so a chatty child cannot block on one.
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut buf);
            }
            buf
        })
    };
    let stdout = drain(child.stdout.take().map(|p| Box::new(p) as _));
    let stderr = drain(child.stderr.take().map(|p| Box::new(p) as _));
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let out = Output {
                status: child.wait()?,
                stdout: stdout.join().unwrap_or_default(),
                stderr: stderr.join().unwrap_or_default(),
            };
            bail!("timed out after {timeout:?}: {}", describe(&out));
        }
        thread::sleep(Duration::from_millis(20));
    };
    Ok(Output {
        status,
        stdout: stdout
            .join()
            .map_err(|_| anyhow!("stdout reader panicked"))?,
        stderr: stderr
            .join()
            .map_err(|_| anyhow!("stderr reader panicked"))?,
    })
}

/// Polls `done` every 50 ms until it is true or [`WAIT_TIMEOUT`] passes.
fn wait_until(what: &str, mut done: impl FnMut() -> Result<bool>) -> Result<()> {
    let deadline = Instant::now() + WAIT_TIMEOUT;
    loop {
        if done()? {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("timed out after {WAIT_TIMEOUT:?} waiting for {what}");
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// Every process with its argv (empty for zombies and kernel threads).
fn processes() -> impl Iterator<Item = (u32, Vec<Vec<u8>>)> {
    fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let pid = entry.file_name().to_str()?.parse().ok()?;
            let cmdline = fs::read(entry.path().join("cmdline")).ok()?;
            let argv = cmdline
                .split(|&b| b == 0)
                .filter(|a| !a.is_empty())
                .map(<[u8]>::to_vec)
                .collect();
            Some((pid, argv))
        })
}

/// (mount point, fs type) of every mount in this mount namespace, in
/// mount order.
fn mount_table() -> Vec<(String, String)> {
    let table = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    table
        .lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let point = left.split(' ').nth(4)?;
            let fstype = right.split(' ').next()?;
            Some((point.to_string(), fstype.to_string()))
        })
        .collect()
}

fn signal(pid: u32, sig: libc::c_int) {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return;
    };
    // SAFETY: kill has no memory-safety preconditions; `pid` is a single
    // positive PID (never 0 or -1), so no process group is signalled.
    if pid > 0 {
        unsafe { libc::kill(pid, sig) };
    }
}

/// `path` as a command-line argument for ctr.
fn utf8(path: &Path) -> Result<&str> {
    path.to_str()
        .with_context(|| format!("{} is not UTF-8", path.display()))
}

fn describe(out: &Output) -> String {
    format!(
        "{}, stdout {:?}, stderr {:?}",
        out.status,
        String::from_utf8_lossy(&out.stdout).trim_end(),
        String::from_utf8_lossy(&out.stderr).trim_end()
    )
}
