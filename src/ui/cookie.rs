//! The session cookie: HttpOnly (no script reads it), SameSite=Strict (no other site's page sends
//! it), Path=/ and, with `ui.secure_cookie`, Secure. The API never reads it: API requests
//! authenticate by a key header only, so the cookie cannot make another site's request count.

use axum::http::{header, HeaderMap, HeaderValue};

/// The cookie's name.
pub const NAME: &str = "llamactl_session";

/// The session token a request's cookies carry, if any.
pub fn session_token(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == NAME)
        .map(|(_, token)| token)
        .filter(|token| !token.is_empty())
}

/// The `Set-Cookie` value that hands the browser a session for `max_age` seconds.
pub fn set(token: &str, max_age: i64, secure: bool) -> Option<HeaderValue> {
    HeaderValue::from_str(&format!(
        "{NAME}={token}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Strict{}",
        if secure { "; Secure" } else { "" }
    ))
    .ok()
}

/// The `Set-Cookie` value that makes the browser forget the session.
pub fn clear(secure: bool) -> HeaderValue {
    if secure {
        HeaderValue::from_static(
            "llamactl_session=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict; Secure",
        )
    } else {
        HeaderValue::from_static("llamactl_session=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_session_among_other_cookies() {
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, HeaderValue::from_static("a=1; b=2"));
        assert_eq!(session_token(&h), None);
        h.append(
            header::COOKIE,
            HeaderValue::from_static("x=y;  llamactl_session=tok; z=1"),
        );
        assert_eq!(session_token(&h), Some("tok"));
        let mut empty = HeaderMap::new();
        empty.insert(
            header::COOKIE,
            HeaderValue::from_static("llamactl_session="),
        );
        assert_eq!(session_token(&empty), None);
    }

    #[test]
    fn the_cookie_is_http_only_strict_and_secure_when_asked() {
        let plain = set("t", 60, false).unwrap();
        let plain = plain.to_str().unwrap();
        assert!(plain.contains("HttpOnly") && plain.contains("SameSite=Strict"));
        assert!(!plain.contains("Secure"));
        assert!(set("t", 60, true)
            .unwrap()
            .to_str()
            .unwrap()
            .ends_with("; Secure"));
        assert!(clear(true).to_str().unwrap().contains("Max-Age=0"));
    }
}
