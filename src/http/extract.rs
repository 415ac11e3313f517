//! axum's extractors, with their rejections turned into the crate's error (and so the error body).

use crate::error::Error;
use axum::extract::{FromRequest, FromRequestParts};

/// `axum::Json` whose rejection is a 400/413/415 with the `{"error": ...}` body.
#[derive(Debug, FromRequest)]
#[from_request(via(axum::Json), rejection(Error))]
pub struct Json<T>(pub T);

/// `axum::extract::Path` whose rejection is a 400 with the error body.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(Error))]
pub struct Path<T>(pub T);

/// `axum::extract::Query` whose rejection is a 400 with the error body.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(Error))]
pub struct Query<T>(pub T);
