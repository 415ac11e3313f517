//! Values that look secret — of options and environment variables whose name contains `token`,
//! `key`, `secret` or `password` (any case) — are shown as [`PLACEHOLDER`] wherever llamactl shows a
//! definition: instance views, the history, the log's command-line header, and failure reasons. The
//! stored definition keeps the real value, since the backend needs it.
//!
//! A body that sends the placeholder back for such a value keeps the stored one, so a definition
//! read with `GET` can be edited and sent back with `PUT` without losing its secrets.

use super::spec::InstanceSpec;
use crate::error::{Error, Result};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// What a secret value is shown as.
pub const PLACEHOLDER: &str = "***";

/// Parts of a name that mark its value as secret.
const SECRET_WORDS: &[&str] = &["token", "key", "secret", "password"];

/// Shorter values are not scrubbed from free text: they would match too much of it.
const MIN_SCRUBBED_LEN: usize = 4;

/// True if the value of an option or variable called `name` is to be hidden.
pub fn is_secret_name(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    SECRET_WORDS.iter().any(|word| name.contains(word))
}

impl InstanceSpec {
    /// The definition as it may be shown: every secret-looking value replaced by the placeholder.
    pub fn redacted(&self) -> InstanceSpec {
        let mut shown = self.clone();
        for (key, value) in shown.backend_options.iter_mut() {
            if is_secret_name(key) && !value.is_boolean() {
                *value = Value::String(PLACEHOLDER.into());
            }
        }
        for (name, value) in shown.environment.iter_mut().flatten() {
            if is_secret_name(name) {
                *value = PLACEHOLDER.into();
            }
        }
        shown
    }

    /// `text` with every secret value of this definition replaced by the placeholder (for log lines
    /// quoted in failure reasons, which may echo them).
    pub fn scrub(&self, text: &str) -> String {
        let mut secrets: Vec<String> = Vec::new();
        for (key, value) in &self.backend_options {
            if is_secret_name(key) {
                let items = match value {
                    Value::Array(items) => items.iter().collect(),
                    other => vec![other],
                };
                secrets.extend(items.into_iter().filter_map(|v| match v {
                    Value::String(s) => Some(s.clone()),
                    Value::Number(n) => Some(n.to_string()),
                    _ => None,
                }));
            }
        }
        for (name, value) in self.environment.iter().flatten() {
            if is_secret_name(name) {
                secrets.push(value.clone());
            }
        }
        // Longest first, so a secret that contains another is replaced whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets
            .iter()
            .filter(|s| s.len() >= MIN_SCRUBBED_LEN)
            .fold(text.to_string(), |text, secret| {
                text.replace(secret.as_str(), PLACEHOLDER)
            })
    }
}

/// Puts back the stored value wherever `incoming` options send the placeholder for a secret.
pub fn keep_options(incoming: &mut Map<String, Value>, stored: &Map<String, Value>) -> Result<()> {
    for (key, value) in incoming.iter_mut() {
        if is_secret_name(key) && value.as_str() == Some(PLACEHOLDER) {
            *value = stored
                .get(key)
                .cloned()
                .ok_or_else(|| placeholder_without_value("option", key))?;
        }
    }
    Ok(())
}

/// Puts back the stored value wherever an `incoming` environment sends the placeholder for a secret.
pub fn keep_environment(
    incoming: &mut BTreeMap<String, String>,
    stored: Option<&BTreeMap<String, String>>,
) -> Result<()> {
    for (name, value) in incoming.iter_mut() {
        if is_secret_name(name) && value == PLACEHOLDER {
            *value = stored
                .and_then(|env| env.get(name))
                .cloned()
                .ok_or_else(|| placeholder_without_value("environment variable", name))?;
        }
    }
    Ok(())
}

fn placeholder_without_value(what: &str, name: &str) -> Error {
    Error::BadRequest(format!(
        "{what} '{name}' is \"{PLACEHOLDER}\", the placeholder for a hidden value, but there is no \
         stored value to keep; send the real value"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(options: Value, env: &[(&str, &str)]) -> InstanceSpec {
        InstanceSpec {
            backend_options: options.as_object().cloned().unwrap(),
            environment: Some(
                env.iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            ..InstanceSpec::default()
        }
    }

    #[test]
    fn secret_names_are_recognised_in_any_case() {
        for name in [
            "hf_token",
            "api_key",
            "api-key-file",
            "HF_TOKEN",
            "Client_Secret",
            "db_password",
        ] {
            assert!(is_secret_name(name), "{name}");
        }
        for name in [
            "model",
            "ctx_size",
            "keep",
            "n_gpu_layers",
            "CUDA_VISIBLE_DEVICES",
        ] {
            assert!(!is_secret_name(name), "{name}");
        }
    }

    #[test]
    fn redaction_hides_secret_values_and_keeps_the_rest() {
        let real = spec(
            json!({"model": "/m.gguf", "hf_token": "hf_abc", "api_key": ["k1", "k2"], "no_key_flag": true}),
            &[("HF_TOKEN", "hf_env"), ("OMP_NUM_THREADS", "4")],
        );
        let shown = real.redacted();
        assert_eq!(
            Value::Object(shown.backend_options),
            json!({"model": "/m.gguf", "hf_token": "***", "api_key": "***", "no_key_flag": true})
        );
        let env = shown.environment.unwrap();
        assert_eq!(env["HF_TOKEN"], "***");
        assert_eq!(env["OMP_NUM_THREADS"], "4");
        assert_eq!(
            real.backend_options["hf_token"], "hf_abc",
            "the original is untouched"
        );
    }

    #[test]
    fn scrub_removes_secret_values_from_text() {
        let real = spec(
            json!({"hf_token": "hf_abcdef", "api_key": ["key-one", "k2"], "model": "/m.gguf"}),
            &[("HF_TOKEN", "env-secret")],
        );
        let text =
            "args: --hf-token hf_abcdef --api-key key-one --api-key k2 --model /m.gguf env-secret";
        assert_eq!(
            real.scrub(text),
            "args: --hf-token *** --api-key *** --api-key k2 --model /m.gguf ***"
        );
    }

    #[test]
    fn the_placeholder_sent_back_keeps_the_stored_value() {
        let stored = json!({"api_key": "real", "model": "/a.gguf"});
        let mut incoming = json!({"api_key": "***", "model": "/b.gguf"})
            .as_object()
            .cloned()
            .unwrap();
        keep_options(&mut incoming, stored.as_object().unwrap()).unwrap();
        assert_eq!(incoming["api_key"], "real");

        let mut fresh = json!({"hf_token": "***"}).as_object().cloned().unwrap();
        let err = keep_options(&mut fresh, &Map::new())
            .unwrap_err()
            .to_string();
        assert!(err.contains("hf_token"), "{err}");

        let stored_env: BTreeMap<String, String> = [("HF_TOKEN".into(), "real".into())].into();
        let mut env: BTreeMap<String, String> = [("HF_TOKEN".into(), "***".into())].into();
        keep_environment(&mut env, Some(&stored_env)).unwrap();
        assert_eq!(env["HF_TOKEN"], "real");
        assert!(keep_environment(&mut [("HF_TOKEN".into(), "***".into())].into(), None).is_err());
    }
}
