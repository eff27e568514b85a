//! API errors: a status, a message safe to show, and an id. Internal failures are logged with
//! their id and cause; the client gets only the id (never a stack trace or a database message).
use axum::{
    Json,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::Serialize;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// Seconds, for 429 responses.
    pub retry_after: Option<u64>,
}

#[derive(Serialize)]
struct Body<'a> {
    error: &'a str,
    id: String,
}

/// A short random id that ties a response to the log line describing it.
pub fn error_id() -> String {
    format!("{:016x}", rand::random::<u64>())
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            retry_after: None,
        }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, message)
    }
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }
    /// A parameter outside its schema (range, enum).
    pub fn unprocessable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, message)
    }
    /// An internal failure: the cause is logged under a fresh id, the client sees only the id.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: format!("\u{0}{cause}"),
            retry_after: None,
        }
    }
}

impl From<decnet_core::RepoError> for ApiError {
    fn from(e: decnet_core::RepoError) -> Self {
        ApiError::internal(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let id = error_id();
        let message = if let Some(cause) = self.message.strip_prefix('\u{0}') {
            tracing::error!(error_id = %id, "internal error: {cause}");
            "internal error"
        } else {
            if self.status.is_server_error() {
                tracing::error!(error_id = %id, "{}", self.message);
            } else {
                tracing::debug!(error_id = %id, status = self.status.as_u16(), "{}", self.message);
            }
            self.message.as_str()
        };
        let mut resp = (self.status, Json(Body { error: message, id })).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            // RFC 9110 §15.5.2: a 401 names the scheme that would work.
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"decnet\""),
            );
        }
        if let Some(s) = self.retry_after
            && let Ok(v) = HeaderValue::from_str(&s.to_string())
        {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        resp
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
