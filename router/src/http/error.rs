//! `RouterError` as an HTTP answer: TGI's status code and `{"error","error_type"}` body.

use crate::api::ErrorResponse;
use crate::error::RouterError;
use axum::response::{IntoResponse, Response};
use axum::Json;

impl IntoResponse for RouterError {
    fn into_response(self) -> Response {
        let status = self.status_code();
        let body = ErrorResponse {
            error: self.to_string(),
            error_type: self.error_type().to_string(),
        };
        (status, Json(body)).into_response()
    }
}
