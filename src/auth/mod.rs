//! API keys: which keys exist, and what a presented key may do.
//!
//! Keys are compared as SHA-256 digests in constant time, so neither content nor length leaks
//! through timing, and no key is kept in memory in plain text after startup.

use crate::config::AuthConfig;
use crate::error::{Error, Result};
use axum::http::{header, HeaderMap};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// What a request needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The `/api/v1` management API.
    Management,
    /// Inference: `/v1` and the instance proxy.
    Inference,
}

/// Who made a request, for the history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// A printable, non-secret name for the caller.
    pub actor: String,
}

/// The keys in force.
#[derive(Debug)]
pub struct Keys {
    require_management: bool,
    require_inference: bool,
    management: Vec<[u8; 32]>,
    inference: Vec<[u8; 32]>,
}

fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

fn contains(set: &[[u8; 32]], probe: &[u8; 32]) -> bool {
    // Visit every entry so the time does not tell which one matched.
    set.iter()
        .fold(subtle::Choice::from(0), |found, k| found | k.ct_eq(probe))
        .into()
}

/// The key a request presents: `Authorization: Bearer <key>` or `X-API-Key: <key>`.
pub fn presented_key(headers: &HeaderMap) -> Option<&str> {
    if let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let (scheme, key) = value.trim().split_once(' ')?;
        return scheme.eq_ignore_ascii_case("bearer").then(|| key.trim());
    }
    headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

impl Keys {
    /// Keys from the configuration.
    pub fn from_config(cfg: &AuthConfig) -> Self {
        Keys {
            require_management: cfg.require_management_auth,
            require_inference: cfg.require_inference_auth,
            management: cfg.management_keys.iter().map(|k| digest(k)).collect(),
            inference: cfg.inference_keys.iter().map(|k| digest(k)).collect(),
        }
    }

    /// True if management auth is on and no management key exists.
    pub fn management_locked_out(&self) -> bool {
        self.require_management && self.management.is_empty()
    }

    /// Decides whether a request with these headers may use `scope`.
    pub fn authorize(&self, headers: &HeaderMap, scope: Scope) -> Result<Caller> {
        let required = match scope {
            Scope::Management => self.require_management,
            Scope::Inference => self.require_inference,
        };
        if !required {
            return Ok(Caller {
                actor: "anonymous".into(),
            });
        }
        let key = presented_key(headers)
            .filter(|k| !k.is_empty())
            .ok_or_else(|| {
                Error::Unauthorized("missing API key (use 'Authorization: Bearer <key>')".into())
            })?;
        let probe = digest(key);
        if contains(&self.management, &probe) {
            // A management key also works for inference.
            return Ok(Caller {
                actor: "config-management-key".into(),
            });
        }
        if contains(&self.inference, &probe) {
            return match scope {
                Scope::Inference => Ok(Caller {
                    actor: "config-inference-key".into(),
                }),
                Scope::Management => Err(Error::Forbidden(
                    "an inference key cannot use the management API".into(),
                )),
            };
        }
        Err(Error::Unauthorized("invalid API key".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn keys() -> Keys {
        Keys::from_config(&AuthConfig {
            require_management_auth: true,
            require_inference_auth: true,
            management_keys: vec!["m-key".into()],
            inference_keys: vec!["i-key".into()],
            ..AuthConfig::default()
        })
    }

    fn bearer(key: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {key}")).unwrap(),
        );
        h
    }

    #[test]
    fn decides_by_key_kind() {
        let k = keys();
        let cases: &[(&str, Scope, Option<u16>)] = &[
            ("m-key", Scope::Management, None),
            ("m-key", Scope::Inference, None),
            ("i-key", Scope::Inference, None),
            ("i-key", Scope::Management, Some(403)),
            ("nope", Scope::Management, Some(401)),
            ("m-key-longer", Scope::Management, Some(401)),
        ];
        for (key, scope, want) in cases {
            let got = k
                .authorize(&bearer(key), *scope)
                .err()
                .map(|e| e.status().as_u16());
            assert_eq!(got, *want, "{key} {scope:?}");
        }
        let missing = k
            .authorize(&HeaderMap::new(), Scope::Inference)
            .unwrap_err();
        assert_eq!(missing.status().as_u16(), 401);
    }

    #[test]
    fn accepts_x_api_key_and_off_means_open() {
        let mut h = HeaderMap::new();
        h.insert("x-api-key", HeaderValue::from_static("i-key"));
        assert!(keys().authorize(&h, Scope::Inference).is_ok());
        let open = Keys::from_config(&AuthConfig {
            require_management_auth: false,
            require_inference_auth: false,
            management_keys: vec![],
            inference_keys: vec![],
            ..AuthConfig::default()
        });
        assert!(open.authorize(&HeaderMap::new(), Scope::Management).is_ok());
        assert!(!open.management_locked_out());
    }

    #[test]
    fn non_bearer_scheme_is_not_a_key() {
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Basic m-key"),
        );
        assert_eq!(
            keys()
                .authorize(&h, Scope::Management)
                .unwrap_err()
                .status()
                .as_u16(),
            401
        );
    }
}
