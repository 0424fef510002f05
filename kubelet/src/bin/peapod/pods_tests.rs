//! kubectl's pod printer rules, on hand-made pod statuses.

use super::*;
use k8s_openapi::api::core::v1::{
    Container, ContainerState, ContainerStateRunning, ContainerStateTerminated,
    ContainerStateWaiting, PodCondition, PodSpec, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

fn at(seconds: i64) -> Timestamp {
    Timestamp::from_second(1_700_000_000 + seconds).unwrap()
}

fn running() -> ContainerState {
    ContainerState {
        running: Some(ContainerStateRunning::default()),
        ..Default::default()
    }
}

fn waiting(reason: &str) -> ContainerState {
    ContainerState {
        waiting: Some(ContainerStateWaiting {
            reason: Some(reason.into()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn terminated(code: i32, reason: Option<&str>, signal: Option<i32>) -> ContainerState {
    ContainerState {
        terminated: Some(ContainerStateTerminated {
            exit_code: code,
            reason: reason.map(Into::into),
            signal,
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn status(name: &str, state: ContainerState, ready: bool, restarts: i32) -> ContainerStatus {
    ContainerStatus {
        name: name.into(),
        state: Some(state),
        ready,
        restart_count: restarts,
        ..Default::default()
    }
}

/// A pod with containers `app` and `side` (and init containers `init0`, `init1` if `init`).
fn pod(phase: &str, init: bool) -> Pod {
    let container = |name: &str| Container {
        name: name.into(),
        ..Default::default()
    };
    Pod {
        spec: Some(PodSpec {
            containers: vec![container("app"), container("side")],
            init_containers: init.then(|| vec![container("init0"), container("init1")]),
            ..Default::default()
        }),
        status: Some(PodStatus {
            phase: Some(phase.into()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn with(mut pod: Pod, apps: Vec<ContainerStatus>, inits: Vec<ContainerStatus>) -> Pod {
    let status = pod.status.as_mut().unwrap();
    status.container_statuses = Some(apps);
    if !inits.is_empty() {
        status.init_container_statuses = Some(inits);
    }
    pod
}

fn cells(pod: &Pod) -> (String, String) {
    let s = summarize(pod);
    (s.ready, s.status)
}

#[test]
fn running_pending_and_waiting_reasons() {
    let both = with(
        pod("Running", false),
        vec![
            status("app", running(), true, 0),
            status("side", running(), true, 0),
        ],
        vec![],
    );
    assert_eq!(cells(&both), ("2/2".into(), "Running".into()));
    assert_eq!(
        cells(&pod("Pending", false)),
        ("0/2".into(), "Pending".into())
    );
    let creating = with(
        pod("Pending", false),
        vec![
            status("app", waiting("ContainerCreating"), false, 0),
            status("side", running(), true, 0),
        ],
        vec![],
    );
    assert_eq!(cells(&creating), ("1/2".into(), "ContainerCreating".into()));
    let crashing = with(
        pod("Running", false),
        vec![
            status("app", waiting("CrashLoopBackOff"), false, 4),
            status("side", running(), true, 0),
        ],
        vec![],
    );
    assert_eq!(cells(&crashing), ("1/2".into(), "CrashLoopBackOff".into()));
    let mut evicted = pod("Failed", false);
    evicted.status.as_mut().unwrap().reason = Some("Evicted".into());
    assert_eq!(cells(&evicted).1, "Evicted");
}

#[test]
fn terminated_containers() {
    let done = with(
        pod("Succeeded", false),
        vec![
            status("app", terminated(0, Some("Completed"), None), false, 0),
            status("side", terminated(0, Some("Completed"), None), false, 0),
        ],
        vec![],
    );
    assert_eq!(cells(&done), ("0/2".into(), "Completed".into()));
    let error = with(
        pod("Failed", false),
        vec![
            status("app", terminated(1, Some("Error"), None), false, 0),
            status("side", terminated(0, Some("Completed"), None), false, 0),
        ],
        vec![],
    );
    // kubectl reads the statuses last to first: the first container has the last word.
    assert_eq!(cells(&error).1, "Error");
    let signal = with(
        pod("Failed", false),
        vec![status("app", terminated(137, None, Some(9)), false, 0)],
        vec![],
    );
    assert_eq!(cells(&signal).1, "Signal:9");
    let code = with(
        pod("Failed", false),
        vec![status("app", terminated(3, None, None), false, 0)],
        vec![],
    );
    assert_eq!(cells(&code).1, "ExitCode:3");
}

#[test]
fn completed_beside_a_running_container_is_running_or_not_ready() {
    let mixed = |ready_condition: bool| {
        let mut p = with(
            pod("Running", false),
            vec![
                status("app", running(), true, 0),
                status("side", terminated(0, Some("Completed"), None), false, 0),
            ],
            vec![],
        );
        p.status.as_mut().unwrap().conditions = Some(vec![PodCondition {
            type_: "Ready".into(),
            status: if ready_condition { "True" } else { "False" }.into(),
            ..Default::default()
        }]);
        cells(&p).1
    };
    assert_eq!(mixed(true), "Running");
    assert_eq!(mixed(false), "NotReady");
}

#[test]
fn init_containers() {
    let first = with(
        pod("Pending", true),
        vec![],
        vec![
            status("init0", running(), false, 0),
            status("init1", waiting("PodInitializing"), false, 0),
        ],
    );
    assert_eq!(cells(&first).1, "Init:0/2");
    let second = with(
        pod("Pending", true),
        vec![],
        vec![
            status("init0", terminated(0, Some("Completed"), None), false, 0),
            status("init1", running(), false, 0),
        ],
    );
    assert_eq!(cells(&second).1, "Init:1/2");
    let failed = with(
        pod("Pending", true),
        vec![],
        vec![status(
            "init0",
            terminated(1, Some("Error"), None),
            false,
            0,
        )],
    );
    assert_eq!(cells(&failed).1, "Init:Error");
    let code = with(
        pod("Pending", true),
        vec![],
        vec![status("init0", terminated(2, None, None), false, 0)],
    );
    assert_eq!(cells(&code).1, "Init:ExitCode:2");
    let backoff = with(
        pod("Pending", true),
        vec![],
        vec![status("init0", waiting("CrashLoopBackOff"), false, 3)],
    );
    let summary = summarize(&backoff);
    assert_eq!(
        (summary.status.as_str(), summary.restarts),
        ("Init:CrashLoopBackOff", 3)
    );
}

#[test]
fn terminating_wins() {
    let mut p = with(
        pod("Running", false),
        vec![
            status("app", running(), true, 0),
            status("side", running(), true, 0),
        ],
        vec![],
    );
    p.metadata.deletion_timestamp = Some(Time(at(0)));
    assert_eq!(cells(&p).1, "Terminating");
}

#[test]
fn restarts_say_when_the_last_one_was() {
    let mut restarted = status("app", running(), true, 5);
    restarted.last_state = Some(ContainerState {
        terminated: Some(ContainerStateTerminated {
            exit_code: 1,
            finished_at: Some(Time(at(0))),
            ..Default::default()
        }),
        ..Default::default()
    });
    let p = with(
        pod("Running", false),
        vec![restarted, status("side", running(), true, 0)],
        vec![],
    );
    let summary = summarize(&p);
    assert_eq!(summary.restarts_cell(at(300)), "5 (5m ago)");
    let calm = with(
        pod("Running", false),
        vec![status("app", running(), true, 0)],
        vec![],
    );
    assert_eq!(summarize(&calm).restarts_cell(at(300)), "0");
}

#[test]
fn ages_read_like_kubectl() {
    let cases = [
        (0, "0s"),
        (45, "45s"),
        (119, "119s"),
        (192, "3m12s"),
        (300, "5m"),
        (17 * 60 + 5, "17m"),
        (5 * 3600 + 3 * 60, "5h3m"),
        (5 * 3600, "5h"),
        (20 * 3600, "20h"),
        (2 * 86400, "2d"),
        (2 * 86400 + 4 * 3600, "2d4h"),
        (30 * 86400, "30d"),
        (2 * 365 * 86400 + 10 * 86400, "2y10d"),
        (9 * 365 * 86400, "9y"),
    ];
    for (seconds, expected) in cases {
        assert_eq!(age(at(0), at(seconds)), expected, "{seconds}s");
    }
    assert_eq!(age(at(10), at(0)), "<invalid>");
    assert_eq!(age_cell(None, at(0)), "<unknown>");
}

#[test]
fn columns_align_as_tabwriter_does() {
    let text = "NAME\tREADY\tSTATUS\nweb\t1/1\tRunning\nlonger-name\t0/1\tPending\n";
    assert_eq!(
        align(text, 6, 3),
        "NAME          READY   STATUS\nweb           1/1     Running\nlonger-name   0/1     Pending\n"
    );
    // A line without a tab ends a column block (describe's sections).
    let text = "Name:\tweb\nIPs:\n  IP:\t10.0.0.1\nStatus:\tRunning\n";
    assert_eq!(
        align(text, 0, 2),
        "Name:  web\nIPs:\n  IP:    10.0.0.1\nStatus:  Running\n"
    );
}

#[test]
fn pods_may_be_named_with_their_kind() {
    assert_eq!(pod_name("pod/web"), "web");
    assert_eq!(pod_name("pods/web"), "web");
    assert_eq!(pod_name("web"), "web");
}
