//! The one error type of the HTTP layer: every error answer is
//! `{"error": "<code>", "message": "<human text>"}` with its status, built from an
//! [`ApiError`] (directly, or converted from a store, reload or backup error).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::state::ReloadError;
use crate::store::StoreError;
use crate::store::backup::BackupError;

/// An error answer: status, machine-readable code, message for a person.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    retry_after: Option<u64>,
}

/// What a route answers.
pub type ApiResult<T = Response> = Result<T, ApiError>;

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    /// `400 invalid_request`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }

    /// `404 not_found`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// `409` with its code.
    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, message)
    }

    /// `503 storage_unavailable`.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "storage_unavailable",
            message,
        )
    }

    /// Adds a `Retry-After` header (seconds).
    pub fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn code(&self) -> &'static str {
        self.code
    }

    pub fn message(&self) -> &str {
        &self.message
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = json(
            self.status,
            &json!({"error": self.code, "message": self.message}),
        );
        if let Some(s) = self.retry_after {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        r
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ApiError::unavailable(format!("the store could not be read: {e}"))
    }
}

impl From<ReloadError> for ApiError {
    fn from(e: ReloadError) -> Self {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_config",
            e.to_string(),
        )
    }
}

impl From<BackupError> for ApiError {
    fn from(e: BackupError) -> Self {
        match e {
            BackupError::InvalidName(m) => ApiError::bad_request(m),
            e @ BackupError::Exists(_) => ApiError::conflict("exists", e.to_string()),
            BackupError::Store(e) => e.into(),
            e @ BackupError::Io(_) => {
                tracing::error!(error = %e, "backup failed");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "backup_failed",
                    e.to_string(),
                )
            }
        }
    }
}

/// A JSON response with the given status.
pub fn json(status: StatusCode, body: &serde_json::Value) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let mut r = (status, bytes).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// `200` with a JSON body.
pub fn ok(body: &serde_json::Value) -> ApiResult {
    Ok(json(StatusCode::OK, body))
}
