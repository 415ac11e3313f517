//! API keys: who may call what.
//!
//! - `token`: the key format and where a request carries it;
//! - `hash`: argon2id (stored) and SHA-256 (cache, config keys);
//! - `config_keys`: keys from the configuration file;
//! - `cache` and `store`: keys stored in SQLite and the cache of verified ones;
//! - `limit`: the per-client budget of failed attempts, checked before any verification;
//! - `known_clients`: clients that presented a valid key recently (they keep a hashing turn);
//! - `caller`: the authenticated caller handed to handlers;
//! - `sessions`: the dashboard's sign-in sessions, which resolve to the same caller;
//! - `bootstrap`: the first management key.

pub mod bootstrap;
pub mod cache;
pub mod caller;
pub mod config_keys;
pub mod hash;
pub mod known_clients;
pub mod limit;
pub mod model;
pub mod policy;
pub mod sessions;
pub mod store;
pub mod token;

pub use caller::Caller;
pub use model::{Access, KeyKind};

pub use store::KeyStore;

use crate::audit::Actor;
use crate::config::AuthConfig;
use crate::db::Db;
use crate::error::{Error, Result};
use axum::http::HeaderMap;
use config_keys::ConfigKeys;
use hash::Lane;
use known_clients::KnownClients;
use limit::FailureLimiter;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

/// What a request needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The `/api/v1` management API.
    Management,
    /// Inference: `/v1` and the instance proxy.
    Inference,
}

/// How often cached keys are checked for revocation by another process (the CLI).
pub const REVOCATION_SYNC: Duration = Duration::from_secs(2);

/// How often last-use times are written to the database.
const USAGE_FLUSH: Duration = Duration::from_secs(30);

/// How often quota counters that changed are written to the database: a crash loses at most
/// this much of the counts.
const QUOTA_FLUSH: Duration = Duration::from_secs(2);

/// Authentication for the HTTP layer; cheap to clone.
#[derive(Debug, Clone)]
pub struct Auth {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    require_management: bool,
    require_inference: bool,
    config_keys: ConfigKeys,
    store: KeyStore,
    limiter: FailureLimiter,
    known: KnownClients,
}

impl Auth {
    /// Authentication by the keys in `cfg` and in `db`.
    pub fn new(cfg: &AuthConfig, db: Db) -> Result<Self> {
        let limiter = FailureLimiter::new(
            cfg.failed_auth_burst,
            Duration::from_secs(cfg.failed_auth_period),
        )?;
        Ok(Auth {
            inner: Arc::new(Inner {
                require_management: cfg.require_management_auth,
                require_inference: cfg.require_inference_auth,
                config_keys: ConfigKeys::from_config(cfg),
                store: KeyStore::new(db),
                limiter,
                known: KnownClients::default(),
            }),
        })
    }

    /// The stored keys.
    pub fn keys(&self) -> &KeyStore {
        &self.inner.store
    }

    /// On first boot, creates a management key if auth needs one and none was ever created,
    /// writing it to a private file in `data_dir`.
    pub async fn first_boot(&self, data_dir: &std::path::Path) -> Result<bootstrap::FirstBoot> {
        bootstrap::first_management_key(
            &self.inner.store,
            self.inner.config_keys.has_management(),
            self.inner.require_management,
            data_dir,
        )
        .await
    }

    /// Decides whether a request with these headers, from `addr`, may use `scope`.
    /// Missing, wrong, expired or revoked key: 401, or 429 once the client's budget of failures is
    /// spent; a key of the wrong kind: 403; no turn to verify a key under a flood: 503.
    pub async fn authorize(
        &self,
        headers: &HeaderMap,
        scope: Scope,
        addr: Option<IpAddr>,
    ) -> Result<Caller> {
        let required = match scope {
            Scope::Management => self.inner.require_management,
            Scope::Inference => self.inner.require_inference,
        };
        if !required {
            return Ok(Caller::anonymous(addr, !self.inner.require_management));
        }
        let token = token::presented_key(headers)
            .filter(|k| !k.is_empty())
            .ok_or_else(|| {
                Error::Unauthorized("missing API key (use 'Authorization: Bearer <key>')".into())
            });
        let holder = self.identify_within_budget(token, addr).await?;
        permit(holder.kind, scope)?;
        Ok(holder.caller)
    }

    /// Checks a key typed into the dashboard's sign-in form, exactly as a request presenting it
    /// would be checked (same failure budget), whether or not the API needs keys.
    pub async fn sign_in(&self, key: &str, addr: Option<IpAddr>) -> Result<KeyHolder> {
        let key = Some(key.trim())
            .filter(|k| !k.is_empty())
            .ok_or_else(|| Error::Unauthorized("enter an API key".into()));
        self.identify_within_budget(key, addr).await
    }

    /// [`Auth::identify`], with refusals of the key spending the client's budget of failures.
    async fn identify_within_budget(
        &self,
        token: Result<&str>,
        addr: Option<IpAddr>,
    ) -> Result<KeyHolder> {
        // Requests without a peer address (in-process callers) share one budget.
        let client = addr.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        let found = match token {
            Ok(token) => self.identify(token, addr, client).await,
            Err(e) => Err(e),
        };
        let holder = match found {
            Ok(found) => found,
            // Only refusals of the key itself spend the budget.
            Err(Error::Unauthorized(reason)) => {
                return Err(self.inner.limiter.fail(client, reason))
            }
            Err(other) => return Err(other),
        };
        self.inner.known.note(client);
        Ok(holder)
    }

    /// Decides whether a request may read `/metrics`: one of the configured metrics keys, or
    /// whatever [`Auth::authorize`] lets use the management API (open while that needs no key).
    pub async fn authorize_metrics(&self, headers: &HeaderMap, addr: Option<IpAddr>) -> Result<()> {
        if self.inner.require_management {
            let presented = token::presented_key(headers).filter(|k| !k.is_empty());
            if presented.is_some_and(|k| self.inner.config_keys.is_metrics(&hash::digest(k))) {
                return Ok(());
            }
        }
        self.authorize(headers, Scope::Management, addr)
            .await
            .map(drop)
    }

    /// Who holds this key: a configuration key or a verified key in the cache, which cost a
    /// digest; else, unless the client's budget of failures is spent, a stored key verified now.
    async fn identify(
        &self,
        token: &str,
        addr: Option<IpAddr>,
        client: IpAddr,
    ) -> Result<KeyHolder> {
        let digest = hash::digest(token);
        if let Some(kind) = self.inner.config_keys.find(&digest) {
            let actor = Actor {
                addr,
                ..Actor::named(match kind {
                    KeyKind::Management => "config-management-key",
                    KeyKind::Inference => "config-inference-key",
                })
            };
            // Configuration keys carry no policy: everything allowed, no limits.
            return Ok(KeyHolder {
                kind,
                caller: Caller::with_key(actor, kind, Access::open()),
                expires_at: None,
            });
        }
        let store = &self.inner.store;
        let key = match store.cached(&digest)? {
            Some(key) => key,
            None => {
                self.inner.limiter.admit(client)?;
                let lane = if self.inner.known.knows(client) {
                    Lane::Known
                } else {
                    Lane::Unknown
                };
                store.verify(token, &digest, lane).await?
            }
        };
        let actor = Actor {
            name: key.name.clone(),
            key_id: Some(key.id.clone()),
            addr,
        };
        Ok(KeyHolder {
            kind: key.kind,
            caller: Caller::with_key(actor, key.kind, key.access.clone())
                .with_quota(key.quota.clone()),
            expires_at: key.expires_at,
        })
    }

    /// Background upkeep: evicts keys revoked elsewhere, writes last-use times, trims the limiter
    /// and the known clients.
    pub fn spawn_upkeep(&self) -> tokio::task::JoinHandle<()> {
        let auth = self.clone();
        tokio::spawn(async move {
            let mut sync = tokio::time::interval(REVOCATION_SYNC);
            let mut flush = tokio::time::interval(USAGE_FLUSH);
            let mut quotas = tokio::time::interval(QUOTA_FLUSH);
            loop {
                tokio::select! {
                    _ = quotas.tick() => auth.flush_quotas().await,
                    _ = sync.tick() => {
                        if let Err(e) = auth.inner.store.sync_revocations().await {
                            tracing::warn!(error = %e, "could not check keys for revocation");
                        }
                    }
                    _ = flush.tick() => {
                        auth.flush().await;
                        auth.inner.limiter.forget_recovered();
                        auth.inner.known.forget_stale();
                    }
                }
            }
        })
    }

    /// Writes quota counters that changed.
    async fn flush_quotas(&self) {
        static WARNINGS: crate::throttle::LogThrottle =
            crate::throttle::LogThrottle::new(Duration::from_secs(60));
        if let Err(e) = self.inner.store.flush_quotas().await {
            if let Some(held_back) = WARNINGS.due() {
                tracing::warn!(error = %e, held_back, "could not save the keys' quota counters");
            }
        }
    }

    /// Writes pending last-use times and quota counters (also on shutdown).
    pub async fn flush(&self) {
        self.flush_quotas().await;
        // A full disk fails every flush alike: say so once a minute, not every USAGE_FLUSH.
        static WARNINGS: crate::throttle::LogThrottle =
            crate::throttle::LogThrottle::new(Duration::from_secs(60));
        if let Err(e) = self.inner.store.flush_usage().await {
            if let Some(held_back) = WARNINGS.due() {
                tracing::warn!(error = %e, held_back, "could not record when keys were last used");
            }
        }
    }
}

/// Who holds a key that was checked, and what the key allows.
#[derive(Debug, Clone)]
pub struct KeyHolder {
    /// What the key is for.
    pub kind: KeyKind,
    /// The caller a request with this key is handled as (with the key's whole access).
    pub caller: Caller,
    /// Unix seconds when the key expires; `None` = never.
    pub expires_at: Option<i64>,
}

/// A management key may do anything; an inference key only inference.
fn permit(kind: KeyKind, scope: Scope) -> Result<()> {
    match (kind, scope) {
        (KeyKind::Inference, Scope::Management) => Err(Error::Forbidden(
            "an inference key cannot use the management API".into(),
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{header, HeaderValue};

    async fn auth(require: bool) -> (Auth, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("t.db")).await.unwrap();
        let cfg = AuthConfig {
            require_management_auth: require,
            require_inference_auth: require,
            management_keys: vec!["m-key".into()],
            inference_keys: vec!["i-key".into()],
            ..AuthConfig::default()
        };
        (Auth::new(&cfg, db).unwrap(), dir)
    }

    fn empty_request() -> model::CreateKey {
        model::CreateKey {
            name: String::new(),
            kind: KeyKind::Inference,
            instances: None,
            expires_at: None,
            can_start: None,
            can_evict: None,
            routes: None,
            priority: None,
            limits: None,
        }
    }

    fn bearer(key: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {key}")).unwrap(),
        );
        h
    }

    async fn status(auth: &Auth, headers: &HeaderMap, scope: Scope) -> Option<u16> {
        auth.authorize(headers, scope, None)
            .await
            .err()
            .map(|e| e.status().as_u16())
    }

    #[tokio::test]
    async fn config_keys_decide_by_kind() {
        let (a, _dir) = auth(true).await;
        let cases: &[(&str, Scope, Option<u16>)] = &[
            ("m-key", Scope::Management, None),
            ("m-key", Scope::Inference, None),
            ("i-key", Scope::Inference, None),
            ("i-key", Scope::Management, Some(403)),
            ("nope", Scope::Management, Some(401)),
            ("m-key-longer", Scope::Management, Some(401)),
        ];
        for (key, scope, want) in cases {
            assert_eq!(status(&a, &bearer(key), *scope).await, *want, "{key}");
        }
        assert_eq!(
            status(&a, &HeaderMap::new(), Scope::Inference).await,
            Some(401)
        );
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Basic m-key"),
        );
        assert_eq!(status(&a, &h, Scope::Management).await, Some(401));
        let mut h = HeaderMap::new();
        h.insert("x-api-key", HeaderValue::from_static("i-key"));
        assert_eq!(status(&a, &h, Scope::Inference).await, None);
    }

    #[tokio::test]
    async fn off_means_open() {
        let (a, _dir) = auth(false).await;
        let caller = a
            .authorize(&HeaderMap::new(), Scope::Management, None)
            .await
            .unwrap();
        assert_eq!(caller.actor.name, "anonymous");
    }

    #[tokio::test]
    async fn stored_keys_work_until_revoked_and_never_by_a_wrong_secret() {
        let (a, _dir) = auth(true).await;
        let req = model::CreateKey {
            name: "app".into(),
            kind: KeyKind::Inference,
            instances: Some(vec!["m".into()]),
            expires_at: None,
            ..empty_request()
        };
        let created = a
            .keys()
            .create(req.validate(0).unwrap(), &Actor::named("t"))
            .await
            .unwrap();
        let token = created.key.expose();
        for _ in 0..2 {
            // The second round is served from the cache.
            let caller = a
                .authorize(&bearer(&token), Scope::Inference, None)
                .await
                .unwrap();
            assert_eq!(
                caller.actor.key_id.as_deref(),
                Some(created.info.id.as_str())
            );
            assert!(caller.may_use("m") && !caller.may_use("n"));
            assert_eq!(
                status(&a, &bearer(&token), Scope::Management).await,
                Some(403)
            );
        }
        let mut wrong = token.clone();
        wrong.pop();
        wrong.push(if token.ends_with('A') { 'B' } else { 'A' });
        assert_eq!(
            status(&a, &bearer(&wrong), Scope::Inference).await,
            Some(401)
        );

        a.keys()
            .revoke(&created.info.id, &Actor::named("t"))
            .await
            .unwrap();
        let err = a
            .authorize(&bearer(&token), Scope::Inference, None)
            .await
            .unwrap_err();
        assert_eq!(err.to_string(), "API key revoked");
    }

    #[tokio::test]
    async fn failures_are_limited_per_client_before_verifying_and_valid_keys_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("t.db")).await.unwrap();
        let cfg = AuthConfig {
            management_keys: vec!["m-key".into()],
            failed_auth_burst: 2,
            failed_auth_period: 60,
            ..AuthConfig::default()
        };
        let a = Auth::new(&cfg, db).unwrap();
        let req = model::CreateKey {
            name: "app".into(),
            kind: KeyKind::Management,
            instances: None,
            expires_at: None,
            ..empty_request()
        };
        let created = a
            .keys()
            .create(req.validate(0).unwrap(), &Actor::named("t"))
            .await
            .unwrap();
        let token = created.key.expose();
        let wrong = format!(
            "{}{}",
            &token[..token.len() - 1],
            if token.ends_with('A') { 'B' } else { 'A' }
        );
        let bad: IpAddr = "10.0.0.1".parse().unwrap();
        let other: IpAddr = "10.0.0.2".parse().unwrap();
        let code = |r: Result<Caller>| r.err().map_or(200, |e| e.status().as_u16());

        let mut codes = Vec::new();
        for key in [wrong.as_str(), "nope", wrong.as_str(), "nope"] {
            codes.push(code(
                a.authorize(&bearer(key), Scope::Management, Some(bad))
                    .await,
            ));
        }
        assert_eq!(codes, vec![401, 401, 429, 429]);
        let verified = a.keys().hasher().verifications();
        // A spent client's attempts cost no verification, a stored key's first use included...
        for key in [wrong.as_str(), token.as_str()] {
            let err = a
                .authorize(&bearer(key), Scope::Management, Some(bad))
                .await
                .unwrap_err();
            let Error::TooManyRequests { retry_after, .. } = err else {
                panic!("{err}");
            };
            assert!((1..=60).contains(&retry_after), "{retry_after}");
        }
        assert_eq!(a.keys().hasher().verifications(), verified);
        // ...but keys that cost no verification still work from there: configured or cached ones.
        assert_eq!(
            code(
                a.authorize(&bearer("m-key"), Scope::Management, Some(bad))
                    .await
            ),
            200
        );
        assert_eq!(
            code(
                a.authorize(&bearer(&token), Scope::Management, Some(other))
                    .await
            ),
            200
        );
        assert_eq!(
            code(
                a.authorize(&bearer(&token), Scope::Management, Some(bad))
                    .await
            ),
            200
        );
        // Other clients have their own budget.
        assert_eq!(
            code(
                a.authorize(&bearer(&wrong), Scope::Management, Some(other))
                    .await
            ),
            401
        );
    }

    #[tokio::test]
    async fn a_token_naming_no_stored_key_costs_one_verification_too() {
        let (a, _dir) = auth(true).await;
        let unknown = token::Token::generate(KeyKind::Management).expose();
        let malformed = format!("{unknown}x");
        for (key, cost) in [
            (unknown.as_str(), 1),
            (malformed.as_str(), 1),
            ("not-ours", 0),
        ] {
            let before = a.keys().hasher().verifications();
            assert_eq!(status(&a, &bearer(key), Scope::Management).await, Some(401));
            assert_eq!(a.keys().hasher().verifications() - before, cost, "{key}");
        }
    }
}
