//! The pod lifecycle as the upstream kubelet runs it, end to end with real containers:
//! crash back-off that grows, restart policies that end Job-style pods Succeeded or
//! Failed, native sidecars around the init and app containers, graceful termination
//! (preStop, then the stop signal, SIGKILL after the grace period), postStart, probes
//! (liveness restarts, readiness gates Ready, startup gates a sidecar), termination
//! messages and `activeDeadlineSeconds`.

use std::fs;
use std::time::{Duration, Instant};

use serde_json::Value;

use peapod_tests::kubelet::{container_status, phase, Kubelet, BUSYBOX};

/// A pod manifest: `spec` is the YAML under `spec:` (indented by two spaces).
fn pod(name: &str, spec: &str) -> String {
    format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n{spec}---\n")
}

/// A busybox container entry running `script`, with extra flow-style fields.
fn sh(name: &str, script: &str, extra: &str) -> String {
    let script = serde_json::to_string(script).unwrap();
    format!(
        "  - {{name: {name}, image: \"{BUSYBOX}\", imagePullPolicy: Never, command: [sh, -c, {script}]{extra}}}\n"
    )
}

fn restart_count(pod: &Value, container: &str) -> i64 {
    container_status(pod, container)["restartCount"]
        .as_i64()
        .unwrap_or(0)
}

#[test]
fn restart_policies_end_pods_as_upstream_and_crash_back_off_grows() {
    // A short first back-off (upstream: 10 s) to watch several restarts.
    let node = Kubelet::start_with_args(&["--crash-loop-backoff-initial", "1s"]);
    let never = "  restartPolicy: Never\n  terminationGracePeriodSeconds: 1\n  containers:\n";
    let on_failure =
        "  restartPolicy: OnFailure\n  terminationGracePeriodSeconds: 1\n  containers:\n";
    let always = "  terminationGracePeriodSeconds: 1\n  containers:\n";
    node.write_manifest(
        "pods.yaml",
        &[
            pod(
                "crash",
                &format!("{always}{}", sh("hello", "echo hello; exit 1", "")),
            ),
            pod("done", &format!("{on_failure}{}", sh("job", "exit 0", ""))),
            pod("fails", &format!("{never}{}", sh("job", "exit 1", ""))),
            pod(
                "retries",
                &format!("{on_failure}{}", sh("job", "exit 2", "")),
            ),
        ]
        .concat(),
    );
    let named = |name: &str| format!("{name}-{}", node.node_name());

    // Each restart is seen once; the gaps between them are the back-off.
    let mut restarts: Vec<Instant> = Vec::new();
    let mut saw_backoff = false;
    let deadline = Instant::now() + Duration::from_secs(40);
    while restarts.len() < 4 && Instant::now() < deadline {
        if let Some(p) = node.pod(&named("crash")) {
            let count = restart_count(&p, "hello") as usize;
            while restarts.len() < count {
                restarts.push(Instant::now());
            }
            if container_status(&p, "hello")["state"]["waiting"]["reason"] == "CrashLoopBackOff" {
                saw_backoff = true;
                assert_eq!(phase(&p), "Running", "Always keeps the pod Running");
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(restarts.len() >= 4, "4 restarts in 40 s: {}", node.log());
    assert!(saw_backoff, "CrashLoopBackOff was never reported");
    let gaps: Vec<f64> = restarts
        .windows(2)
        .map(|w| (w[1] - w[0]).as_secs_f64())
        .collect();
    // Restart 1 is immediate; then 1 s, 2 s, 4 s (plus the container's own run time).
    assert!(
        gaps[0] >= 0.8 && gaps[1] >= 1.6 && gaps[2] >= 3.2,
        "{gaps:?}"
    );
    assert!(gaps[2] > gaps[1] && gaps[1] > gaps[0], "growing: {gaps:?}");
    assert!(
        node.events(&named("crash"))
            .contains("Back-off restarting failed container hello"),
        "a BackOff event"
    );

    let done = node.wait_pod(&named("done"), Duration::from_secs(10), |p| {
        phase(p) == "Succeeded"
    });
    assert_eq!(restart_count(&done, "job"), 0);
    let fails = node.wait_pod(&named("fails"), Duration::from_secs(10), |p| {
        phase(p) == "Failed"
    });
    assert_eq!(
        container_status(&fails, "job")["state"]["terminated"]["exitCode"],
        1
    );
    // OnFailure restarts a failing container, and the pod stays Running.
    let retries = node.wait_pod(&named("retries"), Duration::from_secs(10), |p| {
        restart_count(p, "job") >= 1
    });
    assert_eq!(phase(&retries), "Running");
    assert_eq!(
        container_status(&retries, "job")["lastState"]["terminated"]["exitCode"],
        2
    );
}

#[test]
fn sidecars_start_in_order_gate_init_and_stop_after_the_app() {
    let node = Kubelet::start();
    let shared = tempfile::tempdir().unwrap();
    let mount = ", volumeMounts: [{name: shared, mountPath: /shared}]";
    let restart = ", restartPolicy: Always";
    let spec = format!(
        "  restartPolicy: Never\n  terminationGracePeriodSeconds: 5\n  volumes: [{{name: shared, hostPath: {{path: \"{}\"}}}}]\n  initContainers:\n{}{}  containers:\n{}",
        shared.path().display(),
        sh(
            "proxy",
            "sleep 1; echo proxy-up >> /shared/log; trap 'echo proxy-term >> /shared/log; exit 0' TERM; while true; do sleep 1 & wait; done",
            &format!(
                "{mount}{restart}, startupProbe: {{exec: {{command: [grep, -q, proxy-up, /shared/log]}}, periodSeconds: 1, failureThreshold: 30}}"
            ),
        ),
        sh(
            "setup",
            "grep -q proxy-up /shared/log && echo setup >> /shared/log",
            mount,
        ),
        sh("job", "sleep 1; echo job-done >> /shared/log", mount),
    );
    node.write_manifest("sidecar.yaml", &pod("sidecar", &spec));
    let name = format!("sidecar-{}", node.node_name());
    let running = node.wait_pod(&name, Duration::from_secs(20), |p| {
        container_status(p, "job")["state"]["running"].is_object()
    });
    assert_eq!(phase(&running), "Running");
    let proxy = container_status(&running, "proxy");
    assert!(proxy["state"]["running"].is_object(), "{proxy}");
    assert_eq!(proxy["started"], true);
    assert_eq!(
        container_status(&running, "setup")["state"]["terminated"]["exitCode"],
        0,
        "the init container after the sidecar saw it up"
    );

    // The app ends: the pod is done, so the sidecar is stopped after it.
    let done = node.wait_pod(&name, Duration::from_secs(20), |p| {
        phase(p) == "Succeeded" && container_status(p, "proxy")["state"]["terminated"].is_object()
    });
    assert_eq!(
        restart_count(&done, "proxy"),
        0,
        "a done pod's sidecar stays stopped"
    );
    let log = fs::read_to_string(shared.path().join("log")).unwrap();
    assert_eq!(
        log.lines().collect::<Vec<_>>(),
        ["proxy-up", "setup", "job-done", "proxy-term"],
        "sidecar first, init after it, the app, then the sidecar's stop"
    );
}

#[test]
fn deletion_sends_the_stop_signal_then_sigkill_after_the_grace_period() {
    let node = Kubelet::start();
    let data = tempfile::tempdir().unwrap();
    let hooks = ", lifecycle: {postStart: {exec: {command: [sh, -c, 'echo post-start >> /data/hooks']}}, preStop: {exec: {command: [sh, -c, 'echo pre-stop >> /data/log']}}}";
    let spec = format!(
        "  terminationGracePeriodSeconds: 2\n  volumes: [{{name: data, hostPath: {{path: \"{}\"}}}}]\n  containers:\n{}",
        data.path().display(),
        sh(
            "stubborn",
            "trap 'echo term >> /data/log; sleep 30; echo survived >> /data/log' TERM; echo up >> /data/log; while true; do sleep 1 & wait; done",
            &format!(", volumeMounts: [{{name: data, mountPath: /data}}]{hooks}"),
        ),
    );
    node.write_manifest("stubborn.yaml", &pod("stubborn", &spec));
    let name = format!("stubborn-{}", node.node_name());
    node.wait_pod(&name, Duration::from_secs(20), |p| {
        container_status(p, "stubborn")["state"]["running"].is_object()
    });
    // postStart runs beside the container's process once it has started.
    let hooks = data.path().join("hooks");
    peapod_tests::host::wait_until(Duration::from_secs(5), || hooks.exists());
    assert_eq!(
        fs::read_to_string(&hooks).unwrap_or_default(),
        "post-start\n",
        "postStart ran once: {}",
        node.events(&name)
    );
    // Let the container's shell reach its wait, so the trap is set.
    std::thread::sleep(Duration::from_millis(500));
    let began = Instant::now();
    let out = node.peapod(&["delete", "pod", &name]);
    assert_eq!(out.code, 0, "{out:?}");
    let took = began.elapsed();
    assert!(node.pod(&name).is_none(), "deleted");
    let log = fs::read_to_string(data.path().join("log")).unwrap();
    assert_eq!(
        log.lines().collect::<Vec<_>>(),
        ["up", "pre-stop", "term"],
        "preStop ran first, then SIGTERM reached the trap, and SIGKILL ended it before `survived`"
    );
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(10),
        "SIGKILL at the end of the 2 s grace period: {took:?}"
    );
    assert!(node.empty(), "nothing left of the pod");
}

#[test]
fn termination_messages_and_active_deadline_reach_the_status() {
    let node = Kubelet::start();
    let never = "  restartPolicy: Never\n  terminationGracePeriodSeconds: 1\n";
    node.write_manifest(
        "pods.yaml",
        &[
            pod(
                "message",
                &format!(
                    "{never}  containers:\n{}",
                    sh("job", "printf 'bye from the job' > /dev/termination-log; exit 3", "")
                ),
            ),
            pod(
                "fallback",
                &format!(
                    "{never}  containers:\n{}",
                    sh(
                        "job",
                        "echo something broke; exit 1",
                        ", terminationMessagePolicy: FallbackToLogsOnError"
                    )
                ),
            ),
            pod(
                "custom",
                &format!(
                    "{never}  containers:\n{}",
                    sh(
                        "job",
                        "echo written > /tmp/why",
                        ", terminationMessagePath: /tmp/why"
                    )
                ),
            ),
            pod(
                "deadline",
                &format!(
                    "  activeDeadlineSeconds: 2\n  terminationGracePeriodSeconds: 1\n  containers:\n{}",
                    sh("sleeper", "sleep 3600", "")
                ),
            ),
        ]
        .concat(),
    );
    let named = |name: &str| format!("{name}-{}", node.node_name());
    let terminated = |pod: &str| {
        let p = node.wait_pod(&named(pod), Duration::from_secs(20), |p| {
            container_status(p, "job")["state"]["terminated"].is_object()
        });
        container_status(&p, "job")["state"]["terminated"].clone()
    };
    let message = terminated("message");
    assert_eq!(message["message"], "bye from the job");
    assert_eq!(message["exitCode"], 3);
    assert_eq!(
        terminated("fallback")["message"],
        "something broke\n",
        "FallbackToLogsOnError takes the log's tail"
    );
    assert_eq!(terminated("custom")["message"], "written\n");

    // The pod fails at the deadline; its container is then stopped (SIGKILL after the
    // grace period: a shell's sleep as PID 1 ignores SIGTERM) and not restarted.
    let failed = node.wait_pod(&named("deadline"), Duration::from_secs(20), |p| {
        phase(p) == "Failed" && container_status(p, "sleeper")["state"]["terminated"].is_object()
    });
    assert_eq!(failed["status"]["reason"], "DeadlineExceeded");
    std::thread::sleep(Duration::from_secs(1));
    let later = node.pod(&named("deadline")).unwrap();
    assert_eq!(restart_count(&later, "sleeper"), 0, "{later}");
    assert!(node.events(&named("deadline")).contains("DeadlineExceeded"));
}

#[test]
fn probes_restart_the_unhealthy_and_gate_readiness() {
    let node = Kubelet::start();
    let web = "mkdir -p /www && echo ok > /www/healthz && echo ok > /www/ready && exec httpd -f -p 8080 -h /www";
    let probes = ", ports: [{name: http, containerPort: 8080}], livenessProbe: {httpGet: {path: /healthz, port: http}, periodSeconds: 1, failureThreshold: 2}, readinessProbe: {httpGet: {path: /ready, port: 8080}, periodSeconds: 1, failureThreshold: 1}";
    let checks = ", readinessProbe: {exec: {command: [test, -f, /tmp/ready]}, periodSeconds: 1}, livenessProbe: {tcpSocket: {port: 9090}, initialDelaySeconds: 1, periodSeconds: 1, failureThreshold: 3}";
    let spec = format!(
        "  terminationGracePeriodSeconds: 1\n  containers:\n{}{}",
        sh("web", web, probes),
        sh("worker", "exec httpd -f -p 9090 -h /tmp", checks),
    );
    node.write_manifest("probed.yaml", &pod("probed", &spec));
    let name = format!("probed-{}", node.node_name());
    let ready = |p: &Value, c: &str| container_status(p, c)["ready"] == true;
    let condition = |p: &Value, kind: &str| {
        p["status"]["conditions"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["type"] == kind))
            .map(|c| c["status"].clone())
            .unwrap_or(Value::Null)
    };

    // The exec readiness probe holds `worker` (and the pod) unready until /tmp/ready.
    let pod_now = node.wait_pod(&name, Duration::from_secs(20), |p| ready(p, "web"));
    assert!(!ready(&pod_now, "worker"), "{pod_now}");
    assert_eq!(condition(&pod_now, "Ready"), "False");
    let out = node.peapod(&["exec", &name, "-c", "worker", "--", "touch", "/tmp/ready"]);
    assert_eq!(out.code, 0, "{out:?}");
    let pod_now = node.wait_pod(&name, Duration::from_secs(10), |p| {
        condition(p, "Ready") == "True"
    });
    assert_eq!(condition(&pod_now, "ContainersReady"), "True");

    // A failing readiness probe drops Ready without a restart.
    let out = node.peapod(&["exec", &name, "-c", "web", "--", "rm", "/www/ready"]);
    assert_eq!(out.code, 0, "{out:?}");
    let pod_now = node.wait_pod(&name, Duration::from_secs(10), |p| !ready(p, "web"));
    assert_eq!(condition(&pod_now, "Ready"), "False");
    assert_eq!(restart_count(&pod_now, "web"), 0);
    assert!(container_status(&pod_now, "web")["state"]["running"].is_object());

    // A failing liveness probe restarts the container (which serves both files again).
    let out = node.peapod(&["exec", &name, "-c", "web", "--", "rm", "/www/healthz"]);
    assert_eq!(out.code, 0, "{out:?}");
    let pod_now = node.wait_pod(&name, Duration::from_secs(20), |p| {
        restart_count(p, "web") == 1 && ready(p, "web")
    });
    assert_eq!(
        restart_count(&pod_now, "worker"),
        0,
        "the other container stays"
    );
    let events = node.events(&name);
    let unhealthy = events.find("Liveness probe failed");
    let killing = events.find("failed liveness probe, will be restarted");
    assert!(
        unhealthy.is_some() && killing.is_some() && unhealthy < killing,
        "Unhealthy, then Killing: {events}"
    );
    assert!(events.contains("Readiness probe failed"), "{events}");
}
