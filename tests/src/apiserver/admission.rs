//! What the real API server adds to an object on create: API defaults (pods), the
//! ServiceAccount admission plugin's token volume, DefaultTolerationSeconds, the
//! namespace phase, and Secret `stringData` folded into `data`.

use base64::Engine;
use serde_json::{json, Value};

use super::resources::Resource;
use super::status::{ApiError, ApiResult};
use super::store::random_suffix;

/// The annotation that marks a mirror pod.
pub const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";

/// Where the ServiceAccount admission plugin mounts the API access volume.
pub const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// Applies the create-time defaults and admission of `resource` to `object`.
pub fn on_create(resource: &Resource, object: &mut Value, inject_token: bool) -> ApiResult<()> {
    match resource.plural {
        "pods" => pod(object, inject_token),
        "namespaces" => {
            object["status"] = json!({"phase": "Active"});
            Ok(())
        }
        "secrets" => secret(object),
        _ => Ok(()),
    }
}

fn set_default(object: &mut Value, field: &str, value: Value) {
    if object[field].is_null() {
        object[field] = value;
    }
}

fn pod(pod: &mut Value, inject_token: bool) -> ApiResult<()> {
    let name = pod["metadata"]["name"].as_str().unwrap_or("").to_string();
    let spec = &mut pod["spec"];
    let has_containers = spec["containers"].as_array().is_some_and(|c| !c.is_empty());
    if !has_containers {
        return Err(ApiError::invalid(
            super::store::by_plural("pods"),
            &name,
            "spec.containers: Required value",
        ));
    }
    set_default(spec, "restartPolicy", json!("Always"));
    set_default(spec, "terminationGracePeriodSeconds", json!(30));
    set_default(spec, "dnsPolicy", json!("ClusterFirst"));
    set_default(spec, "schedulerName", json!("default-scheduler"));
    set_default(spec, "securityContext", json!({}));
    set_default(spec, "serviceAccountName", json!("default"));
    let account = spec["serviceAccountName"].clone();
    set_default(spec, "serviceAccount", account);
    set_default(spec, "enableServiceLinks", json!(true));
    set_default(spec, "priority", json!(0));
    set_default(spec, "preemptionPolicy", json!("PreemptLowerPriority"));
    for list in ["initContainers", "containers"] {
        if let Some(containers) = spec.get_mut(list).and_then(Value::as_array_mut) {
            containers.iter_mut().for_each(container);
        }
    }
    default_tolerations(spec);
    // The ServiceAccount plugin leaves mirror pods (static pods' API copies) alone.
    let mirror = pod["metadata"]["annotations"]
        .get(MIRROR_ANNOTATION)
        .is_some();
    let spec = &mut pod["spec"];
    if inject_token && !mirror && spec["automountServiceAccountToken"] != json!(false) {
        service_account_volume(spec);
    }
    // As the real pod strategy: a new pod's status is the server's, whatever was sent.
    let qos = qos_class(spec);
    pod["status"] = json!({"phase": "Pending", "qosClass": qos});
    Ok(())
}

fn container(c: &mut Value) {
    let image = c["image"].as_str().unwrap_or("");
    let last = image.rsplit('/').next().unwrap_or("");
    let latest = !image.contains('@') && (!last.contains(':') || last.ends_with(":latest"));
    set_default(
        c,
        "imagePullPolicy",
        json!(if latest { "Always" } else { "IfNotPresent" }),
    );
    set_default(c, "terminationMessagePath", json!("/dev/termination-log"));
    set_default(c, "terminationMessagePolicy", json!("File"));
    set_default(c, "resources", json!({}));
    if let Some(ports) = c.get_mut("ports").and_then(Value::as_array_mut) {
        for port in ports {
            set_default(port, "protocol", json!("TCP"));
        }
    }
}

/// DefaultTolerationSeconds: 300 s for not-ready and unreachable nodes.
fn default_tolerations(spec: &mut Value) {
    if !spec["tolerations"].is_array() {
        spec["tolerations"] = json!([]);
    }
    let Some(tolerations) = spec["tolerations"].as_array_mut() else {
        return;
    };
    for taint in [
        "node.kubernetes.io/not-ready",
        "node.kubernetes.io/unreachable",
    ] {
        if !tolerations.iter().any(|t| t["key"] == json!(taint)) {
            tolerations.push(json!({"key": taint, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}));
        }
    }
}

/// The `kube-api-access-*` projected volume and its mounts, unless a container already
/// mounts something at the service account directory.
fn service_account_volume(spec: &mut Value) {
    let mounted = ["initContainers", "containers"].iter().any(|list| {
        spec[*list].as_array().is_some_and(|cs| {
            cs.iter().any(|c| {
                c["volumeMounts"].as_array().is_some_and(|ms| {
                    ms.iter()
                        .any(|m| m["mountPath"] == json!(SERVICE_ACCOUNT_DIR))
                })
            })
        })
    });
    if mounted {
        return;
    }
    let volume = format!("kube-api-access-{}", random_suffix());
    if !spec["volumes"].is_array() {
        spec["volumes"] = json!([]);
    }
    if let Some(volumes) = spec["volumes"].as_array_mut() {
        volumes.push(json!({"name": volume, "projected": {"defaultMode": 420, "sources": [
            {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
            {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
            {"downwardAPI": {"items": [{"path": "namespace",
                "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}
        ]}}));
    }
    for list in ["initContainers", "containers"] {
        if let Some(containers) = spec.get_mut(list).and_then(Value::as_array_mut) {
            for c in containers {
                if !c["volumeMounts"].is_array() {
                    c["volumeMounts"] = json!([]);
                }
                if let Some(mounts) = c["volumeMounts"].as_array_mut() {
                    mounts.push(
                        json!({"name": volume, "mountPath": SERVICE_ACCOUNT_DIR, "readOnly": true}),
                    );
                }
            }
        }
    }
}

/// BestEffort with no requests or limits anywhere, Guaranteed when every container
/// limits cpu and memory with requests equal to limits, else Burstable.
fn qos_class(spec: &Value) -> &'static str {
    let containers: Vec<&Value> = ["initContainers", "containers"]
        .iter()
        .flat_map(|l| spec[*l].as_array().into_iter().flatten())
        .collect();
    let empty = |v: &Value| v.as_object().is_none_or(|m| m.is_empty());
    if containers
        .iter()
        .all(|c| empty(&c["resources"]["requests"]) && empty(&c["resources"]["limits"]))
    {
        return "BestEffort";
    }
    let guaranteed = containers.iter().all(|c| {
        let (req, lim) = (&c["resources"]["requests"], &c["resources"]["limits"]);
        ["cpu", "memory"]
            .iter()
            .all(|r| !lim[*r].is_null() && (req[*r].is_null() || req[*r] == lim[*r]))
    });
    if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

/// `stringData` is write-only: the server folds it into base64 `data`.
fn secret(secret: &mut Value) -> ApiResult<()> {
    let Some(strings) = secret.as_object_mut().and_then(|m| m.remove("stringData")) else {
        return Ok(());
    };
    if !secret["data"].is_object() {
        secret["data"] = json!({});
    }
    if let Some(map) = strings.as_object() {
        for (k, v) in map {
            let text = v.as_str().unwrap_or("");
            secret["data"][k] = json!(base64::engine::general_purpose::STANDARD.encode(text));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apiserver::store::by_plural;

    fn pod(annotations: Value) -> Value {
        json!({"metadata": {"name": "p", "annotations": annotations},
               "spec": {"containers": [{"name": "c", "image": "busybox:1.36",
                   "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}]},
               "status": {"phase": "Running"}})
    }

    #[test]
    fn pods_get_defaults_and_the_token_volume_but_mirror_pods_do_not() {
        let mut normal = pod(json!({}));
        on_create(by_plural("pods"), &mut normal, true).unwrap();
        assert_eq!(
            normal["status"],
            json!({"phase": "Pending", "qosClass": "Guaranteed"})
        );
        assert_eq!(
            normal["spec"]["containers"][0]["imagePullPolicy"],
            "IfNotPresent"
        );
        let volume = normal["spec"]["volumes"][0]["name"].as_str().unwrap();
        assert!(volume.starts_with("kube-api-access-"));
        let mount = &normal["spec"]["containers"][0]["volumeMounts"][0];
        assert_eq!(mount["mountPath"], SERVICE_ACCOUNT_DIR);
        assert!(normal["spec"]["containers"][0].get("ports").is_none());

        let mut mirror = pod(json!({MIRROR_ANNOTATION: "hash"}));
        on_create(by_plural("pods"), &mut mirror, true).unwrap();
        assert!(mirror["spec"].get("volumes").is_none());
        assert_eq!(mirror["spec"]["tolerations"].as_array().unwrap().len(), 2);
    }
}
