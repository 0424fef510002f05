//! Errors as the Kubernetes API answers them: a `v1.Status` body with the HTTP code
//! ([`ApiError`], the server's side), and read back by the `peapod` CLI
//! ([`ServerError`], printed as kubectl prints it).

use std::fmt;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Status;

use super::NodeError;

/// A failed request: the HTTP code, the Status `reason` and a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status code (also the Status' `code`).
    pub code: StatusCode,
    /// The machine-readable reason (`NotFound`, `Invalid`, `Conflict`, ...).
    pub reason: &'static str,
    /// What went wrong, for a human.
    pub message: String,
}

impl ApiError {
    /// 404 NotFound.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "NotFound", message)
    }

    /// 400 BadRequest.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "BadRequest", message)
    }

    /// 409 Conflict.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "Conflict", message)
    }

    /// 422 Invalid: the object (here, the manifest) is malformed.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "Invalid", message)
    }

    /// 500 InternalError.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", message)
    }

    fn new(code: StatusCode, reason: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            code,
            reason,
            message: message.into(),
        }
    }

    /// The v1 Status body.
    pub fn status(&self) -> Status {
        Status {
            code: Some(i32::from(self.code.as_u16())),
            message: Some(self.message.clone()),
            reason: Some(self.reason.to_owned()),
            status: Some("Failure".to_owned()),
            ..Status::default()
        }
    }
}

impl From<NodeError> for ApiError {
    fn from(err: NodeError) -> Self {
        let message = err.to_string();
        match err {
            NodeError::PodNotFound { .. } => ApiError::not_found(message),
            NodeError::ContainerNotFound { .. } | NodeError::BadRequest(_) => {
                ApiError::bad_request(message)
            }
            NodeError::Internal(_) => ApiError::internal(message),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.code, Json(self.status())).into_response()
    }
}

/// An error the kubelet answered, printed as kubectl prints API errors:
/// `Error from server (NotFound): pods "x" not found`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerError {
    /// The HTTP status code.
    pub code: u16,
    /// The Status' reason (`NotFound`, `Invalid`, ...); empty if none.
    pub reason: String,
    /// The Status' message, or the body as text.
    pub message: String,
}

impl fmt::Display for ServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.reason.is_empty() {
            write!(f, "Error from server: {}", self.message)
        } else {
            write!(f, "Error from server ({}): {}", self.reason, self.message)
        }
    }
}

impl std::error::Error for ServerError {}

impl ServerError {
    /// Read a non-2xx answer: a v1 Status body, else the body as text.
    pub fn from_body(code: u16, body: &[u8]) -> ServerError {
        let status: Option<serde_json::Value> = serde_json::from_slice(body).ok();
        let field = |name: &str| {
            status
                .as_ref()
                .and_then(|s| s.get(name))
                .and_then(|v| v.as_str())
                .map(str::to_owned)
        };
        match field("message") {
            Some(message) => ServerError {
                code,
                reason: field("reason").unwrap_or_default(),
                message,
            },
            None => ServerError {
                code,
                reason: String::new(),
                message: format!("{code}: {}", String::from_utf8_lossy(body).trim_end()),
            },
        }
    }

    /// Whether the kubelet said there is no such object.
    pub fn is_not_found(&self) -> bool {
        self.code == 404
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_bodies_read_as_kubectl_prints_them() {
        let body = br#"{"kind":"Status","apiVersion":"v1","status":"Failure","message":"pods \"x\" not found","reason":"NotFound","code":404}"#;
        let err = ServerError::from_body(404, body);
        assert_eq!(
            err.to_string(),
            r#"Error from server (NotFound): pods "x" not found"#
        );
        assert!(err.is_not_found());
        let err = ServerError::from_body(502, b"bad gateway\n");
        assert_eq!(err.to_string(), "Error from server: 502: bad gateway");
        assert!(!err.is_not_found());
    }

    #[test]
    fn what_the_server_answers_reads_back_whole() {
        let sent = ApiError::conflict("pod web is defined in both.yaml");
        let body = serde_json::to_vec(&sent.status()).unwrap();
        let read = ServerError::from_body(sent.code.as_u16(), &body);
        assert_eq!(
            read.to_string(),
            "Error from server (Conflict): pod web is defined in both.yaml"
        );
        assert_eq!(read.code, 409);
    }
}
