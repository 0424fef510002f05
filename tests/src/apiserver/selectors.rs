//! Label and field selectors (`labelSelector=app=web,tier!=db,env in (a,b),!legacy`,
//! `fieldSelector=spec.nodeName=n1,metadata.name!=x`) matched against JSON objects.

use serde_json::Value;

use super::status::{ApiError, ApiResult};

/// One requirement of a selector.
#[derive(Debug, Clone, PartialEq)]
enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    DoesNotExist(String),
}

/// A parsed selector: every requirement must hold. Empty matches everything.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Selector {
    requirements: Vec<Requirement>,
    fields: bool,
}

impl Selector {
    /// A label selector.
    pub fn labels(text: &str) -> ApiResult<Selector> {
        parse(text, false)
    }

    /// A field selector (only `=`, `==` and `!=`, as the real server accepts).
    pub fn fields(text: &str) -> ApiResult<Selector> {
        parse(text, true)
    }

    /// Whether `object` satisfies every requirement.
    pub fn matches(&self, object: &Value) -> bool {
        self.requirements.iter().all(|r| {
            let lookup = |key: &str| -> Option<String> {
                if self.fields {
                    Some(field(object, key))
                } else {
                    object["metadata"]["labels"][key]
                        .as_str()
                        .map(str::to_string)
                }
            };
            match r {
                Requirement::Equals(k, v) => lookup(k).as_deref() == Some(v.as_str()),
                Requirement::NotEquals(k, v) => lookup(k).as_deref() != Some(v.as_str()),
                Requirement::In(k, vs) => lookup(k).is_some_and(|x| vs.contains(&x)),
                Requirement::NotIn(k, vs) => !lookup(k).is_some_and(|x| vs.contains(&x)),
                Requirement::Exists(k) => lookup(k).is_some(),
                Requirement::DoesNotExist(k) => lookup(k).is_none(),
            }
        })
    }
}

/// A field of `object` by dotted path, as a string (`""` when absent, as the real
/// server's field sets give empty values).
fn field(object: &Value, path: &str) -> String {
    let mut at = object;
    for part in path.split('.') {
        at = &at[part];
    }
    match at {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Splits on commas outside parentheses.
fn terms(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0i32, 0usize);
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&text[start..]);
    out.into_iter()
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .collect()
}

fn parse(text: &str, fields: bool) -> ApiResult<Selector> {
    let invalid = |term: &str| {
        ApiError::bad_request(format!(
            "unable to parse requirement {term:?} in selector {text:?}"
        ))
    };
    let mut requirements = Vec::new();
    for term in terms(text) {
        let requirement = if let Some((k, v)) = term.split_once("!=") {
            Requirement::NotEquals(k.trim().into(), v.trim().into())
        } else if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
            Requirement::Equals(k.trim().into(), v.trim().into())
        } else if fields {
            return Err(invalid(term));
        } else if let Some(k) = term.strip_prefix('!') {
            Requirement::DoesNotExist(k.trim().into())
        } else if let Some((k, set)) = set_term(term, " notin ") {
            Requirement::NotIn(k, set)
        } else if let Some((k, set)) = set_term(term, " in ") {
            Requirement::In(k, set)
        } else if term.contains(['(', ')', ' ', '<', '>']) {
            return Err(invalid(term));
        } else {
            Requirement::Exists(term.into())
        };
        requirements.push(requirement);
    }
    Ok(Selector {
        requirements,
        fields,
    })
}

/// `key in (a,b)` → (key, [a, b]).
fn set_term(term: &str, op: &str) -> Option<(String, Vec<String>)> {
    let (key, rest) = term.split_once(op)?;
    let inner = rest.trim().strip_prefix('(')?.strip_suffix(')')?;
    let values = inner
        .split(',')
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .collect();
    Some((key.trim().to_string(), values))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod() -> Value {
        json!({"metadata": {"name": "p", "namespace": "ns", "labels": {"app": "web", "tier": "fe"}},
               "spec": {"nodeName": "n1"}})
    }

    #[test]
    fn label_selectors_follow_the_set_based_grammar() {
        let ok = |s: &str| Selector::labels(s).unwrap().matches(&pod());
        assert!(ok(""));
        assert!(ok("app=web"));
        assert!(ok("app==web,tier!=db"));
        assert!(ok("app in (web, api),tier"));
        assert!(!ok("app notin (web)"));
        assert!(ok("!legacy"));
        assert!(!ok("legacy"));
        assert!(!ok("app=api"));
    }

    #[test]
    fn field_selectors_read_dotted_paths() {
        let ok = |s: &str| Selector::fields(s).unwrap().matches(&pod());
        assert!(ok("spec.nodeName=n1,metadata.namespace=ns"));
        assert!(!ok("spec.nodeName=n2"));
        assert!(ok("metadata.name!=q"));
        assert!(Selector::fields("spec.nodeName").is_err());
    }
}
