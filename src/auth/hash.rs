//! Hashing: argon2id for what is stored, SHA-256 for the in-memory cache and config keys.
//!
//! argon2id is deliberately slow and memory-hungry (about 19 MiB per call), so it runs on the
//! blocking pool, and only a few calls run at once: a flood of bad tokens can queue there but can
//! neither exhaust memory nor stall the async runtime.

use crate::error::{Error, Result};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use rand::rngs::OsRng;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use tokio::sync::Semaphore;

/// The fast digest a token is cached (and a config key compared) under.
pub fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Runs argon2id off the async runtime, a bounded number at a time.
#[derive(Debug, Clone)]
pub struct Hasher {
    permits: Arc<Semaphore>,
}

impl Default for Hasher {
    fn default() -> Self {
        Self::new()
    }
}

impl Hasher {
    /// One concurrent hash per CPU, at most four.
    pub fn new() -> Self {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        Hasher {
            permits: Arc::new(Semaphore::new(cpus.clamp(1, 4))),
        }
    }

    /// The argon2id PHC string (algorithm, parameters, salt, hash) of `secret`.
    pub async fn hash(&self, secret: &str) -> Result<String> {
        let secret = secret.to_string();
        self.run(move || {
            let salt = SaltString::generate(&mut OsRng);
            Argon2::default()
                .hash_password(secret.as_bytes(), &salt)
                .map(|h| h.to_string())
                .map_err(|e| Error::Internal(format!("argon2 hash failed: {e}")))
        })
        .await
    }

    /// True if `secret` matches the stored PHC string; a damaged string never matches.
    pub async fn verify(&self, secret: &str, phc: &str) -> Result<bool> {
        let secret = secret.to_string();
        let phc = phc.to_string();
        self.run(move || {
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

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|e| Error::Internal(e.to_string()))?;
        tokio::task::spawn_blocking(work).await?
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
        assert!(hasher.verify("s3cret", &phc).await.unwrap());
        assert!(!hasher.verify("s3cret!", &phc).await.unwrap());
        assert!(!hasher.verify("s3cret", "garbage").await.unwrap());
    }
}
