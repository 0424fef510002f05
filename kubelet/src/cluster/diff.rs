//! Two-way strategic merge patches, as upstream's `CreateTwoWayMergePatch` makes them:
//! what turns the object the API server shows into the one the kubelet wants. Sending
//! the wanted object alone is not enough: a strategic merge keeps fields the patch does
//! not mention, so a container's `state.waiting` would outlive its `state.running`.

use serde_json::{Map, Value};

/// The patch from `old` to `new`: changed and added fields as they are now, removed
/// fields as `null`, and lists with a merge key (`merge_key(path)`) element by element
/// (elements keep their key; elements only in `old` are left alone, as the API's own
/// lists of statuses never shrink). Other lists are sent whole. `path` is the dotted
/// field path of `old`/`new` (`status`, `status.containerStatuses`).
pub fn two_way(
    old: &Value,
    new: &Value,
    path: &str,
    merge_key: &dyn Fn(&str) -> Option<&'static str>,
) -> Value {
    match (old, new) {
        (Value::Object(old), Value::Object(new)) => {
            let mut patch = Map::new();
            for (key, value) in new {
                let here = format!("{path}.{key}");
                match old.get(key) {
                    Some(before) if before == value => {}
                    Some(before) => {
                        patch.insert(key.clone(), two_way(before, value, &here, merge_key));
                    }
                    None => {
                        patch.insert(key.clone(), value.clone());
                    }
                }
            }
            for key in old.keys().filter(|k| !new.contains_key(*k)) {
                patch.insert(key.clone(), Value::Null);
            }
            Value::Object(patch)
        }
        (Value::Array(old), Value::Array(new)) => match merge_key(path) {
            Some(key) => Value::Array(
                new.iter()
                    .map(|item| {
                        let before = old.iter().find(|o| o.get(key) == item.get(key));
                        match (before, item.get(key)) {
                            (Some(before), Some(id)) => {
                                let mut diff = two_way(before, item, path, merge_key);
                                if let Value::Object(fields) = &mut diff {
                                    fields.insert(key.to_string(), id.clone());
                                }
                                diff
                            }
                            _ => item.clone(),
                        }
                    })
                    .collect(),
            ),
            None => Value::Array(new.clone()),
        },
        _ => new.clone(),
    }
}

/// The merge keys of the lists in a v1 PodStatus.
pub fn pod_status_merge_key(path: &str) -> Option<&'static str> {
    match path.rsplit('.').next()? {
        "conditions" => Some("type"),
        "containerStatuses" | "initContainerStatuses" | "ephemeralContainerStatuses" => {
            Some("name")
        }
        "podIPs" | "hostIPs" => Some("ip"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_container_that_started_loses_its_waiting_state() {
        let old = json!({"phase": "Pending", "containerStatuses": [
            {"name": "web", "ready": false, "state": {"waiting": {"reason": "ContainerCreating"}}},
            {"name": "side", "ready": true, "state": {"running": {"startedAt": "t0"}}}]});
        let new = json!({"phase": "Running", "containerStatuses": [
            {"name": "web", "ready": true, "state": {"running": {"startedAt": "t1"}}},
            {"name": "side", "ready": true, "state": {"running": {"startedAt": "t0"}}}]});
        let patch = two_way(&old, &new, "status", &pod_status_merge_key);
        assert_eq!(
            patch,
            json!({"phase": "Running", "containerStatuses": [
                {"name": "web", "ready": true, "state": {"running": {"startedAt": "t1"}, "waiting": null}},
                {"name": "side"}]})
        );
    }

    #[test]
    fn unkeyed_lists_and_new_fields_are_sent_whole() {
        let old = json!({"message": "x", "list": [1, 2]});
        let new = json!({"list": [3], "podIP": "10.0.0.2"});
        let patch = two_way(&old, &new, "status", &pod_status_merge_key);
        assert_eq!(
            patch,
            json!({"list": [3], "podIP": "10.0.0.2", "message": null})
        );
    }
}
