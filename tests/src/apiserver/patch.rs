//! PATCH bodies: JSON merge patch (RFC 7386), strategic merge patch with the merge keys
//! of the lists kubelets and kubectl patch, JSON patch (RFC 6902), and server-side apply
//! approximated as a strategic merge of the applied configuration (no field managers,
//! no conflicts: the fake is not a field-ownership tracker).

use serde_json::{Map, Value};

use super::status::{ApiError, ApiResult};

/// The patch formats of the `Content-Type` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchKind {
    /// `application/merge-patch+json`.
    Merge,
    /// `application/strategic-merge-patch+json`.
    Strategic,
    /// `application/json-patch+json`.
    Json,
    /// `application/apply-patch+yaml` (server-side apply, approximated).
    Apply,
}

impl PatchKind {
    /// The kind named by a `Content-Type` value.
    pub fn from_content_type(content_type: &str) -> ApiResult<PatchKind> {
        let base = content_type.split(';').next().unwrap_or("").trim();
        match base {
            "application/merge-patch+json" => Ok(PatchKind::Merge),
            "application/strategic-merge-patch+json" => Ok(PatchKind::Strategic),
            "application/json-patch+json" => Ok(PatchKind::Json),
            "application/apply-patch+yaml" | "application/apply-patch+cbor" => Ok(PatchKind::Apply),
            _ => Err(ApiError::unsupported_media(content_type)),
        }
    }
}

/// The patch body as JSON (apply bodies are YAML, of which JSON is a subset).
pub fn parse_body(kind: PatchKind, body: &[u8]) -> ApiResult<Value> {
    let text = std::str::from_utf8(body)
        .map_err(|e| ApiError::bad_request(format!("the patch is not UTF-8: {e}")))?;
    if kind == PatchKind::Apply {
        return yaml_serde::from_str(text).map_err(|e| {
            ApiError::bad_request(format!("the applied configuration is not YAML: {e}"))
        });
    }
    serde_json::from_str(text)
        .map_err(|e| ApiError::bad_request(format!("the patch is not JSON: {e}")))
}

/// `target` with `patch` applied.
pub fn apply(kind: PatchKind, target: &Value, patch: &Value) -> ApiResult<Value> {
    let mut out = target.clone();
    match kind {
        PatchKind::Merge => merge(&mut out, patch),
        PatchKind::Strategic | PatchKind::Apply => strategic(&mut out, patch, ""),
        PatchKind::Json => json_patch(&mut out, patch)?,
    }
    Ok(out)
}

/// RFC 7386: objects merge recursively, `null` removes, anything else replaces.
pub fn merge(target: &mut Value, patch: &Value) {
    let Value::Object(fields) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    for (key, value) in fields {
        if value.is_null() {
            if let Some(map) = target.as_object_mut() {
                map.remove(key);
            }
        } else {
            merge(&mut target[key.as_str()], value);
        }
    }
}

/// The merge key of the list at `path` (field names from the root, list indices left out).
fn merge_key(path: &str) -> Option<&'static str> {
    Some(match path {
        "status.conditions" | "status.addresses" => "type",
        "status.containerStatuses"
        | "status.initContainerStatuses"
        | "status.ephemeralContainerStatuses"
        | "spec.containers"
        | "spec.initContainers"
        | "spec.ephemeralContainers"
        | "spec.volumes"
        | "spec.containers.env"
        | "spec.initContainers.env" => "name",
        "status.podIPs" | "status.hostIPs" => "ip",
        "spec.containers.volumeMounts" | "spec.initContainers.volumeMounts" => "mountPath",
        "spec.containers.ports" | "spec.initContainers.ports" => "containerPort",
        "metadata.ownerReferences" => "uid",
        _ => return None,
    })
}

/// Lists of scalars that merge as sets rather than being replaced.
fn merges_as_set(path: &str) -> bool {
    path == "metadata.finalizers"
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// Strategic merge: like [`merge`], but lists with a merge key merge element by element,
/// and the `$patch`, `$setElementOrder`, `$retainKeys` and `$deleteFromPrimitiveList`
/// directives are honoured or tolerated.
pub fn strategic(target: &mut Value, patch: &Value, path: &str) {
    let Value::Object(fields) = patch else {
        *target = patch.clone();
        return;
    };
    match fields.get("$patch").and_then(Value::as_str) {
        Some("replace") => {
            let mut replaced = patch.clone();
            strip_directives(&mut replaced);
            *target = replaced;
            return;
        }
        Some("delete") => {
            *target = Value::Null;
            return;
        }
        _ => {}
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    for (key, value) in fields {
        if let Some(list) = key.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(items), Some(gone)) = (
                target.get_mut(list).and_then(Value::as_array_mut),
                value.as_array(),
            ) {
                items.retain(|i| !gone.contains(i));
            }
            continue;
        }
        if key.starts_with('$') {
            continue;
        }
        let here = join(path, key);
        match value {
            Value::Null => {
                if let Some(map) = target.as_object_mut() {
                    map.remove(key);
                }
            }
            Value::Array(items) => merge_list(&mut target[key.as_str()], items, &here),
            Value::Object(_) => {
                strategic(&mut target[key.as_str()], value, &here);
                if target[key.as_str()].is_null() {
                    if let Some(map) = target.as_object_mut() {
                        map.remove(key);
                    }
                }
            }
            _ => target[key.as_str()] = value.clone(),
        }
    }
}

fn merge_list(target: &mut Value, items: &[Value], path: &str) {
    let replace_all = items
        .iter()
        .any(|i| i.get("$patch").and_then(Value::as_str) == Some("replace"));
    let Some(mk) = merge_key(path).filter(|_| !replace_all) else {
        if merges_as_set(path) && target.is_array() {
            if let Some(existing) = target.as_array_mut() {
                for item in items {
                    if !existing.contains(item) {
                        existing.push(item.clone());
                    }
                }
            }
            return;
        }
        let mut replaced: Vec<Value> = items
            .iter()
            .filter(|i| i.get("$patch").is_none() || i.as_object().is_some_and(|m| m.len() > 1))
            .cloned()
            .collect();
        replaced.iter_mut().for_each(strip_directives);
        *target = Value::Array(replaced);
        return;
    };
    if !target.is_array() {
        *target = Value::Array(Vec::new());
    }
    let Some(existing) = target.as_array_mut() else {
        return;
    };
    for item in items {
        let id = &item[mk];
        let position = existing.iter().position(|e| &e[mk] == id);
        let delete = item.get("$patch").and_then(Value::as_str) == Some("delete");
        match (position, delete) {
            (Some(at), true) => {
                existing.remove(at);
            }
            (None, true) => {}
            (Some(at), false) => strategic(&mut existing[at], item, path),
            (None, false) => {
                let mut added = item.clone();
                strip_directives(&mut added);
                existing.push(added);
            }
        }
    }
}

fn strip_directives(value: &mut Value) {
    if let Some(map) = value.as_object_mut() {
        map.retain(|k, _| !k.starts_with('$'));
        map.values_mut().for_each(strip_directives);
    } else if let Some(items) = value.as_array_mut() {
        items.iter_mut().for_each(strip_directives);
    }
}

/// RFC 6902 operations over JSON pointers.
fn json_patch(target: &mut Value, patch: &Value) -> ApiResult<()> {
    let ops = patch
        .as_array()
        .ok_or_else(|| ApiError::bad_request("a JSON patch is a list of operations"))?;
    for op in ops {
        let name = op["op"].as_str().unwrap_or("");
        let path = op["path"].as_str().unwrap_or("");
        let failed = |why: &str| ApiError::bad_request(format!("json patch {name} {path}: {why}"));
        match name {
            "add" => add(target, path, op["value"].clone()).map_err(|e| failed(&e))?,
            "remove" => {
                remove(target, path).map_err(|e| failed(&e))?;
            }
            "replace" => {
                remove(target, path).map_err(|e| failed(&e))?;
                add(target, path, op["value"].clone()).map_err(|e| failed(&e))?;
            }
            "move" | "copy" => {
                let from = op["from"].as_str().unwrap_or("");
                let value = if name == "move" {
                    remove(target, from).map_err(|e| failed(&e))?
                } else {
                    target
                        .pointer(from)
                        .cloned()
                        .ok_or_else(|| failed("no such from path"))?
                };
                add(target, path, value).map_err(|e| failed(&e))?;
            }
            "test" => {
                if target.pointer(path) != Some(&op["value"]) {
                    return Err(ApiError {
                        code: 422,
                        reason: "Invalid",
                        message: format!("the test operation on {path} failed"),
                        details: None,
                    });
                }
            }
            _ => return Err(failed("unknown operation")),
        }
    }
    Ok(())
}

fn split_pointer(path: &str) -> Result<(String, String), String> {
    let (parent, last) = path.rsplit_once('/').ok_or("not a JSON pointer")?;
    Ok((
        parent.to_string(),
        last.replace("~1", "/").replace("~0", "~"),
    ))
}

fn add(target: &mut Value, path: &str, value: Value) -> Result<(), String> {
    if path.is_empty() {
        *target = value;
        return Ok(());
    }
    let (parent, last) = split_pointer(path)?;
    match target.pointer_mut(&parent) {
        Some(Value::Object(map)) => {
            map.insert(last, value);
            Ok(())
        }
        Some(Value::Array(items)) => {
            let at = if last == "-" {
                items.len()
            } else {
                last.parse::<usize>().map_err(|_| "bad array index")?
            };
            if at > items.len() {
                return Err("array index out of range".into());
            }
            items.insert(at, value);
            Ok(())
        }
        _ => Err("the parent does not exist".into()),
    }
}

fn remove(target: &mut Value, path: &str) -> Result<Value, String> {
    let (parent, last) = split_pointer(path)?;
    match target.pointer_mut(&parent) {
        Some(Value::Object(map)) => map.remove(&last).ok_or_else(|| "no such field".into()),
        Some(Value::Array(items)) => {
            let at = last.parse::<usize>().map_err(|_| "bad array index")?;
            if at >= items.len() {
                return Err("array index out of range".into());
            }
            Ok(items.remove(at))
        }
        _ => Err("the parent does not exist".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn strategic_merge_merges_conditions_by_type_and_statuses_by_name() {
        let pod = json!({"status": {
            "conditions": [{"type": "Ready", "status": "False"}, {"type": "Initialized", "status": "True"}],
            "containerStatuses": [{"name": "a", "ready": false}, {"name": "b", "ready": false}],
            "podIPs": [{"ip": "10.0.0.1"}]}});
        let patch = json!({"status": {
            "$setElementOrder/conditions": [{"type": "Initialized"}, {"type": "Ready"}],
            "conditions": [{"type": "Ready", "status": "True"}, {"type": "ContainersReady", "status": "True"}],
            "containerStatuses": [{"name": "b", "ready": true}],
            "podIPs": [{"ip": "10.0.0.1"}, {"ip": "fd00::1"}]}});
        let out = apply(PatchKind::Strategic, &pod, &patch).unwrap();
        let s = &out["status"];
        assert_eq!(s["conditions"].as_array().unwrap().len(), 3);
        assert_eq!(
            s["conditions"][0],
            json!({"type": "Ready", "status": "True"})
        );
        assert_eq!(s["conditions"][1]["type"], "Initialized");
        assert_eq!(s["containerStatuses"][0]["ready"], false);
        assert_eq!(s["containerStatuses"][1]["ready"], true);
        assert_eq!(s["podIPs"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn strategic_merge_honours_delete_and_replace_directives() {
        let node = json!({"status": {"addresses": [{"type": "InternalIP", "address": "a"},
                                                    {"type": "Hostname", "address": "h"}]},
                          "metadata": {"labels": {"x": "1", "y": "2"}}});
        let patch = json!({"status": {"addresses": [{"type": "Hostname", "$patch": "delete"}]},
                           "metadata": {"labels": {"$patch": "replace", "z": "3"}}});
        let out = apply(PatchKind::Strategic, &node, &patch).unwrap();
        assert_eq!(
            out["status"]["addresses"],
            json!([{"type": "InternalIP", "address": "a"}])
        );
        assert_eq!(out["metadata"]["labels"], json!({"z": "3"}));
    }

    #[test]
    fn merge_patch_replaces_lists_and_removes_nulls() {
        let obj = json!({"a": [1, 2], "b": {"c": 1, "d": 2}});
        let out = apply(PatchKind::Merge, &obj, &json!({"a": [3], "b": {"c": null}})).unwrap();
        assert_eq!(out, json!({"a": [3], "b": {"d": 2}}));
    }

    #[test]
    fn json_patch_adds_replaces_removes_and_tests() {
        let obj = json!({"metadata": {"labels": {"a": "1"}}, "list": [1]});
        let patch = json!([
            {"op": "add", "path": "/metadata/labels/b~1c", "value": "2"},
            {"op": "replace", "path": "/metadata/labels/a", "value": "9"},
            {"op": "add", "path": "/list/-", "value": 2},
            {"op": "test", "path": "/list/0", "value": 1},
            {"op": "remove", "path": "/list/0"}]);
        let out = apply(PatchKind::Json, &obj, &patch).unwrap();
        assert_eq!(
            out,
            json!({"metadata": {"labels": {"a": "9", "b/c": "2"}}, "list": [2]})
        );
        let failing = json!([{"op": "test", "path": "/list/0", "value": 5}]);
        assert_eq!(
            apply(PatchKind::Json, &obj, &failing).unwrap_err().code,
            422
        );
    }
}
