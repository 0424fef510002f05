//! Errors as the Kubernetes API answers them: a `v1.Status` body with the HTTP code.

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
