//! The dashboard's session handlers: sign in, sign out.

use super::cookie;
use super::forms;
use super::signed_in::{ClientAddr, SignedIn};
use super::templates::{render, PageError, SignInPage};
use crate::error::Error;
use crate::http::AppState;
use axum::extract::rejection::FormRejection;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use serde::Deserialize;

/// The sign-in form's fields.
#[derive(Debug, Deserialize)]
pub struct SignInForm {
    /// The API key, typed in once.
    #[serde(default)]
    key: String,
}

/// The sign-out form's fields.
#[derive(Debug, Deserialize)]
pub struct SignOutForm {
    /// The session's CSRF token.
    csrf: Option<String>,
}

/// `GET /sign-in`: the form, unless a session is in force already.
pub async fn sign_in_form(
    State(state): State<AppState>,
    ClientAddr(addr): ClientAddr,
    headers: HeaderMap,
) -> Response {
    if let Some(token) = cookie::session_token(&headers) {
        if let Ok(Some(_)) = state.sessions.resolve(token, addr).await {
            return Redirect::to("/").into_response();
        }
    }
    render(StatusCode::OK, &SignInPage { error: None })
}

/// `POST /sign-in`: exchanges the key for a session (the key is not kept) and goes home.
pub async fn sign_in(
    State(state): State<AppState>,
    ClientAddr(addr): ClientAddr,
    headers: HeaderMap,
    form: Result<Form<SignInForm>, FormRejection>,
) -> Response {
    if let Err(e) = forms::same_origin(&headers) {
        return PageError(e).into_response();
    }
    let form = match form {
        Ok(Form(form)) => form,
        Err(e) => return PageError(Error::BadRequest(e.body_text())).into_response(),
    };
    let holder = match state.auth.sign_in(&form.key, addr).await {
        Ok(holder) => holder,
        Err(e @ (Error::Unauthorized(_) | Error::TooManyRequests { .. })) => {
            let status = e.status();
            let mut page = render(
                status,
                &SignInPage {
                    error: Some(e.public_message()),
                },
            );
            if let Error::TooManyRequests { retry_after, .. } = e {
                page.headers_mut()
                    .insert(header::RETRY_AFTER, retry_after.into());
            }
            return page;
        }
        Err(e) => return PageError(e).into_response(),
    };
    let session = match state.sessions.create(&holder).await {
        Ok(session) => session,
        Err(e) => return PageError(e).into_response(),
    };
    let Some(set_cookie) = cookie::set(&session.token, session.max_age, state.cfg.ui.secure_cookie)
    else {
        return PageError(Error::Internal(
            "session token is not a cookie value".into(),
        ))
        .into_response();
    };
    let mut home = Redirect::to("/").into_response();
    home.headers_mut().insert(header::SET_COOKIE, set_cookie);
    home
}

/// `POST /sign-out`: ends the session (its CSRF token required) and forgets the cookie.
pub async fn sign_out(
    State(state): State<AppState>,
    viewer: SignedIn,
    headers: HeaderMap,
    form: Result<Form<SignOutForm>, FormRejection>,
) -> Response {
    if let Err(e) = forms::same_origin(&headers) {
        return PageError(e).into_response();
    }
    if let Some((session, token)) = &viewer.session {
        let field = form.as_ref().ok().and_then(|Form(f)| f.csrf.as_deref());
        if let Err(e) = forms::csrf(session, &headers, field) {
            return PageError(e).into_response();
        }
        if let Err(e) = state.sessions.end(token).await {
            return PageError(e).into_response();
        }
    }
    let mut to_sign_in = Redirect::to("/sign-in").into_response();
    to_sign_in.headers_mut().insert(
        header::SET_COOKIE,
        cookie::clear(state.cfg.ui.secure_cookie),
    );
    to_sign_in
}
