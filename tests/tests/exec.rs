//! Exec: a new process in a running container's namespaces and cgroups,
//! with `--process`, `--env`, `--cwd`, `--user`, `--detach --pid-file`,
//! exit code propagation and `--tty` over a console socket.

use std::fs;
use std::path::PathBuf;

use serde_json::json;

use peapod_tests::cli::runc_version;
use peapod_tests::host::{ns_link, process_gone, wait_for_file};
use peapod_tests::{Bundle, ConsoleSocket, Container};

/// A running container (hostname `pp-exec`, init `sleep`) and its shared dir.
fn running() -> (Container, PathBuf) {
    let mut bundle = Bundle::new();
    let shared = bundle.share();
    bundle.spec["hostname"] = json!("pp-exec");
    bundle.args(&["sleep", "1000"]);
    let ctr = Container::new(bundle);
    ctr.run_detached();
    (ctr, shared)
}

#[test]
fn exec_joins_the_containers_namespaces() {
    let (ctr, _) = running();
    let init = ctr.pid().to_string();
    let out = ctr
        .exec(
            &[],
            &["sh", "-c", "echo $$; hostname; for ns in pid net ipc uts mnt; do readlink /proc/self/ns/$ns; done"],
        )
        .ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    let pid: i32 = lines[0].parse().expect("a pid");
    assert!(
        pid > 1,
        "the exec'd shell is not the container's init: {out}"
    );
    assert_eq!(lines[1], "pp-exec", "{out}");
    let expected: Vec<String> = ["pid", "net", "ipc", "uts", "mnt"]
        .iter()
        .map(|ns| ns_link(&init, ns))
        .collect();
    assert_eq!(lines[2..], expected, "{out}");
}

#[test]
fn exec_runs_in_the_containers_cgroups() {
    let (ctr, _) = running();
    let init = fs::read_to_string(format!("/proc/{}/cgroup", ctr.pid())).unwrap();
    let out = ctr.exec(&[], &["cat", "/proc/self/cgroup"]).ok();
    assert_eq!(out.stdout, init);
}

#[test]
fn exec_exit_code_propagates() {
    let (ctr, _) = running();
    let out = ctr.exec(&[], &["sh", "-c", "echo partial; exit 3"]);
    assert_eq!(out.code, 3, "{out}");
    assert_eq!(out.stdout, "partial\n");
    assert_eq!(
        ctr.status(),
        "running",
        "a failing exec must not stop the container"
    );
}

#[test]
fn exec_with_a_process_file() {
    let (ctr, _) = running();
    let process = ctr.bundle().path().join("process.json");
    let spec = json!({
        "terminal": false,
        "user": { "uid": 1000, "gid": 1000 },
        "args": ["sh", "-c", "id -u; id -g; pwd; echo $FOO"],
        "env": ["PATH=/bin", "FOO=from-json"],
        "cwd": "/tmp",
    });
    fs::write(&process, spec.to_string()).unwrap();
    let out = ctr
        .exec(&["--process", process.to_str().unwrap()], &[])
        .ok();
    assert_eq!(out.stdout, "1000\n1000\n/tmp\nfrom-json\n");
}

#[test]
fn exec_env_and_cwd() {
    let (ctr, _) = running();
    let out = ctr
        .exec(
            &["--env", "FOO=bar", "--env", "BAZ=qux quux", "--cwd", "/etc"],
            &["sh", "-c", "echo $FOO; echo $BAZ; pwd; echo $PATH"],
        )
        .ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines[..3], ["bar", "qux quux", "/etc"], "{out}");
    // The container's configured env is the base that --env adds to.
    assert!(lines[3].contains("/bin"), "{out}");
}

#[test]
fn exec_as_another_user() {
    let (ctr, _) = running();
    let out = ctr
        .exec(&["--user", "1000:1000"], &["sh", "-c", "id -u; id -g"])
        .ok();
    assert_eq!(out.stdout, "1000\n1000\n");
    let out = ctr.exec(&["--user", "65534"], &["id", "-u"]).ok();
    assert_eq!(out.stdout, "65534\n");
}

#[test]
fn exec_detach_writes_the_pid_file() {
    let (ctr, shared) = running();
    let pid_file = ctr.bundle().path().join("exec.pid");
    ctr.exec(
        &["--detach", "--pid-file", pid_file.to_str().unwrap()],
        &["sh", "-c", "echo $$ > /shared/ready; exec sleep 1000"],
    )
    .ok();
    wait_for_file(&shared.join("ready"));
    let pid: i32 = fs::read_to_string(&pid_file)
        .expect("the pid file")
        .trim()
        .parse()
        .expect("a pid");
    assert!(!process_gone(pid), "the detached process is not running");
    let init = ctr.pid().to_string();
    assert_eq!(ns_link(&pid.to_string(), "pid"), ns_link(&init, "pid"));
    let listed = ctr.cmd(["ps", "--format", "json", ctr.id()]).ok().json();
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p.as_i64() == Some(pid as i64)),
        "ps does not list the exec'd process {pid}: {listed}"
    );
}

#[test]
fn exec_tty_sends_the_pty_master_over_the_console_socket() {
    let (ctr, _) = running();
    let socket = ConsoleSocket::new();
    ctr.exec(
        &[
            "--tty",
            "--detach",
            "--console-socket",
            socket.path().to_str().unwrap(),
        ],
        &["sh"],
    )
    .ok();
    let mut pty = socket.receive_pty();
    // The echoed input holds the expressions, only the output their values.
    pty.send_line("echo pp-$((6*7)); [ -t 0 ] && echo tty-$((1+1)); hostname");
    let seen = pty.read_until("pp-exec\r\n");
    assert!(seen.contains("pp-42\r\ntty-2\r\npp-exec\r\n"), "{seen:?}");
    pty.send_line("exit");
}

#[test]
fn exec_into_a_stopped_container_fails() {
    let ctr = Container::with_args(&["true"]);
    ctr.run_detached();
    ctr.wait_for_status("stopped");
    let out = ctr.exec(&[], &["true"]).failed();
    assert!(!out.stderr.is_empty(), "{out}");
}

#[test]
fn exec_without_a_mount_namespace_sees_the_containers_root() {
    // runc allows a container in the host's mount namespace; its processes are
    // confined to the rootfs by chroot, and so must an exec'd one be.
    if runc_version().is_some() {
        // runc 1.1 execs such a process at the host's root and leaves the
        // container's mounts on the host: not run against runc.
        eprintln!("runc does not confine exec without a mount namespace; not checked");
        return;
    }
    let mut bundle = Bundle::new();
    bundle.without_namespace("mount");
    // runc refuses masked and read-only paths without a mount namespace.
    bundle.spec["linux"]["maskedPaths"] = json!([]);
    bundle.spec["linux"]["readonlyPaths"] = json!([]);
    bundle.args(&["sleep", "1000"]);
    fs::write(bundle.rootfs().join("pp-exec-marker"), "inside\n").unwrap();
    let ctr = Container::new(bundle);
    ctr.run_detached();
    let out = ctr.exec(&[], &["cat", "/pp-exec-marker"]).ok();
    assert_eq!(out.stdout, "inside\n", "{out}");
    ctr.delete_force();
}
