//! Hashing: argon2id for what is stored, SHA-256 for the in-memory cache and config keys.
//!
//! argon2id is deliberately slow and memory-hungry (about 19 MiB per call), so it runs on the
//! blocking pool, a few calls at a time, and who may wait for a turn is bounded: a flood of wrong
//! keys from many addresses can neither exhaust memory nor hold up clients that showed a valid key
//! before.
//! - A known client (see [`super::known_clients`]) always queues for a turn.
//! - Anyone else's verifications hold at most all turns but one, and at most
//!   [`MAX_WAITING_UNKNOWN`] of them wait; one more is refused at once (503).
//!
//! So a known client's verification waits for at most one other verification (or for other known
//! clients), however many unknown ones are queued.

use crate::error::{Error, Result};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use rand::rngs::OsRng;
use sha2::{Digest, Sha256};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::{OnceCell, OwnedSemaphorePermit, Semaphore};

/// Verifications for unknown clients that may wait for a turn; more are refused with 503.
pub const MAX_WAITING_UNKNOWN: usize = 32;

/// The fast digest a token is cached (and a config key compared) under.
pub fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Whose verification it is, which decides how it queues.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    /// A client that presented a valid key recently, or an operator creating a key.
    Known,
    /// Anyone else.
    Unknown,
}

/// Runs argon2id off the async runtime, a bounded number at a time, with bounded waiting.
#[derive(Debug)]
pub struct Hasher {
    /// Turns: one concurrent hash per CPU, at most four.
    turns: Arc<Semaphore>,
    /// The share of the turns unknown clients may hold.
    unknown_turns: Arc<Semaphore>,
    /// Unknown clients' verifications waiting for a turn.
    unknown_waiting: AtomicUsize,
    /// A hash of a random secret, verified against when a token names no stored key, so that
    /// costs what a wrong secret for a stored key costs.
    dummy: OnceCell<String>,
    #[cfg(test)]
    verifications: AtomicUsize,
}

impl Default for Hasher {
    fn default() -> Self {
        Self::new()
    }
}

/// Leaves the count of waiting verifications when dropped (also when the request is abandoned).
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    /// A place among the waiting, if one is free.
    fn enter(count: &'a AtomicUsize) -> Option<Self> {
        count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < MAX_WAITING_UNKNOWN).then_some(n + 1)
            })
            .ok()
            .map(|_| Waiting(count))
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

fn busy() -> Error {
    Error::Unavailable("too many API keys are being verified; try again shortly".into())
}

impl Hasher {
    /// One concurrent hash per CPU, at most four; unknown clients get all but one of them.
    pub fn new() -> Self {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let turns = cpus.clamp(1, 4);
        Hasher {
            turns: Arc::new(Semaphore::new(turns)),
            unknown_turns: Arc::new(Semaphore::new((turns - 1).max(1))),
            unknown_waiting: AtomicUsize::new(0),
            dummy: OnceCell::new(),
            #[cfg(test)]
            verifications: AtomicUsize::new(0),
        }
    }

    /// The argon2id PHC string (algorithm, parameters, salt, hash) of `secret`.
    pub async fn hash(&self, secret: &str) -> Result<String> {
        self.hash_in(secret, Lane::Known).await
    }

    async fn hash_in(&self, secret: &str, lane: Lane) -> Result<String> {
        let secret = secret.to_string();
        self.run(lane, move || {
            let salt = SaltString::generate(&mut OsRng);
            Argon2::default()
                .hash_password(secret.as_bytes(), &salt)
                .map(|h| h.to_string())
                .map_err(|e| Error::Internal(format!("argon2 hash failed: {e}")))
        })
        .await
    }

    /// True if `secret` matches the stored PHC string; a damaged string never matches.
    pub async fn verify(&self, secret: &str, phc: &str, lane: Lane) -> Result<bool> {
        let secret = secret.to_string();
        let phc = phc.to_string();
        #[cfg(test)]
        self.verifications.fetch_add(1, Ordering::Relaxed);
        self.run(lane, move || {
            let Ok(parsed) = PasswordHash::new(&phc) else {
                tracing::error!("stored key hash unreadable; key rejected");
                return Ok(false);
            };
            Ok(Argon2::default()
                .verify_password(secret.as_bytes(), &parsed)
                .is_ok())
        })
        .await
    }

    /// Spends what verifying `secret` against a stored key would, for a token that names none.
    pub async fn verify_nothing(&self, secret: &str, lane: Lane) -> Result<()> {
        let dummy = self
            .dummy
            .get_or_try_init(|| async {
                // Same parameters as every stored key (`Argon2::default()`), so the same cost.
                let random = super::token::Token::generate(super::KeyKind::Inference);
                self.hash_in(random.secret(), lane).await
            })
            .await?;
        self.verify(secret, dummy, lane).await.map(|_| ())
    }

    /// Verifications run so far (tests observe that refused clients cause none).
    #[cfg(test)]
    pub fn verifications(&self) -> usize {
        self.verifications.load(Ordering::Relaxed)
    }

    async fn run<T: Send + 'static>(
        &self,
        lane: Lane,
        work: impl FnOnce() -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let share = match lane {
            Lane::Known => None,
            Lane::Unknown => Some(self.unknown_turn().await?),
        };
        let turn = self
            .turns
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| Error::Internal(e.to_string()))?;
        // The permits go with the work: a request abandoned mid-hash still holds its turn until
        // the hash is done, so abandoned requests cannot pile up hashes beyond the bound.
        tokio::task::spawn_blocking(move || {
            let _held = (turn, share);
            work()
        })
        .await?
    }

    /// A share of the turns for an unknown client, or 503 if too many already wait for one.
    async fn unknown_turn(&self) -> Result<OwnedSemaphorePermit> {
        if let Ok(permit) = self.unknown_turns.clone().try_acquire_owned() {
            return Ok(permit);
        }
        let _waiting = Waiting::enter(&self.unknown_waiting).ok_or_else(busy)?;
        self.unknown_turns
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| Error::Internal(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hash_verifies_only_its_secret_and_hides_it() {
        let hasher = Hasher::new();
        let phc = hasher.hash("s3cret").await.unwrap();
        assert!(phc.starts_with("$argon2id$"), "{phc}");
        assert!(!phc.contains("s3cret"));
        assert!(hasher.verify("s3cret", &phc, Lane::Known).await.unwrap());
        assert!(!hasher.verify("s3cret!", &phc, Lane::Unknown).await.unwrap());
        assert!(!hasher
            .verify("s3cret", "garbage", Lane::Known)
            .await
            .unwrap());
    }

    #[tokio::test]
    async fn the_dummy_hash_has_the_parameters_of_stored_keys() {
        let hasher = Hasher::new();
        hasher.verify_nothing("x", Lane::Unknown).await.unwrap();
        let stored = hasher.hash("y").await.unwrap();
        let params = |phc: &str| phc.split('$').nth(3).unwrap().to_string();
        assert_eq!(params(hasher.dummy.get().unwrap()), params(&stored));
    }

    #[tokio::test]
    async fn a_full_queue_refuses_unknown_clients_at_once_but_not_known_ones() {
        let hasher = Arc::new(Hasher::new());
        // Every turn of unknown clients taken, and every waiting place.
        let _taken: Vec<_> = (0..hasher.unknown_turns.available_permits())
            .map(|_| hasher.unknown_turns.clone().try_acquire_owned().unwrap())
            .collect();
        let waiters: Vec<_> = (0..MAX_WAITING_UNKNOWN)
            .map(|_| {
                let h = hasher.clone();
                tokio::spawn(async move { h.verify("s", "garbage", Lane::Unknown).await })
            })
            .collect();
        tokio::time::timeout(std::time::Duration::from_secs(10), async {
            while hasher.unknown_waiting.load(Ordering::Acquire) < MAX_WAITING_UNKNOWN {
                tokio::task::yield_now().await;
            }
        })
        .await
        .unwrap();

        let err = hasher
            .verify("s", "garbage", Lane::Unknown)
            .await
            .unwrap_err();
        assert_eq!(err.status().as_u16(), 503);
        assert!(!hasher.verify("s", "garbage", Lane::Known).await.unwrap());
        for w in waiters {
            w.abort();
        }
    }
}
