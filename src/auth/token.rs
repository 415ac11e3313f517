//! The token format, `llamactl_<mk|ik>_<id>_<secret>`, and where a request carries one.
//!
//! The prefix makes a leaked key recognisable (secret scanners, logs) and says its kind; the public
//! id finds the one stored row to verify against, so a lookup never tries every stored hash.

use super::model::KeyKind;
use axum::http::{header, HeaderMap};
use rand::rngs::OsRng;
use rand::Rng;
use serde::{Serialize, Serializer};
use std::fmt;

/// Every token starts with this.
pub const PREFIX: &str = "llamactl_";

/// Length of the public id.
const ID_LEN: usize = 10;

/// Length of the secret: 40 characters of 62, about 238 bits.
const SECRET_LEN: usize = 40;

/// Characters of an id: lowercase and digits without look-alikes (0/o, 1/l).
const ID_ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyz23456789";

/// Characters of a secret.
pub(crate) const SECRET_ALPHABET: &[u8] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// A key's token. `Debug` hides the secret; `Serialize` writes the whole token (only ever done once,
/// in the answer that creates the key).
#[derive(Clone, PartialEq, Eq)]
pub struct Token {
    /// What the key is for.
    pub kind: KeyKind,
    /// Public id.
    pub id: String,
    secret: String,
}

fn tag(kind: KeyKind) -> &'static str {
    match kind {
        KeyKind::Management => "mk",
        KeyKind::Inference => "ik",
    }
}

pub(crate) fn random_from(alphabet: &[u8], len: usize) -> String {
    let mut rng = OsRng;
    (0..len)
        .map(|_| char::from(alphabet[rng.gen_range(0..alphabet.len())]))
        .collect()
}

fn all_in(text: &str, alphabet: &[u8]) -> bool {
    text.bytes().all(|b| alphabet.contains(&b))
}

impl Token {
    /// A fresh token with a random id and secret from the OS's generator.
    pub fn generate(kind: KeyKind) -> Token {
        Token {
            kind,
            id: random_from(ID_ALPHABET, ID_LEN),
            secret: random_from(SECRET_ALPHABET, SECRET_LEN),
        }
    }

    /// Splits a presented token into its parts; `None` if it is not of our format.
    pub fn parse(text: &str) -> Option<Token> {
        let rest = text.strip_prefix(PREFIX)?;
        let (kind_tag, rest) = rest.split_once('_')?;
        let kind = [KeyKind::Management, KeyKind::Inference]
            .into_iter()
            .find(|k| tag(*k) == kind_tag)?;
        let (id, secret) = rest.split_once('_')?;
        let well_formed = id.len() == ID_LEN
            && secret.len() == SECRET_LEN
            && all_in(id, ID_ALPHABET)
            && all_in(secret, SECRET_ALPHABET);
        well_formed.then(|| Token {
            kind,
            id: id.to_string(),
            secret: secret.to_string(),
        })
    }

    /// The secret part, the only part that is hashed.
    pub fn secret(&self) -> &str {
        &self.secret
    }

    /// The whole token, as the client must send it.
    pub fn expose(&self) -> String {
        format!("{PREFIX}{}_{}_{}", tag(self.kind), self.id, self.secret)
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PREFIX}{}_{}_<redacted>", tag(self.kind), self.id)
    }
}

impl Serialize for Token {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.expose())
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_parse_back_and_differ() {
        for kind in [KeyKind::Management, KeyKind::Inference] {
            let token = Token::generate(kind);
            let text = token.expose();
            assert!(text.starts_with(if kind == KeyKind::Management {
                "llamactl_mk_"
            } else {
                "llamactl_ik_"
            }));
            assert_eq!(Token::parse(&text), Some(token.clone()));
            assert_ne!(Token::generate(kind).expose(), text);
        }
    }

    #[test]
    fn debug_hides_the_secret() {
        let token = Token::generate(KeyKind::Inference);
        let shown = format!("{token:?}");
        assert!(!shown.contains(token.secret()), "{shown}");
        assert!(shown.contains(&token.id));
    }

    #[test]
    fn malformed_tokens_are_not_ours() {
        let good = Token::generate(KeyKind::Management).expose();
        let cases = [
            String::new(),
            "test-management-key".into(),
            good.replace("_mk_", "_xk_"),
            good.replacen("llamactl_", "llamactI_", 1),
            format!("{good}x"),
            good[..good.len() - 1].to_string(),
            format!("{}!", &good[..good.len() - 1]),
            good.replacen('_', "", 3),
        ];
        for text in cases {
            assert_eq!(Token::parse(&text), None, "{text}");
        }
    }
}
