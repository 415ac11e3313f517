//! Keys given in the configuration file. Only their SHA-256 digests are kept, compared in constant
//! time, so neither content nor length leaks through timing; they are never written anywhere.

use super::hash::digest;
use super::model::KeyKind;
use crate::config::AuthConfig;
use subtle::{Choice, ConstantTimeEq};

/// The digests of the configured keys.
#[derive(Debug, Default)]
pub struct ConfigKeys {
    management: Vec<[u8; 32]>,
    inference: Vec<[u8; 32]>,
    metrics: Vec<[u8; 32]>,
}

fn contains(set: &[[u8; 32]], probe: &[u8; 32]) -> bool {
    // Visit every entry so the time does not tell which one matched.
    set.iter()
        .fold(Choice::from(0), |found, k| found | k.ct_eq(probe))
        .into()
}

impl ConfigKeys {
    /// The digests of the keys in `cfg`.
    pub fn from_config(cfg: &AuthConfig) -> Self {
        ConfigKeys {
            management: cfg.management_keys.iter().map(|k| digest(k)).collect(),
            inference: cfg.inference_keys.iter().map(|k| digest(k)).collect(),
            metrics: cfg.metrics_keys.iter().map(|k| digest(k)).collect(),
        }
    }

    /// True if the file gives at least one management key.
    pub fn has_management(&self) -> bool {
        !self.management.is_empty()
    }

    /// True if the key with this digest is a configured metrics key (it reads `/metrics` only).
    pub fn is_metrics(&self, probe: &[u8; 32]) -> bool {
        contains(&self.metrics, probe)
    }

    /// The kind of the configured key with this digest, if there is one.
    pub fn find(&self, probe: &[u8; 32]) -> Option<KeyKind> {
        if contains(&self.management, probe) {
            Some(KeyKind::Management)
        } else if contains(&self.inference, probe) {
            Some(KeyKind::Inference)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_exactly_the_configured_keys() {
        let keys = ConfigKeys::from_config(&AuthConfig {
            management_keys: vec!["m-key".into()],
            inference_keys: vec!["i-key".into()],
            metrics_keys: vec!["p-key".into()],
            ..AuthConfig::default()
        });
        assert!(keys.is_metrics(&digest("p-key")));
        assert!(!keys.is_metrics(&digest("m-key")));
        assert_eq!(
            keys.find(&digest("p-key")),
            None,
            "a metrics key is no API key"
        );
        assert!(keys.has_management());
        assert_eq!(keys.find(&digest("m-key")), Some(KeyKind::Management));
        assert_eq!(keys.find(&digest("i-key")), Some(KeyKind::Inference));
        assert_eq!(keys.find(&digest("m-key-longer")), None);
        assert!(!ConfigKeys::default().has_management());
    }
}
