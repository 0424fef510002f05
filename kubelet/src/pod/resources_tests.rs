//! The upstream kubelet's resource formulas: shares, quota, OOM scores, pod cgroup sums.

use k8s_openapi::api::core::v1::Pod;

use super::resources::*;

const GIB: i64 = 1 << 30;
const NODE: NodeResources = NodeResources {
    memory_capacity: 16 * GIB,
    pod_max_pids: 0,
};

fn pod(containers: &str) -> Pod {
    yaml_serde::from_str(&format!(
        "metadata: {{name: p, uid: u1}}\nspec:\n  containers:\n{containers}"
    ))
    .expect("a test pod")
}

/// One container line of [`pod`]'s list.
fn c(name: &str, resources: &str) -> String {
    format!("  - {{name: {name}, image: i, resources: {resources}}}\n")
}

fn first(pod: &Pod) -> &k8s_openapi::api::core::v1::Container {
    &pod.spec.as_ref().unwrap().containers[0]
}

#[test]
fn shares_are_1024_per_cpu_within_the_kernels_bounds() {
    assert_eq!(shares(0), 2);
    assert_eq!(shares(1), 2);
    assert_eq!(shares(250), 256);
    assert_eq!(shares(1000), 1024);
    assert_eq!(shares(1500), 1536);
    assert_eq!(shares(-5), 2);
    assert_eq!(shares(1_000_000), 262_144);
}

#[test]
fn quota_is_the_limits_share_of_the_period_at_least_1ms() {
    assert_eq!(quota(0, 100_000), 0);
    assert_eq!(quota(500, 100_000), 50_000);
    assert_eq!(quota(2000, 100_000), 200_000);
    assert_eq!(quota(1, 100_000), 1_000);
    assert_eq!(quota(9, 100_000), 1_000);
}

#[test]
fn a_container_gets_shares_from_its_request_and_quota_and_memory_from_its_limits() {
    let p = pod(&c(
        "web",
        "{requests: {cpu: 250m, memory: 32Mi}, limits: {cpu: 500m, memory: 64Mi}}",
    ));
    let r = container(&p, first(&p), &NODE).unwrap();
    assert_eq!(r.cgroup.cpu_shares, 256);
    assert_eq!((r.cgroup.cpu_quota, r.cgroup.cpu_period), (50_000, 100_000));
    assert_eq!(r.cgroup.memory_limit, 64 << 20);
    assert_eq!(r.cgroup.pids_limit, 0);

    // Only a limit: the request is the limit. Nothing: the smallest shares, no quota.
    let p = pod(&c("web", "{limits: {cpu: 2}}"));
    let r = container(&p, first(&p), &NODE).unwrap();
    assert_eq!((r.cgroup.cpu_shares, r.cgroup.cpu_quota), (2048, 200_000));
    let p = pod(&c("web", "{}"));
    let r = container(&p, first(&p), &NODE).unwrap();
    assert_eq!((r.cgroup.cpu_shares, r.cgroup.cpu_quota), (2, 0));
    assert_eq!(r.cgroup.memory_limit, 0);
}

#[test]
fn oom_scores_follow_the_qos_class() {
    let guaranteed = pod(&c(
        "g",
        "{requests: {cpu: 1, memory: 1Gi}, limits: {cpu: 1, memory: 1Gi}}",
    ));
    assert_eq!(
        container(&guaranteed, first(&guaranteed), &NODE)
            .unwrap()
            .oom_score_adj,
        -997
    );
    let best_effort = pod(&c("b", "{}"));
    assert_eq!(
        oom_score_adj(&best_effort, first(&best_effort), NODE.memory_capacity),
        Ok(1000)
    );
    let burstable = |memory: &str| {
        let p = pod(&c("u", &format!("{{requests: {{cpu: 100m{memory}}}}}")));
        oom_score_adj(&p, first(&p), NODE.memory_capacity).unwrap()
    };
    // 1000 - 1000 × request / capacity, kept within 3..=999.
    assert_eq!(burstable(", memory: 4Gi"), 750);
    assert_eq!(burstable(", memory: 8Gi"), 500);
    assert_eq!(
        burstable(""),
        999,
        "no memory request is not BestEffort's 1000"
    );
    assert_eq!(burstable(", memory: 16Gi"), 3);
    assert_eq!(burstable(", memory: 64Gi"), 3);

    let mut critical = best_effort.clone();
    critical.spec.as_mut().unwrap().priority_class_name = Some("system-node-critical".into());
    assert_eq!(
        oom_score_adj(&critical, first(&critical), NODE.memory_capacity),
        Ok(-997)
    );
}

#[test]
fn a_sidecar_scores_no_higher_than_the_smallest_app_container() {
    let p: Pod = yaml_serde::from_str(
        "metadata: {name: p}
spec:
  initContainers:
  - {name: proxy, image: i, restartPolicy: Always, resources: {requests: {memory: 1Gi}}}
  containers:
  - {name: a, image: i, resources: {requests: {memory: 8Gi}}}
  - {name: b, image: i, resources: {requests: {memory: 4Gi}}}
",
    )
    .unwrap();
    let spec = p.spec.as_ref().unwrap();
    let proxy = &spec.init_containers.as_ref().unwrap()[0];
    assert_eq!(oom_score_adj(&p, proxy, NODE.memory_capacity), Ok(750));
    assert_eq!(
        oom_score_adj(&p, &spec.containers[1], NODE.memory_capacity),
        Ok(750)
    );
    assert_eq!(
        oom_score_adj(&p, &spec.containers[0], NODE.memory_capacity),
        Ok(500)
    );
}

#[test]
fn bad_quantities_name_the_container_and_field() {
    let p = pod(&c("web", "{limits: {memory: 64MB}}"));
    let err = container(&p, first(&p), &NODE).unwrap_err();
    assert_eq!(err.container, "web");
    assert_eq!(err.field, "resources.limits.memory");
    let message = err.to_string();
    assert!(
        message
            .starts_with("container \"web\": resources.limits.memory \"64MB\" is not a quantity"),
        "{message}"
    );
    let p = pod(&c("web", "{requests: {cpu: -1}}"));
    let err = pod_cgroup(&p, &NODE).unwrap_err();
    assert_eq!(
        err.to_string(),
        "container \"web\": resources.requests.cpu \"-1\" must be greater than or equal to 0"
    );
}

#[test]
fn problems_are_what_the_api_server_rejects() {
    let p = pod(&c(
        "web",
        "{requests: {cpu: 2, memory: 1x}, limits: {cpu: 1}}",
    ));
    let found = problems(first(&p));
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].0, "resources.requests.memory");
    let p = pod(&c("web", "{requests: {cpu: 2}, limits: {cpu: 1000m}}"));
    assert_eq!(
        problems(first(&p)),
        [(
            "resources.requests.cpu".to_string(),
            "Invalid value: must be less than or equal to cpu limit".to_string()
        )]
    );
    let p = pod(&c("web", "{requests: {cpu: 1}, limits: {cpu: 1000m}}"));
    assert!(problems(first(&p)).is_empty());
}

#[test]
fn guaranteed_pods_limit_everything() {
    let both = "{requests: {cpu: 500m, memory: 64Mi}, limits: {cpu: 500m, memory: 64Mi}}";
    let p = pod(&format!("{}{}", c("a", both), c("b", both)));
    let node = NodeResources {
        pod_max_pids: 100,
        ..NODE
    };
    let r = pod_cgroup(&p, &node).unwrap();
    assert_eq!(r.cpu_shares, 1024);
    assert_eq!((r.cpu_quota, r.cpu_period), (100_000, 100_000));
    assert_eq!(r.memory_limit, 128 << 20);
    assert_eq!(r.pids_limit, 100);
}

#[test]
fn burstable_pods_limit_only_what_every_container_limits() {
    let p = pod(&format!(
        "{}{}",
        c(
            "a",
            "{requests: {cpu: 250m}, limits: {cpu: 1, memory: 64Mi}}"
        ),
        c("b", "{requests: {cpu: 250m}, limits: {cpu: 500m}}"),
    ));
    let r = pod_cgroup(&p, &NODE).unwrap();
    assert_eq!(r.cpu_shares, 512);
    assert_eq!((r.cpu_quota, r.cpu_period), (150_000, 100_000));
    assert_eq!(r.memory_limit, 0, "b has no memory limit");
    assert_eq!(r.pids_limit, 0);

    let p = pod(&format!(
        "{}{}",
        c("a", "{requests: {cpu: 250m}}"),
        c("b", "{limits: {memory: 64Mi}}"),
    ));
    let r = pod_cgroup(&p, &NODE).unwrap();
    assert_eq!((r.cpu_shares, r.cpu_quota, r.cpu_period), (256, 0, 0));
    assert_eq!(r.memory_limit, 0);
}

#[test]
fn best_effort_pods_get_the_smallest_shares_and_nothing_else() {
    let p = pod(&c("a", "{}"));
    assert_eq!(
        pod_cgroup(&p, &NODE).unwrap(),
        runtime::sandbox::Resources {
            cpu_shares: 2,
            ..Default::default()
        }
    );
}

#[test]
fn init_containers_count_as_they_run() {
    let p: Pod = yaml_serde::from_str(
        "metadata: {name: p}
spec:
  initContainers:
  - {name: big-init, image: i, resources: {requests: {cpu: 2}, limits: {cpu: 2, memory: 1Gi}}}
  - {name: proxy, image: i, restartPolicy: Always, resources: {requests: {cpu: 100m}, limits: {cpu: 100m, memory: 64Mi}}}
  - {name: late-init, image: i, resources: {requests: {cpu: 1950m}, limits: {cpu: 1950m, memory: 64Mi}}}
  containers:
  - {name: app, image: i, resources: {requests: {cpu: 500m}, limits: {cpu: 500m, memory: 128Mi}}}
",
    )
    .unwrap();
    let (requests, limits) = pod_amounts(&p).unwrap();
    // Steps: big-init alone 2000m; late-init beside the proxy 2050m; app + proxy 600m.
    assert_eq!(requests.cpu_millis, Some(2050));
    assert_eq!(limits.cpu_millis, Some(2050));
    assert_eq!(limits.memory_bytes, Some(GIB), "big-init's 1Gi is the peak");
    let r = pod_cgroup(&p, &NODE).unwrap();
    assert_eq!(r.cpu_shares, 2099);
    assert_eq!(r.cpu_quota, 205_000);
    assert_eq!(r.memory_limit, GIB);
}

#[test]
fn mem_total_is_read_in_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("meminfo");
    std::fs::write(&file, "MemTotal:       24683648 kB\nMemFree: 1 kB\n").unwrap();
    let node = NodeResources::from_host(&file, -1).unwrap();
    assert_eq!(node.memory_capacity, 24_683_648 * 1024);
    std::fs::write(&file, "MemFree: 1 kB\n").unwrap();
    let err = NodeResources::from_host(&file, -1).unwrap_err();
    assert!(err.contains("MemTotal"), "{err}");
}
