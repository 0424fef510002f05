//! The container process: args, env, cwd, user, umask, rlimits,
//! noNewPrivileges, capabilities and oomScoreAdj, as seen from inside.

use nix::sys::resource::{getrlimit, Resource};
use serde_json::json;

use peapod_tests::cli::runc_version;
use peapod_tests::spec::cap_mask;
use peapod_tests::{Bundle, Container};

/// Runs `script` with `sh -c` in a container made from `bundle` and returns
/// its standard output; panics unless it exits 0.
#[track_caller]
fn output_of(mut bundle: Bundle, script: &str) -> String {
    bundle.sh(script);
    Container::new(bundle).run().ok().stdout
}

/// The value of `key:` in a `/proc/<pid>/status` text.
#[track_caller]
fn status_field<'a>(status: &'a str, key: &str) -> &'a str {
    status
        .lines()
        .find_map(|line| line.strip_prefix(key)?.strip_prefix(':'))
        .unwrap_or_else(|| panic!("no {key} in {status}"))
        .trim()
}

#[test]
fn args_are_passed_verbatim() {
    let mut bundle = Bundle::new();
    bundle.args(&[
        "sh",
        "-c",
        "printf '%s|' \"$0\" \"$@\"",
        "zero",
        "a b",
        "",
        "c'd\"e",
    ]);
    let out = Container::new(bundle).run().ok();
    assert_eq!(out.stdout, "zero|a b||c'd\"e|");
}

#[test]
fn program_is_looked_up_in_the_container_path() {
    let mut bundle = Bundle::new();
    bundle.args(&["echo", "found"]);
    let out = Container::new(bundle).run().ok();
    assert_eq!(out.stdout, "found\n");
}

#[test]
fn env_is_the_configured_env_and_nothing_of_the_host() {
    let mut bundle = Bundle::new();
    bundle.spec["process"]["env"] = json!(["PATH=/bin", "FOO=bar baz", "EMPTY=", "HOME=/x"]);
    let out = output_of(bundle, "env");
    let vars: Vec<&str> = out.lines().collect();
    for expected in ["PATH=/bin", "FOO=bar baz", "EMPTY=", "HOME=/x"] {
        assert!(vars.contains(&expected), "{expected} missing from {vars:?}");
    }
    // cargo sets CARGO_* for test binaries: the runtime must not pass them on.
    assert!(
        !vars.iter().any(|v| v.starts_with("CARGO")),
        "host env leaked: {vars:?}"
    );
}

#[test]
fn home_defaults_to_the_users_passwd_entry() {
    let mut bundle = Bundle::new();
    bundle.spec["process"]["env"] = json!(["PATH=/bin"]);
    assert_eq!(output_of(bundle, "echo $HOME"), "/root\n");

    let mut bundle = Bundle::new();
    bundle.spec["process"]["env"] = json!(["PATH=/bin"]);
    bundle.spec["process"]["user"] = json!({ "uid": 1000, "gid": 1000 });
    assert_eq!(output_of(bundle, "echo $HOME"), "/home/user\n");
}

#[test]
fn cwd_is_the_configured_directory() {
    let mut bundle = Bundle::new();
    bundle.spec["process"]["cwd"] = json!("/etc");
    assert_eq!(output_of(bundle, "pwd"), "/etc\n");
}

#[test]
fn missing_cwd_is_created() {
    // runc creates a missing cwd (inside the rootfs) rather than failing.
    let mut bundle = Bundle::new();
    bundle.spec["root"]["readonly"] = json!(false);
    bundle.spec["process"]["cwd"] = json!("/work/here");
    assert_eq!(output_of(bundle, "pwd"), "/work/here\n");
}

#[test]
fn user_uid_gid_and_additional_gids() {
    let mut bundle = Bundle::new();
    bundle.spec["process"]["user"] =
        json!({ "uid": 1000, "gid": 1000, "additionalGids": [5, 100] });
    let out = output_of(bundle, "id -u; id -g; id -G; id -un");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[..2], ["1000", "1000"], "{out}");
    let mut groups: Vec<u32> = lines[2]
        .split_whitespace()
        .map(|g| g.parse().unwrap())
        .collect();
    groups.sort_unstable();
    assert_eq!(groups, [5, 100, 1000], "{out}");
    assert_eq!(lines[3], "user", "{out}");
}

#[test]
fn root_user_has_no_additional_groups_unless_configured() {
    let out = output_of(Bundle::new(), "id -u; id -G");
    assert_eq!(out, "0\n0\n");
}

#[test]
fn user_nobody() {
    let mut bundle = Bundle::new();
    bundle.spec["process"]["user"] = json!({ "uid": 65534, "gid": 65534 });
    assert_eq!(output_of(bundle, "id -un; id -gn"), "nobody\nnogroup\n");
}

#[test]
fn umask_from_config() {
    let mut bundle = Bundle::new();
    bundle.spec["process"]["user"]["umask"] = json!(0o077);
    bundle.spec["root"]["readonly"] = json!(false);
    let out = output_of(bundle, "umask; touch /tmp/f; stat -c %a /tmp/f");
    assert_eq!(out, "0077\n600\n");
}

#[test]
fn umask_defaults_to_0022() {
    assert_eq!(output_of(Bundle::new(), "umask"), "0022\n");
}

#[test]
fn rlimits_are_applied() {
    // Stay within this process's own hard limits: raising a hard limit needs
    // CAP_SYS_RESOURCE, which root does not always have (not on our CI).
    let (_, nofile_hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    let (_, nproc_hard) = getrlimit(Resource::RLIMIT_NPROC).unwrap();
    let nofile = (nofile_hard.min(512), nofile_hard.min(1024));
    let nproc = (nproc_hard.min(1000), nproc_hard.min(2000));
    let mut bundle = Bundle::new();
    bundle.spec["process"]["rlimits"] = json!([
        { "type": "RLIMIT_NOFILE", "soft": nofile.0, "hard": nofile.1 },
        { "type": "RLIMIT_NPROC", "soft": nproc.0, "hard": nproc.1 },
    ]);
    let out = output_of(
        bundle,
        "ulimit -n; ulimit -Hn; ulimit -u; ulimit -Hu; cat /proc/self/limits",
    );
    let lines: Vec<&str> = out.lines().collect();
    let expected = [nofile.0, nofile.1, nproc.0, nproc.1].map(|n| n.to_string());
    assert_eq!(lines[..4], expected, "{out}");
    let limits = |name: &str| -> Vec<String> {
        let line = lines
            .iter()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("{name} not in {out}"));
        line[name.len()..]
            .split_whitespace()
            .take(2)
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(
        limits("Max open files"),
        [nofile.0.to_string(), nofile.1.to_string()]
    );
    assert_eq!(
        limits("Max processes"),
        [nproc.0.to_string(), nproc.1.to_string()]
    );
}

#[test]
fn no_new_privileges_on_and_off() {
    let mut bundle = Bundle::new();
    bundle.spec["process"]["noNewPrivileges"] = json!(true);
    let out = output_of(bundle, "cat /proc/self/status");
    assert_eq!(status_field(&out, "NoNewPrivs"), "1");

    let mut bundle = Bundle::new();
    bundle.spec["process"]["noNewPrivileges"] = json!(false);
    let out = output_of(bundle, "cat /proc/self/status");
    assert_eq!(status_field(&out, "NoNewPrivs"), "0");
}

/// Checks every capability set in `/proc/self/status` of a container whose
/// process runs as `user` with `caps`.
///
/// `caps` must be what the kernel leaves after `execve` of a file without
/// file capabilities: for root, effective = permitted (root's exec raises
/// effective to permitted, and no_new_privs keeps permitted from growing
/// past what the runtime set); for other users, permitted = effective =
/// ambient. Ambient capabilities must also be permitted and inheritable.
#[track_caller]
fn check_capabilities(user: serde_json::Value, caps: serde_json::Value) {
    let mut bundle = Bundle::new();
    bundle.spec["process"]["user"] = user;
    bundle.spec["process"]["capabilities"] = caps.clone();
    let out = output_of(bundle, "cat /proc/self/status");
    for (key, set) in [
        ("CapBnd", "bounding"),
        ("CapEff", "effective"),
        ("CapPrm", "permitted"),
        ("CapInh", "inheritable"),
        ("CapAmb", "ambient"),
    ] {
        let names: Vec<&str> = caps[set]
            .as_array()
            .map(|a| a.iter().map(|c| c.as_str().unwrap()).collect())
            .unwrap_or_default();
        let shown = u64::from_str_radix(status_field(&out, key), 16).expect("a hex mask");
        assert_eq!(
            shown,
            cap_mask(&names),
            "{key} ({set}) is {shown:#x}, expected {names:?}"
        );
    }
}

#[test]
fn capabilities_match_the_config() {
    let permitted = json!([
        "CAP_CHOWN",
        "CAP_KILL",
        "CAP_NET_BIND_SERVICE",
        "CAP_SYS_ADMIN"
    ]);
    check_capabilities(
        json!({ "uid": 0, "gid": 0 }),
        json!({
            "bounding": ["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_SETUID", "CAP_SYS_ADMIN"],
            "permitted": permitted,
            "effective": permitted,
            "inheritable": ["CAP_NET_BIND_SERVICE"],
            "ambient": ["CAP_NET_BIND_SERVICE"],
        }),
    );
}

#[test]
fn capabilities_of_a_non_root_user() {
    // Ambient capabilities are how a non-root program keeps any.
    let caps = json!(["CAP_KILL", "CAP_NET_BIND_SERVICE"]);
    check_capabilities(
        json!({ "uid": 1000, "gid": 1000 }),
        json!({
            "bounding": ["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
            "permitted": caps,
            "effective": caps,
            "inheritable": caps,
            "ambient": caps,
        }),
    );
}

#[test]
fn no_capabilities_at_all() {
    check_capabilities(json!({ "uid": 0, "gid": 0 }), json!({}));
}

#[test]
fn positive_oom_score_adj() {
    let mut bundle = Bundle::new();
    bundle.spec["process"]["oomScoreAdj"] = json!(100);
    assert_eq!(output_of(bundle, "cat /proc/self/oom_score_adj"), "100\n");
}

#[test]
fn negative_oom_score_adj_does_not_fail_the_container() {
    // Lowering oom_score_adj below 0 needs CAP_SYS_RESOURCE. Where root has
    // it, the value must be applied; where it does not (our CI), the
    // container must still run, keeping the score it inherited.
    let mut bundle = Bundle::new();
    bundle.spec["process"]["oomScoreAdj"] = json!(-500);
    bundle.sh("cat /proc/self/oom_score_adj");
    let out = Container::new(bundle).run();
    if can_lower_oom_score_adj() {
        assert_eq!(out.clone().ok().stdout, "-500\n");
    } else if runc_version().is_some() && !out.success() {
        // runc fails the container here ("nsexec: failed to update
        // /proc/self/oom_score_adj: Permission denied"); peapod must not.
        assert!(out.stderr.contains("oom_score_adj"), "{out}");
    } else {
        let score: i32 = out.clone().ok().stdout.trim().parse().expect("a number");
        assert!(score >= 0, "{out}");
    }
}

/// Whether this process may set a negative `oom_score_adj` (has
/// CAP_SYS_RESOURCE), tried in a throwaway child so ours stays as it is.
fn can_lower_oom_score_adj() -> bool {
    std::process::Command::new("sh")
        .args(["-c", "echo -1 > /proc/self/oom_score_adj"])
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The line of the host's /proc/keys naming the session keyring of `id`, if any.
fn session_keyring_of(id: &str) -> Option<String> {
    let keys = std::fs::read_to_string("/proc/keys").expect("read /proc/keys");
    let name = format!("_ses.{id}:");
    keys.lines().find(|l| l.contains(&name)).map(str::to_owned)
}

#[test]
fn the_container_gets_a_session_keyring_of_its_own() {
    let ctr = Container::with_args(&["sleep", "1000"]);
    ctr.run_detached();
    let line = session_keyring_of(ctr.id()).expect("no _ses.<id> keyring in /proc/keys");
    assert!(line.contains("perm 3f1b0000"), "{line}");
    ctr.delete_force();

    let ctr = Container::with_args(&["sleep", "1000"]);
    ctr.run_with(&["--detach", "--no-new-keyring"]).ok();
    assert_eq!(session_keyring_of(ctr.id()), None);
}
