//! The phase, conditions and container statuses computed from observed states.

use chrono::{TimeZone, Utc};
use k8s_openapi::api::core::v1::Pod;

use super::state::{Current, PodState, SandboxInfo, Terminated};
use super::status::{initialized, phase, pod_status, qos_class};

fn pod(yaml: &str) -> Pod {
    yaml_serde::from_str(yaml).expect("a test pod")
}

const TWO: &str = "
metadata: {name: web, namespace: default, uid: u1}
spec:
  restartPolicy: RESTART
  initContainers: [{name: setup, image: busybox}]
  containers: [{name: web, image: busybox}, {name: side, image: busybox}]
";

fn state(restart: &str) -> PodState {
    let now = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    PodState::new(pod(&TWO.replace("RESTART", restart)), now)
}

fn ended(code: i32) -> Current {
    Current::Terminated(Terminated {
        exit_code: code,
        signal: None,
        reason: if code == 0 { "Completed" } else { "Error" }.into(),
        message: None,
        started_at: None,
        finished_at: Utc::now(),
        container_id: Some("abc".into()),
    })
}

fn running() -> Current {
    Current::Running {
        started_at: Utc::now(),
    }
}

#[test]
fn pending_until_init_containers_complete_and_failed_when_init_fails_under_never() {
    let mut s = state("Never");
    assert_eq!(phase(&s), "Pending");
    s.init[0].current = running();
    assert_eq!(phase(&s), "Pending");
    s.init[0].current = ended(1);
    assert_eq!(phase(&s), "Failed");
    let mut s = state("Always");
    s.init[0].current = ended(1);
    assert_eq!(phase(&s), "Pending", "Always retries the init container");
}

#[test]
fn running_succeeded_and_failed_follow_the_restart_policy() {
    let mut s = state("Always");
    s.init[0].current = ended(0);
    assert_eq!(phase(&s), "Pending", "app containers still waiting");
    s.containers[0].current = running();
    s.containers[1].current = running();
    assert_eq!(phase(&s), "Running");
    s.containers[0].current = ended(0);
    s.containers[1].current = ended(2);
    assert_eq!(phase(&s), "Running", "Always restarts them");

    let mut s = state("Never");
    s.init[0].current = ended(0);
    s.containers[0].current = ended(0);
    s.containers[1].current = ended(0);
    assert_eq!(phase(&s), "Succeeded");
    s.containers[1].current = ended(2);
    assert_eq!(phase(&s), "Failed");

    let mut s = state("OnFailure");
    s.init[0].current = ended(0);
    s.containers[0].current = ended(0);
    s.containers[1].current = ended(2);
    assert_eq!(phase(&s), "Running", "OnFailure restarts the failed one");
}

#[test]
fn a_container_in_back_off_counts_as_stopped_not_waiting() {
    let mut s = state("Always");
    s.init[0].current = ended(0);
    s.containers[0].current = running();
    s.containers[1].current = ended(1);
    s.containers[1].wait("CrashLoopBackOff", None);
    assert_eq!(phase(&s), "Running");
    assert!(
        s.containers[1].last.is_some(),
        "the termination moves to lastState"
    );
}

#[test]
fn status_has_ips_conditions_and_container_ids() {
    let mut s = state("Always");
    s.sandbox = Some(SandboxInfo {
        name: "default_web_u1".into(),
        netns: "/run/netns/default_web_u1".into(),
        ips: vec!["10.88.0.5".parse().unwrap()],
    });
    s.init[0].current = ended(0);
    s.containers[0].current = running();
    s.containers[0].id = Some("abc".into());
    s.containers[1].current = running();
    for c in &mut s.containers {
        (c.started, c.ready) = (true, true);
    }
    let status = pod_status(&mut s, None, Utc::now());
    assert_eq!(status.phase.as_deref(), Some("Running"));
    assert_eq!(status.pod_ip.as_deref(), Some("10.88.0.5"));
    assert_eq!(status.qos_class.as_deref(), Some("BestEffort"));
    let conditions = status.conditions.unwrap();
    let cond = |t: &str| {
        conditions
            .iter()
            .find(|c| c.type_ == t)
            .map(|c| c.status.clone())
            .unwrap_or_else(|| panic!("no {t} condition"))
    };
    assert_eq!(cond("Ready"), "True");
    assert_eq!(cond("Initialized"), "True");
    assert_eq!(cond("PodReadyToStartContainers"), "True");
    let web = &status.container_statuses.unwrap()[0];
    assert_eq!(web.container_id.as_deref(), Some("peapod://abc"));
    assert!(web.ready);
    assert_eq!(status.init_container_statuses.unwrap().len(), 1);

    s.containers[1].current = ended(1);
    let status = pod_status(&mut s, None, Utc::now());
    let ready = condition(&status, "Ready");
    assert_eq!(ready.status, "False");
    assert_eq!(ready.reason.as_deref(), Some("ContainersNotReady"));
    assert_eq!(
        ready.message.as_deref(),
        Some("containers with unready status: [side]")
    );
}

#[test]
fn qos_classes_follow_requests_and_limits() {
    let with = |resources: &str| {
        pod(&format!(
            "metadata: {{name: p}}\nspec:\n  containers: [{{name: c, image: i, resources: {resources}}}]\n"
        ))
    };
    assert_eq!(qos_class(&with("{}")), "BestEffort");
    assert_eq!(qos_class(&with("{requests: {cpu: 100m}}")), "Burstable");
    assert_eq!(
        qos_class(&with(
            "{limits: {cpu: 100m, memory: 64Mi}, requests: {cpu: 100m, memory: 64Mi}}"
        )),
        "Guaranteed"
    );
    assert_eq!(
        qos_class(&with(
            "{limits: {cpu: 100m, memory: 64Mi}, requests: {cpu: 50m, memory: 64Mi}}"
        )),
        "Burstable"
    );
    assert_eq!(
        qos_class(&with(
            "{limits: {cpu: 1, memory: 1Gi}, requests: {cpu: 1000m, memory: 1024Mi}}"
        )),
        "Guaranteed",
        "requests equal limits by value"
    );
}

#[test]
fn readiness_comes_from_the_probe_not_from_running() {
    let mut s = state("Always");
    s.init[0].current = ended(0);
    for c in &mut s.containers {
        c.current = running();
        c.started = true;
    }
    s.containers[0].ready = true;
    let status = pod_status(&mut s, None, Utc::now());
    let ready = condition(&status, "Ready");
    assert_eq!(ready.status, "False");
    assert_eq!(ready.reason.as_deref(), Some("ContainersNotReady"));
    let statuses = status.container_statuses.unwrap();
    assert!(statuses[0].ready);
    assert!(!statuses[1].ready);
    assert_eq!(statuses[1].started, Some(true));
}

#[test]
fn a_deadline_failure_fails_the_pod_with_its_reason() {
    let mut s = state("Always");
    s.failure = Some(("DeadlineExceeded".into(), "too long".into()));
    let status = pod_status(&mut s, None, Utc::now());
    assert_eq!(status.phase.as_deref(), Some("Failed"));
    assert_eq!(status.reason.as_deref(), Some("DeadlineExceeded"));
    assert_eq!(status.message.as_deref(), Some("too long"));
}

#[test]
fn a_started_sidecar_counts_as_initialized_and_not_as_failed() {
    let mut s = state("Never");
    let mut spec = s.pod.spec.clone().unwrap();
    spec.init_containers.as_mut().unwrap()[0].restart_policy = Some("Always".into());
    s.pod.spec = Some(spec);
    s.init[0].current = running();
    assert!(
        !initialized(&s),
        "a sidecar that has not started holds the pod back"
    );
    s.init[0].started = true;
    assert!(initialized(&s));
    s.init[0].current = ended(1);
    assert_ne!(
        phase(&s),
        "Failed",
        "a sidecar's exit does not fail the pod"
    );
}

/// The pod condition of type `kind`.
fn condition(
    status: &k8s_openapi::api::core::v1::PodStatus,
    kind: &str,
) -> k8s_openapi::api::core::v1::PodCondition {
    status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == kind)
        .cloned()
        .unwrap_or_else(|| panic!("no {kind} condition"))
}
