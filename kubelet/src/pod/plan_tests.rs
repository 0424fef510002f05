//! The planner's rules, one lifecycle situation per test.

use std::time::Duration;

use chrono::Utc;
use k8s_openapi::api::core::v1::{Container, Pod, PodSpec};

use super::plan::{plan, Action, Facts, Observed, Why};
use super::state::{Current, PodState, Terminated};

fn container(name: &str) -> Container {
    Container {
        name: name.into(),
        image: Some("busybox".into()),
        ..Container::default()
    }
}

fn sidecar(name: &str) -> Container {
    Container {
        restart_policy: Some("Always".into()),
        ..container(name)
    }
}

fn pod(init: Vec<Container>, apps: Vec<Container>, policy: &str) -> (Pod, PodState) {
    let pod = Pod {
        spec: Some(PodSpec {
            init_containers: Some(init),
            containers: apps,
            restart_policy: Some(policy.into()),
            ..PodSpec::default()
        }),
        ..Pod::default()
    };
    let state = PodState::new(pod.clone(), Utc::now());
    (pod, state)
}

fn with_sandbox() -> Observed {
    Observed {
        sandbox: true,
        ..Observed::default()
    }
}

fn run(state: &mut PodState, name: &str) {
    let c = state.container_mut(name).unwrap();
    c.id = Some(format!("id-{name}"));
    c.current = Current::Running {
        started_at: Utc::now(),
    };
    c.started = true;
}

fn end(state: &mut PodState, name: &str, exit_code: i32) {
    let c = state.container_mut(name).unwrap();
    c.id = Some(format!("id-{name}"));
    c.current = Current::Terminated(Terminated {
        exit_code,
        signal: None,
        reason: if exit_code == 0 { "Completed" } else { "Error" }.into(),
        message: None,
        started_at: None,
        finished_at: Utc::now(),
        container_id: None,
    });
}

fn start(name: &str, init: bool) -> Action {
    Action::Start {
        name: name.into(),
        init,
    }
}

fn kill(name: &str, why: Why) -> Action {
    Action::Kill {
        name: name.into(),
        why,
    }
}

#[test]
fn the_sandbox_comes_first() {
    let (pod, state) = pod(vec![container("init")], vec![container("app")], "Always");
    assert_eq!(
        plan(&pod, &state, &Observed::default()),
        vec![Action::CreateSandbox]
    );
}

#[test]
fn init_containers_run_one_at_a_time_in_order() {
    let (pod, mut state) = pod(
        vec![container("a"), container("b")],
        vec![container("app")],
        "Always",
    );
    let observed = with_sandbox();
    assert_eq!(plan(&pod, &state, &observed), vec![start("a", true)]);
    run(&mut state, "a");
    assert_eq!(plan(&pod, &state, &observed), vec![]);
    end(&mut state, "a", 0);
    assert_eq!(plan(&pod, &state, &observed), vec![start("b", true)]);
    end(&mut state, "b", 0);
    assert_eq!(plan(&pod, &state, &observed), vec![start("app", false)]);
}

#[test]
fn a_failed_init_container_restarts_unless_the_policy_is_never() {
    for (policy, expected) in [
        ("Always", vec![start("a", true)]),
        ("OnFailure", vec![start("a", true)]),
        ("Never", vec![]),
    ] {
        let (pod, mut state) = pod(vec![container("a")], vec![container("app")], policy);
        end(&mut state, "a", 1);
        assert_eq!(plan(&pod, &state, &with_sandbox()), expected, "{policy}");
    }
}

#[test]
fn a_restart_in_back_off_waits() {
    let (pod, mut state) = pod(vec![], vec![container("app")], "Always");
    end(&mut state, "app", 1);
    let mut observed = with_sandbox();
    observed.facts.insert(
        "app".into(),
        Facts {
            backoff: Some(Duration::from_secs(10)),
            ..Facts::default()
        },
    );
    assert_eq!(
        plan(&pod, &state, &observed),
        vec![Action::BackOff {
            name: "app".into(),
            remaining: Duration::from_secs(10)
        }]
    );
    // In back-off the container waits with its last termination; it still restarts.
    state
        .container_mut("app")
        .unwrap()
        .wait("CrashLoopBackOff", None);
    observed.facts.clear();
    assert_eq!(plan(&pod, &state, &observed), vec![start("app", false)]);
}

#[test]
fn restart_policy_decides_which_exits_restart() {
    for (policy, code, restarts) in [
        ("Always", 0, true),
        ("Always", 1, true),
        ("OnFailure", 0, false),
        ("OnFailure", 2, true),
        ("Never", 0, false),
        ("Never", 1, false),
    ] {
        let (pod, mut state) = pod(vec![], vec![container("app")], policy);
        end(&mut state, "app", code);
        let expected = if restarts {
            vec![start("app", false)]
        } else {
            vec![]
        };
        assert_eq!(
            plan(&pod, &state, &with_sandbox()),
            expected,
            "{policy} {code}"
        );
    }
}

#[test]
fn a_sidecar_gates_the_next_init_container_until_it_has_started() {
    let (pod, mut state) = pod(
        vec![sidecar("proxy"), container("setup")],
        vec![container("app")],
        "Never",
    );
    let observed = with_sandbox();
    assert_eq!(plan(&pod, &state, &observed), vec![start("proxy", true)]);
    run(&mut state, "proxy");
    state.container_mut("proxy").unwrap().started = false;
    assert_eq!(
        plan(&pod, &state, &observed),
        vec![],
        "startup probe pending"
    );
    state.container_mut("proxy").unwrap().started = true;
    assert_eq!(plan(&pod, &state, &observed), vec![start("setup", true)]);
    end(&mut state, "setup", 0);
    assert_eq!(plan(&pod, &state, &observed), vec![start("app", false)]);
}

#[test]
fn a_sidecar_restarts_whatever_the_pod_policy() {
    let (pod, mut state) = pod(vec![sidecar("proxy")], vec![container("app")], "Never");
    run(&mut state, "proxy");
    run(&mut state, "app");
    end(&mut state, "proxy", 0);
    assert_eq!(
        plan(&pod, &state, &with_sandbox()),
        vec![start("proxy", true)]
    );
}

#[test]
fn sidecars_stop_once_the_app_containers_are_done() {
    let (pod, mut state) = pod(
        vec![sidecar("a"), sidecar("b")],
        vec![container("job")],
        "OnFailure",
    );
    run(&mut state, "a");
    run(&mut state, "b");
    end(&mut state, "job", 0);
    assert_eq!(
        plan(&pod, &state, &with_sandbox()),
        vec![kill("b", Why::PodDone), kill("a", Why::PodDone)]
    );
    // Once stopped they stay stopped.
    end(&mut state, "a", 0);
    end(&mut state, "b", 143);
    assert_eq!(plan(&pod, &state, &with_sandbox()), vec![]);
}

#[test]
fn a_failed_init_under_never_stops_the_sidecars() {
    let (pod, mut state) = pod(
        vec![sidecar("proxy"), container("setup")],
        vec![container("app")],
        "Never",
    );
    run(&mut state, "proxy");
    end(&mut state, "setup", 3);
    assert_eq!(
        plan(&pod, &state, &with_sandbox()),
        vec![kill("proxy", Why::PodDone)]
    );
}

#[test]
fn an_unhealthy_container_is_killed_once() {
    let (pod, mut state) = pod(vec![], vec![container("web")], "Always");
    run(&mut state, "web");
    let mut observed = with_sandbox();
    let facts = |stopping| Facts {
        unhealthy: true,
        stopping,
        ..Facts::default()
    };
    observed.facts.insert("web".into(), facts(false));
    assert_eq!(
        plan(&pod, &state, &observed),
        vec![kill("web", Why::Unhealthy)]
    );
    observed.facts.insert("web".into(), facts(true));
    assert_eq!(plan(&pod, &state, &observed), vec![]);
}

#[test]
fn a_failed_pod_stops_everything_and_starts_nothing() {
    let (pod, mut state) = pod(vec![sidecar("proxy")], vec![container("app")], "Always");
    run(&mut state, "proxy");
    run(&mut state, "app");
    let observed = Observed {
        failed: true,
        ..with_sandbox()
    };
    assert_eq!(
        plan(&pod, &state, &observed),
        vec![kill("app", Why::PodFailed), kill("proxy", Why::PodFailed)]
    );
    end(&mut state, "app", 137);
    end(&mut state, "proxy", 137);
    assert_eq!(plan(&pod, &state, &observed), vec![]);
}

#[test]
fn init_containers_do_not_run_again_once_apps_have() {
    let (pod, mut state) = pod(vec![container("init")], vec![container("app")], "Always");
    end(&mut state, "init", 0);
    run(&mut state, "app");
    // The init container's record is gone (e.g. adopted after a kubelet restart).
    state.container_mut("init").unwrap().current = Current::Waiting {
        reason: "PodInitializing".into(),
        message: None,
    };
    assert_eq!(plan(&pod, &state, &with_sandbox()), vec![]);
}
