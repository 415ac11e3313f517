//! Enum ↔ string, once, through serde: a variant's name is the one its `#[serde(rename_all)]`
//! gives it, the same in the API's JSON, in the database and in messages (history events, key
//! kinds, desired state, status). serde is used already for the JSON; a second mechanism (strum)
//! could let the two spellings drift apart.

use serde::de::{DeserializeOwned, IntoDeserializer};
use serde::Serialize;

/// The name of a unit variant, e.g. `Event::StartRequested` → `start_requested`.
pub(crate) fn name_of<T: Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(name)) => name,
        // Only unit variants are named through here; anything else is a programming error.
        other => format!("{other:?}"),
    }
}

/// The variant with this name; the error lists the known names.
pub(crate) fn parse<T: DeserializeOwned>(name: &str) -> Result<T, String> {
    T::deserialize(name.into_deserializer()).map_err(|e: serde::de::value::Error| e.to_string())
}
