//! Verified keys in memory, by the SHA-256 of their token, so a request pays one hash and one map
//! lookup instead of a database read and an argon2 verify.
//!
//! Revocation and policy changes must beat the cache: `evict` bumps a generation counter, and a
//! verification that started before a revocation or change cannot insert its (now stale) result
//! afterwards. A key's policy is compiled once, when it is cached.

use super::model::{Access, KeyKind};
use crate::db::keys::KeyRow;
use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, RwLock};

/// A key whose token was verified.
#[derive(Debug)]
pub struct CachedKey {
    /// Public id.
    pub id: String,
    /// Label.
    pub name: String,
    /// What it is for.
    pub kind: KeyKind,
    /// Which instances it reaches and what else it may do.
    pub access: Arc<Access>,
    /// Its quota counters, if it has limits (shared with every later copy of the key).
    pub quota: Option<Arc<crate::quota::KeyQuota>>,
    /// The stored revision of its policy this copy was made from.
    pub revision: i64,
    /// Unix seconds; `None` = never.
    pub expires_at: Option<i64>,
    /// Unix seconds of the last request with it.
    last_used: AtomicI64,
    /// The last `last_used` written to the database.
    flushed: AtomicI64,
}

impl CachedKey {
    /// A stored key of `kind` whose token was just verified, at `now`.
    pub fn verified(row: KeyRow, kind: KeyKind, now: i64) -> Self {
        CachedKey {
            access: Arc::new(Access::of_row(&row)),
            quota: None,
            revision: row.revision,
            id: row.id,
            name: row.name,
            kind,
            expires_at: row.expires_at,
            last_used: AtomicI64::new(now),
            flushed: AtomicI64::new(row.last_used_at.unwrap_or(0)),
        }
    }

    /// True once `expires_at` has passed.
    pub fn expired(&self, now: i64) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }

    /// Notes a use; written to the database later, in a batch.
    pub fn touch(&self, now: i64) {
        self.last_used.fetch_max(now, Ordering::Relaxed);
    }
}

#[derive(Debug, Default)]
struct Inner {
    by_digest: HashMap<[u8; 32], Arc<CachedKey>>,
    generation: u64,
}

/// The cache.
#[derive(Debug, Default)]
pub struct Cache {
    inner: RwLock<Inner>,
}

impl Cache {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|p| p.into_inner())
    }

    /// The verified key with this token digest.
    pub fn get(&self, digest: &[u8; 32]) -> Option<Arc<CachedKey>> {
        self.read().by_digest.get(digest).cloned()
    }

    /// Read before looking a key up in the database; hand it to [`Cache::insert`].
    pub fn generation(&self) -> u64 {
        self.read().generation
    }

    /// Caches a verified key, unless a revocation happened since `seen` was read.
    pub fn insert(&self, digest: [u8; 32], key: Arc<CachedKey>, seen: u64) -> bool {
        let mut inner = self.write();
        if inner.generation != seen {
            return false;
        }
        inner.by_digest.insert(digest, key);
        true
    }

    /// Forgets these keys (revoked or changed); any verification in flight will not cache its result.
    pub fn evict(&self, ids: &[String]) {
        let mut inner = self.write();
        inner.generation += 1;
        inner.by_digest.retain(|_, k| !ids.contains(&k.id));
    }

    /// Forgets keys past their expiry (they are refused anyway; this just frees memory).
    pub fn evict_expired(&self, now: i64) {
        self.write().by_digest.retain(|_, k| !k.expired(now));
    }

    /// The ids of the cached keys, with the revision each was cached at.
    pub fn ids(&self) -> Vec<(String, i64)> {
        self.read()
            .by_digest
            .values()
            .map(|k| (k.id.clone(), k.revision))
            .collect()
    }

    /// When a cached key was last used, if it is cached.
    pub fn last_used(&self, id: &str) -> Option<i64> {
        self.read()
            .by_digest
            .values()
            .find(|k| k.id == id)
            .map(|k| k.last_used.load(Ordering::Relaxed))
    }

    /// Uses not yet written to the database, marked as written.
    pub fn take_unflushed(&self) -> Vec<(String, i64)> {
        self.read()
            .by_digest
            .values()
            .filter_map(|k| {
                let used = k.last_used.load(Ordering::Relaxed);
                let before = k.flushed.swap(used, Ordering::Relaxed);
                (used > before).then(|| (k.id.clone(), used))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: &str, expires_at: Option<i64>) -> Arc<CachedKey> {
        let row = KeyRow {
            id: id.into(),
            name: "n".into(),
            kind: "inference".into(),
            secret_hash: String::new(),
            instances: None,
            created_at: 0,
            created_by: "t".into(),
            expires_at,
            last_used_at: None,
            revoked_at: None,
            can_start: true,
            can_evict: true,
            routes: None,
            priority: "normal".into(),
            requests_per_minute: None,
            tokens_per_minute: None,
            tokens_per_day: None,
            revision: 0,
        };
        Arc::new(CachedKey::verified(row, KeyKind::Inference, 100))
    }

    #[test]
    fn revocation_beats_a_verification_in_flight() {
        let cache = Cache::default();
        let seen = cache.generation();
        cache.evict(&["a".into()]);
        assert!(!cache.insert([1; 32], key("a", None), seen));
        assert!(cache.get(&[1; 32]).is_none());

        assert!(cache.insert([1; 32], key("a", None), cache.generation()));
        cache.evict(&["a".into()]);
        assert!(cache.get(&[1; 32]).is_none());
    }

    #[test]
    fn uses_are_flushed_once_and_expired_keys_dropped() {
        let cache = Cache::default();
        cache.insert([1; 32], key("a", Some(150)), 0);
        assert_eq!(cache.take_unflushed(), vec![("a".to_string(), 100)]);
        assert!(cache.take_unflushed().is_empty());
        cache.get(&[1; 32]).unwrap().touch(120);
        assert_eq!(cache.last_used("a"), Some(120));
        assert_eq!(cache.take_unflushed(), vec![("a".to_string(), 120)]);
        cache.evict_expired(149);
        assert_eq!(cache.ids(), vec![("a".to_string(), 0)]);
        cache.evict_expired(150);
        assert!(cache.ids().is_empty());
    }
}
