//! Checks a defaulted Pod for what the API server would reject and the kubelet needs.
//!
//! Messages follow the API server's wording (`Required value`, `Unsupported
//! value`, `Duplicate value`) so they read like `kubectl apply` errors. Every
//! problem is collected, not just the first, so one edit can fix them all.

use std::collections::HashSet;
use std::fmt;

use k8s_openapi::api::core::v1::{Container, Pod, PodSpec};

/// One field found wrong: its path in the document and what was expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Path of the field, as `spec.containers[0].ports[1].containerPort`.
    pub path: String,
    /// What is wrong and what was expected.
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// The longest DNS-1123 subdomain (an object name).
const MAX_SUBDOMAIN: usize = 253;
/// The longest DNS-1123 label (a namespace or container name).
const MAX_LABEL: usize = 63;

/// Every problem with `pod`, whose name will be suffixed with `-<node_name>`.
pub fn pod(pod: &Pod, node_name: &str) -> Vec<FieldError> {
    let mut errors = Errors::default();
    match pod.metadata.name.as_deref() {
        None | Some("") => errors.push("metadata.name", "Required value: name is required"),
        Some(name) => {
            errors.check("metadata.name", subdomain(name));
            // The running name gets `-<node>`; it must still be a valid name.
            let full = name.len() + 1 + node_name.len();
            if full > MAX_SUBDOMAIN {
                errors.push(
                    "metadata.name",
                    format!("must be no more than {MAX_SUBDOMAIN} characters once suffixed with \"-{node_name}\" (would be {full})"),
                );
            }
        }
    }
    if let Some(namespace) = pod.metadata.namespace.as_deref() {
        errors.check("metadata.namespace", label(namespace));
    }
    match &pod.spec {
        None => errors.push(
            "spec",
            "Required value: a Pod needs a spec with at least one container",
        ),
        Some(spec) => check_spec(spec, &mut errors),
    }
    errors.0
}

fn check_spec(spec: &PodSpec, errors: &mut Errors) {
    if spec.containers.is_empty() {
        errors.push(
            "spec.containers",
            "Required value: a Pod needs at least one container",
        );
    }
    one_of(
        errors,
        "spec.restartPolicy",
        spec.restart_policy.as_deref(),
        &["Always", "OnFailure", "Never"],
    );
    one_of(
        errors,
        "spec.dnsPolicy",
        spec.dns_policy.as_deref(),
        &["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"],
    );
    if let Some(seconds) = spec.termination_grace_period_seconds.filter(|s| *s < 0) {
        errors.push(
            "spec.terminationGracePeriodSeconds",
            format!("Invalid value: {seconds}: must be greater than or equal to 0"),
        );
    }
    for (path, message) in crate::pod::security::validate(spec) {
        errors.push(path, message);
    }
    // Container names are unique across init and app containers: logs, exec
    // and status all address a container by name alone.
    let mut names = HashSet::new();
    let init = spec.init_containers.iter().flatten().enumerate();
    for (i, c) in init {
        let path = format!("spec.initContainers[{i}]");
        check_container(c, &path, &mut names, errors);
        one_of(
            errors,
            &format!("{path}.restartPolicy"),
            c.restart_policy.as_deref(),
            &["Always"],
        );
    }
    for (i, c) in spec.containers.iter().enumerate() {
        let path = format!("spec.containers[{i}]");
        check_container(c, &path, &mut names, errors);
        if c.restart_policy.is_some() {
            errors.push(
                format!("{path}.restartPolicy"),
                "Forbidden: only init containers may set restartPolicy",
            );
        }
    }
}

fn check_container<'a>(
    c: &'a Container,
    path: &str,
    names: &mut HashSet<&'a str>,
    errors: &mut Errors,
) {
    if c.name.is_empty() {
        errors.push(format!("{path}.name"), "Required value");
    } else {
        errors.check(&format!("{path}.name"), label(&c.name));
        if !names.insert(&c.name) {
            errors.push(
                format!("{path}.name"),
                format!(
                    "Duplicate value: {:?}: container names must be unique in a pod",
                    c.name
                ),
            );
        }
    }
    if c.image.as_deref().unwrap_or_default().trim().is_empty() {
        errors.push(
            format!("{path}.image"),
            "Required value: an image is required",
        );
    }
    one_of(
        errors,
        &format!("{path}.imagePullPolicy"),
        c.image_pull_policy.as_deref(),
        &["Always", "IfNotPresent", "Never"],
    );
    one_of(
        errors,
        &format!("{path}.terminationMessagePolicy"),
        c.termination_message_policy.as_deref(),
        &["File", "FallbackToLogsOnError"],
    );
    for (field, message) in crate::pod::resources::problems(c) {
        errors.push(format!("{path}.{field}"), message);
    }
    for (j, port) in c.ports.iter().flatten().enumerate() {
        let path = format!("{path}.ports[{j}]");
        if !(1..=65535).contains(&port.container_port) {
            errors.push(
                format!("{path}.containerPort"),
                format!(
                    "Invalid value: {}: must be between 1 and 65535, inclusive",
                    port.container_port
                ),
            );
        }
        // 0 is how the API spells "no host port".
        if let Some(host) = port.host_port.filter(|p| !(0..=65535).contains(p)) {
            errors.push(
                format!("{path}.hostPort"),
                format!("Invalid value: {host}: must be between 1 and 65535, inclusive"),
            );
        }
        one_of(
            errors,
            &format!("{path}.protocol"),
            port.protocol.as_deref(),
            &["TCP", "UDP", "SCTP"],
        );
        if let Some(name) = &port.name {
            errors.check(&format!("{path}.name"), port_name(name));
        }
    }
}

/// Collected field errors.
#[derive(Default)]
struct Errors(Vec<FieldError>);

impl Errors {
    fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError {
            path: path.into(),
            message: message.into(),
        });
    }

    fn check(&mut self, path: &str, result: Result<(), String>) {
        if let Err(message) = result {
            self.push(path, message);
        }
    }
}

fn one_of(errors: &mut Errors, path: &str, value: Option<&str>, allowed: &[&str]) {
    if let Some(value) = value.filter(|v| !allowed.contains(v)) {
        let allowed: Vec<String> = allowed.iter().map(|a| format!("{a:?}")).collect();
        errors.push(
            path,
            format!(
                "Unsupported value: {value:?}: supported values: {}",
                allowed.join(", ")
            ),
        );
    }
}

/// A DNS-1123 label: what namespaces and container names must be.
pub fn label(value: &str) -> Result<(), String> {
    if value.len() > MAX_LABEL {
        return Err(format!(
            "Invalid value: {value:?}: must be no more than {MAX_LABEL} characters"
        ));
    }
    if label_ok(value) {
        Ok(())
    } else {
        Err(format!(
            "Invalid value: {value:?}: a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', \
             and must start and end with an alphanumeric character (e.g. 'my-name')"
        ))
    }
}

/// A DNS-1123 subdomain: what object names must be.
pub fn subdomain(value: &str) -> Result<(), String> {
    if value.len() > MAX_SUBDOMAIN {
        return Err(format!(
            "Invalid value: {value:?}: must be no more than {MAX_SUBDOMAIN} characters"
        ));
    }
    if value.split('.').all(label_ok) {
        Ok(())
    } else {
        Err(format!(
            "Invalid value: {value:?}: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', \
             and must start and end with an alphanumeric character (e.g. 'example.com')"
        ))
    }
}

fn label_ok(part: &str) -> bool {
    let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    !part.is_empty()
        && part.chars().all(|c| alnum(c) || c == '-')
        && part.starts_with(alnum)
        && part.ends_with(alnum)
}

/// An IANA service name, what a named port must be (so Services can target it).
fn port_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 15
        && label_ok(name)
        && !name.contains("--")
        && name.chars().any(|c| c.is_ascii_lowercase());
    if ok {
        Ok(())
    } else {
        Err(format!(
            "Invalid value: {name:?}: must be no more than 15 characters, contain only lower case alphanumerics and '-', \
             contain at least one letter, and neither start nor end with '-' nor contain '--'"
        ))
    }
}
