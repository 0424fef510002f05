//! [`ApiError`]: failures answered as the real API server answers them, a `Status`
//! body with code, reason, message and details (kube-rs and kubectl parse these).

use serde_json::{json, Value};

use super::resources::Resource;

/// A failed request, rendered as a `meta/v1` `Status`.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// HTTP status code.
    pub code: u16,
    /// The `reason` (`NotFound`, `Conflict`...).
    pub reason: &'static str,
    /// Human-readable message, worded as the real server words it.
    pub message: String,
    /// `details` (name, group, kind), if any.
    pub details: Option<Value>,
}

impl ApiError {
    fn new(code: u16, reason: &'static str, message: String) -> ApiError {
        ApiError {
            code,
            reason,
            message,
            details: None,
        }
    }

    fn about(mut self, resource: &Resource, name: &str) -> ApiError {
        self.details =
            Some(json!({"name": name, "group": resource.group, "kind": resource.plural}));
        self
    }

    /// 404: no such object.
    pub fn not_found(resource: &Resource, name: &str) -> ApiError {
        ApiError::new(
            404,
            "NotFound",
            format!("{} \"{name}\" not found", resource.qualified()),
        )
        .about(resource, name)
    }

    /// 401: no known credentials.
    pub fn unauthorized() -> ApiError {
        ApiError::new(401, "Unauthorized", "Unauthorized".into())
    }

    /// 404 for a path that names no resource.
    pub fn no_route(path: &str) -> ApiError {
        ApiError::new(
            404,
            "NotFound",
            format!("the server could not find the requested resource ({path})"),
        )
    }

    /// 409: creating an object that exists.
    pub fn already_exists(resource: &Resource, name: &str) -> ApiError {
        ApiError::new(
            409,
            "AlreadyExists",
            format!("{} \"{name}\" already exists", resource.qualified()),
        )
        .about(resource, name)
    }

    /// 409: a resourceVersion or UID precondition that does not hold.
    pub fn conflict(resource: &Resource, name: &str, why: &str) -> ApiError {
        ApiError::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": {why}",
                resource.qualified()
            ),
        )
        .about(resource, name)
    }

    /// 400: a malformed request.
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(400, "BadRequest", message.into())
    }

    /// 422: an object the server refuses.
    pub fn invalid(resource: &Resource, name: &str, message: impl Into<String>) -> ApiError {
        let message = format!(
            "{} \"{name}\" is invalid: {}",
            resource.kind,
            message.into()
        );
        ApiError::new(422, "Invalid", message).about(resource, name)
    }

    /// 405: a verb the resource does not serve.
    pub fn method_not_allowed(what: &str) -> ApiError {
        ApiError::new(
            405,
            "MethodNotAllowed",
            format!("the server does not allow this method on the requested resource ({what})"),
        )
    }

    /// 410: a watch from a resourceVersion older than the event log keeps.
    pub fn expired(requested: u64, oldest: u64) -> ApiError {
        ApiError::new(
            410,
            "Expired",
            format!("too old resource version: {requested} ({oldest})"),
        )
    }

    /// 415: a patch content type the server does not know.
    pub fn unsupported_media(content_type: &str) -> ApiError {
        ApiError::new(
            415,
            "UnsupportedMediaType",
            format!("the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json, application/apply-patch+yaml (got {content_type:?})"),
        )
    }

    /// 415: a request body in a format the fake does not decode (protobuf, CBOR).
    pub fn unsupported_body(content_type: &str) -> ApiError {
        ApiError::new(
            415,
            "UnsupportedMediaType",
            format!("the fake API server reads JSON and YAML bodies only, not {content_type:?}"),
        )
    }

    /// 502/503: the kubelet behind a proxied request cannot be reached.
    pub fn proxy(message: impl Into<String>) -> ApiError {
        ApiError::new(502, "InternalError", message.into())
    }

    /// The `Status` object.
    pub fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(details) = &self.details {
            status["details"] = details.clone();
        }
        status
    }
}

/// Shorthand for results of store operations.
pub type ApiResult<T> = Result<T, ApiError>;
