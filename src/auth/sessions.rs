//! The dashboard's sign-in sessions: a key typed in once is exchanged for a random session token
//! (the browser keeps it in an HttpOnly cookie), and every later page resolves that token to the
//! same [`Caller`] a request presenting the key would get: one permission model for both.
//!
//! A session stores which key it was made with, not a copy of what the key allows: each page reads
//! the key's whole [`Access`] (instance patterns, can_start, routes, ...) afresh, so a policy change
//! (`PATCH /api/v1/auth/keys/{id}`) is in force for its sessions at once, as for its requests.
//!
//! Only the token's SHA-256 is stored. A session ends when it expires (the configured lifetime,
//! or the key's own expiry if sooner), when its holder signs out, or when its key is revoked (the
//! revocation deletes it, see `Db::revoke_key`).
//!
//! Each session has a CSRF token, derived from the session token (SHA-256 under a label), which
//! pages embed in their forms and the server compares on every mutating request: a page on another
//! origin cannot read it, so it cannot forge a request that carries it. Nothing extra is stored.

use super::hash::digest;
use super::model::{Access, KeyKind};
use super::token::{random_from, SECRET_ALPHABET};
use super::{Auth, Caller, KeyHolder};
use crate::audit::Actor;
use crate::db::sessions::SessionRow;
use crate::db::Db;
use crate::error::Result;
use sha2::{Digest, Sha256};
use std::net::IpAddr;
use subtle::ConstantTimeEq;

/// Length of a session token: 43 characters of 62, about 256 bits.
const TOKEN_LEN: usize = 43;

/// A session just made: its token, for the cookie (shown to nobody else), and when it ends.
#[derive(Debug)]
pub struct NewSession {
    /// The token; the browser's cookie is its only copy.
    pub token: String,
    /// Seconds it lives (for the cookie's Max-Age).
    pub max_age: i64,
}

/// A session in force: who it is, as the API would see them.
#[derive(Debug, Clone)]
pub struct Session {
    /// The caller the session's key makes.
    pub caller: Caller,
    /// What the key is for.
    pub kind: KeyKind,
    /// Unix seconds when the session ends.
    pub expires_at: i64,
    /// The token the session's forms must carry back.
    pub csrf: String,
}

/// The sessions in the database.
#[derive(Debug, Clone)]
pub struct Sessions {
    db: Db,
    /// For the quota counters of a session's key, shared with its API requests.
    auth: Auth,
    /// Seconds a session lives at most.
    ttl: i64,
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

impl Sessions {
    /// Sessions in `db`, each living at most `ttl_secs`, of keys checked by `auth`.
    pub fn new(db: Db, ttl_secs: u64, auth: Auth) -> Self {
        Sessions {
            db,
            auth,
            ttl: i64::try_from(ttl_secs).unwrap_or(i64::MAX),
        }
    }

    /// Ends every session of a configuration key (at startup: the file may have changed).
    pub async fn forget_config_key_sessions(&self) -> Result<u64> {
        self.db.delete_config_key_sessions().await
    }

    /// A new session for the holder of a checked key; it ends with the key's expiry if sooner.
    pub async fn create(&self, holder: &KeyHolder) -> Result<NewSession> {
        let now = now();
        let expires_at = now
            .saturating_add(self.ttl)
            .min(holder.expires_at.unwrap_or(i64::MAX));
        let token = random_from(SECRET_ALPHABET, TOKEN_LEN);
        let actor = &holder.caller.actor;
        let row = SessionRow {
            token_hash: digest(&token).to_vec(),
            key_id: actor.key_id.clone(),
            key_name: actor.name.clone(),
            kind: crate::names::name_of(&holder.kind),
            created_at: now,
            expires_at,
        };
        self.db.insert_session(&row).await?;
        Ok(NewSession {
            token,
            max_age: expires_at - now,
        })
    }

    /// The session this token opens, if it is in force, with its caller at `addr`.
    pub async fn resolve(&self, token: &str, addr: Option<IpAddr>) -> Result<Option<Session>> {
        let Some(row) = self.db.session(&digest(token), now()).await? else {
            return Ok(None);
        };
        let Ok(kind) = crate::names::parse::<KeyKind>(&row.kind) else {
            // The table's CHECK makes this impossible; a damaged row opens nothing.
            tracing::error!(kind = %row.kind, "stored session of an unknown kind");
            return Ok(None);
        };
        let access = match &row.key_id {
            // The join in `Db::session` already refused a revoked or expired key; a key deleted
            // since (its sessions cascade) opens nothing.
            Some(id) => match self.db.key(id).await? {
                Some(key) => std::sync::Arc::new(Access::of_row(&key)),
                None => return Ok(None),
            },
            // Configuration keys carry no policy, as in `Auth::identify`.
            None => Access::open(),
        };
        // A limited key's dashboard requests (the playground) count against the same quota.
        let quota = row
            .key_id
            .as_deref()
            .and_then(|id| self.auth.keys().quota_of(id, &access.policy.limits));
        let actor = Actor {
            name: row.key_name,
            key_id: row.key_id,
            addr,
        };
        Ok(Some(Session {
            caller: Caller::with_key(actor, kind, access).with_quota(quota),
            kind,
            expires_at: row.expires_at,
            csrf: csrf_token(token),
        }))
    }

    /// Ends the session this token opens (signing out); no error if it is gone already.
    pub async fn end(&self, token: &str) -> Result<()> {
        self.db.delete_session(&digest(token)).await
    }
}

/// The CSRF token of the session with this token: derived, so nothing more is stored, and
/// one-way, so a leaked page gives away nothing that opens the session.
pub fn csrf_token(session_token: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"llamactl csrf\0");
    hasher.update(session_token.as_bytes());
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// True if `presented` is the session's CSRF token (compared in constant time).
pub fn csrf_matches(session: &Session, presented: &str) -> bool {
    session.csrf.as_bytes().ct_eq(presented.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csrf_tokens_differ_per_session_and_never_contain_the_session_token() {
        let a = csrf_token("a-session");
        assert_eq!(a, csrf_token("a-session"));
        assert_ne!(a, csrf_token("b-session"));
        assert_eq!(a.len(), 64);
        assert!(!a.contains("a-session"));
    }
}
