//! Who is looking at a page: the caller of the session the request's cookie opens, exactly as
//! the API would see the key it was made with; without a session, whoever the API lets in
//! without a key (anyone, while the management API is open); else the sign-in page.

use super::cookie;
use super::templates::PageError;
use crate::auth::sessions::Session;
use crate::auth::{Caller, Scope};
use crate::http::AppState;
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{header, Extensions, HeaderMap};
use axum::response::{IntoResponse, Redirect, Response};
use std::net::{IpAddr, SocketAddr};

/// The page's viewer.
#[derive(Debug, Clone)]
pub struct SignedIn {
    /// The caller, as the API would see them.
    pub caller: Caller,
    /// The session, with its token, if the viewer signed in (not while the API is open).
    pub session: Option<(Session, String)>,
}

impl SignedIn {
    /// 403 unless the viewer may manage (a management key, or anyone while the management API is
    /// open): the API's own rule, with its message.
    pub fn ensure_operator(&self) -> crate::error::Result<()> {
        if self.caller.is_operator() {
            Ok(())
        } else {
            Err(crate::error::Error::Forbidden(
                "an inference key cannot use the management API".into(),
            ))
        }
    }

    /// 403 unless a mutating request comes from our own page and, with a session, carries its
    /// CSRF token.
    pub fn check_form(&self, headers: &HeaderMap, csrf: &str) -> crate::error::Result<()> {
        super::forms::same_origin(headers)?;
        match &self.session {
            Some((session, _)) => {
                super::forms::csrf(session, headers, Some(csrf).filter(|c| !c.is_empty()))
            }
            None => Ok(()),
        }
    }
}

/// The peer's IP, with IPv4-mapped IPv6 addresses folded to IPv4, as the API's guard does.
pub fn client_addr(extensions: &Extensions) -> Option<IpAddr> {
    extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| info.0.ip().to_canonical())
}

/// The peer's IP as an extractor.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub Option<IpAddr>);

impl<S: Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientAddr(client_addr(&parts.extensions)))
    }
}

impl FromRequestParts<AppState> for SignedIn {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let addr = client_addr(&parts.extensions);
        let token = cookie::session_token(&parts.headers);
        if let Some(token) = token {
            match state.sessions.resolve(token, addr).await {
                Ok(Some(session)) => {
                    return Ok(SignedIn {
                        caller: session.caller.clone(),
                        session: Some((session, token.to_string())),
                    })
                }
                Ok(None) => {}
                Err(e) => return Err(PageError(e).into_response()),
            }
        }
        if let Ok(caller) = state
            .auth
            .authorize(&HeaderMap::new(), Scope::Management, addr)
            .await
        {
            return Ok(SignedIn {
                caller,
                session: None,
            });
        }
        let mut to_sign_in = Redirect::to("/sign-in").into_response();
        if token.is_some() {
            // An ended session: the browser may as well forget it.
            to_sign_in.headers_mut().insert(
                header::SET_COOKIE,
                cookie::clear(state.cfg.ui.secure_cookie),
            );
        }
        Err(to_sign_in)
    }
}
