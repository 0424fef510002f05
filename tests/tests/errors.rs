//! Errors: each fails with a non-zero exit, says why on stderr, and leaves
//! no container behind. Messages are checked only loosely, for what a runc
//! user would recognise (the id, the file, the program).

use std::fs;

use serde_json::json;

use peapod_tests::host::unique_suffix;
use peapod_tests::{Bundle, Container, Output};

/// Panics unless `out` failed and its stderr mentions one of `needles`.
#[track_caller]
fn assert_fails_mentioning(out: Output, needles: &[&str]) {
    let out = out.failed();
    assert!(
        needles.iter().any(|n| out.stderr.contains(n)),
        "stderr mentions none of {needles:?}: {out}"
    );
}

#[test]
fn unknown_id_is_an_error_for_every_command() {
    let ctr = Container::new(Bundle::new());
    let id = format!("pp-nosuch-{}", unique_suffix());
    for args in [
        vec!["state", &id],
        vec!["start", &id],
        vec!["kill", &id, "KILL"],
        vec!["delete", &id],
        vec!["ps", &id],
        vec!["exec", &id, "true"],
    ] {
        // runc says "container does not exist" without the id; naming the id is better.
        assert_fails_mentioning(ctr.cmd(&args), &[&id, "does not exist"]);
    }
}

// runtime-tools: create, state (the cases without an id)
#[test]
fn a_missing_id_is_an_error_for_every_command() {
    let ctr = Container::new(Bundle::new());
    let bundle = ctr.bundle().path().to_str().unwrap().to_owned();
    for args in [
        vec!["create", "--bundle", &bundle],
        vec!["state"],
        vec!["start"],
        vec!["kill"],
        vec!["delete"],
    ] {
        ctr.cmd(&args).failed();
    }
    ctr.assert_nothing_left();
}

#[test]
fn delete_force_is_idempotent() {
    // As runc: `delete --force` of an id that is gone succeeds, so callers
    // can clean up without checking first.
    let ctr = Container::with_args(&["sleep", "1000"]);
    ctr.create();
    assert_eq!(ctr.status(), "created");
    ctr.delete_force();
    ctr.cmd(["state", ctr.id()]).failed();
    ctr.delete_force();
    ctr.cmd([
        "delete",
        "--force",
        &format!("pp-nosuch-{}", unique_suffix()),
    ])
    .ok();
}

#[test]
fn duplicate_id_on_create() {
    let ctr = Container::with_args(&["sleep", "1000"]);
    ctr.create();
    let pid = ctr.pid();
    assert_fails_mentioning(ctr.create_with(&[]), &[ctr.id(), "already exists"]);
    assert_eq!(ctr.pid(), pid, "the first container must be untouched");
    assert_eq!(ctr.status(), "created");
}

#[test]
fn bundle_without_config_json() {
    let ctr = Container::new(Bundle::new());
    fs::remove_file(ctr.bundle().path().join("config.json")).unwrap();
    assert_fails_mentioning(ctr.create_with(&[]), &["config.json"]);
    ctr.assert_nothing_left();
}

#[test]
fn nonexistent_bundle_dir() {
    let ctr = Container::new(Bundle::new());
    let missing = format!("/nonexistent-bundle-{}", unique_suffix());
    assert_fails_mentioning(
        ctr.cmd(["create", "--bundle", &missing, ctr.id()]),
        &[&missing, "config.json"],
    );
    ctr.assert_nothing_left();
}

#[test]
fn malformed_config_json() {
    let ctr = Container::new(Bundle::new());
    fs::write(
        ctr.bundle().path().join("config.json"),
        "{ \"ociVersion\": ",
    )
    .unwrap();
    let out = ctr.create_with(&[]).failed();
    assert!(!out.stderr.trim().is_empty(), "{out}");
    ctr.assert_nothing_left();
}

#[test]
fn missing_rootfs() {
    let ctr = Container::new(Bundle::new());
    fs::remove_dir_all(ctr.bundle().rootfs()).unwrap();
    assert_fails_mentioning(ctr.create_with(&[]), &["rootfs"]);
    ctr.assert_nothing_left();
}

#[test]
fn nonexistent_executable_by_path() {
    let ctr = Container::with_args(&["/bin/pp-no-such-program"]);
    assert_fails_mentioning(ctr.create_with(&[]), &["/bin/pp-no-such-program"]);
    ctr.assert_nothing_left();
}

#[test]
fn nonexistent_executable_on_path() {
    let ctr = Container::with_args(&["pp-no-such-program"]);
    assert_fails_mentioning(ctr.run(), &["pp-no-such-program"]);
    ctr.assert_nothing_left();
}

#[test]
fn start_of_a_running_container_fails() {
    let ctr = Container::with_args(&["sleep", "1000"]);
    ctr.run_detached();
    assert_fails_mentioning(ctr.cmd(["start", ctr.id()]), &["running"]);
    assert_eq!(ctr.status(), "running");
}

#[test]
fn start_of_a_stopped_container_fails() {
    let ctr = Container::with_args(&["true"]);
    ctr.run_detached();
    ctr.wait_for_status("stopped");
    assert_fails_mentioning(ctr.cmd(["start", ctr.id()]), &["stopped"]);
}

#[test]
fn kill_with_an_unknown_signal_fails() {
    let ctr = Container::with_args(&["sleep", "1000"]);
    ctr.run_detached();
    assert_fails_mentioning(ctr.kill("SIGBOGUS"), &["SIGBOGUS", "BOGUS"]);
    assert_eq!(ctr.status(), "running");
}

#[test]
fn kill_of_a_stopped_container_fails() {
    let ctr = Container::with_args(&["true"]);
    ctr.run_detached();
    ctr.wait_for_status("stopped");
    assert_fails_mentioning(ctr.kill("KILL"), &["not running", "stopped"]);
}

#[test]
fn invalid_ids_are_rejected() {
    let ctr = Container::with_args(&["true"]);
    for id in ["../escape", "a/b", ""] {
        let out = ctr.cmd([
            "create",
            "--bundle",
            ctr.bundle().path().to_str().unwrap(),
            id,
        ]);
        out.failed();
    }
    assert!(!ctr.root().parent().unwrap().join("escape").exists());
    ctr.assert_nothing_left();
}

#[test]
fn unknown_mount_type_fails_create() {
    let mut bundle = Bundle::new();
    bundle.args(&["true"]);
    bundle.mount(json!({ "destination": "/x", "type": "pp-no-such-fs", "source": "none" }));
    let ctr = Container::new(bundle);
    assert_fails_mentioning(ctr.create_with(&[]), &["/x", "pp-no-such-fs"]);
    ctr.assert_nothing_left();
}

#[test]
fn a_closed_stdout_ends_the_output_without_a_panic() {
    // `state ID | grep -q running` closes the pipe early; the runtime must not
    // panic or die of it.
    let (read, write) = nix::unistd::pipe().expect("pipe");
    drop(read);
    let out = std::process::Command::new(peapod_tests::runtime_path())
        .arg("features")
        .stdout(std::process::Stdio::from(write))
        .stderr(std::process::Stdio::piped())
        .output()
        .expect("run the runtime");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(out.status.code(), Some(0), "{stderr}");
}
