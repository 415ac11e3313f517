//! The instance form, to create or edit: its fields, the API body they make (the flat body `POST
//! /api/v1/instances/{name}` takes, or the structured one `PUT` takes to replace the options, so
//! the API's own parser and validation judge it), and which field an error of the API's belongs
//! next to.

use crate::definitions::InstanceSpec;
use crate::error::Error;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Map, Value};

/// The form as posted; every field is text, empty when left blank.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct InstanceForm {
    /// The session's CSRF token.
    pub csrf: String,
    /// Instance name.
    pub name: String,
    /// Path of the GGUF model (llama-server's `--model`).
    pub model: String,
    /// Context size in tokens.
    pub ctx_size: String,
    /// Layers offloaded to the GPU.
    pub n_gpu_layers: String,
    /// CPU threads.
    pub threads: String,
    /// `""` (server default), `"true"` or `"false"`.
    pub on_demand_start: String,
    /// Minutes without requests before it stops; 0 = never.
    pub idle_timeout: String,
    /// `""` (server default), `"true"` or `"false"`.
    pub auto_restart: String,
    /// More options as a JSON object, e.g. `{"temp": 0.7}`.
    pub raw: String,
}

/// A form field an error can be shown at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// The `name` input.
    Name,
    /// One of the option inputs, by its key.
    Option(&'static str),
    /// The raw options editor.
    Raw,
    /// No one field: shown above the form.
    Form,
}

/// The option inputs, by the key the API knows them as; numbers are sent as JSON numbers.
const NUMBERS: &[&str] = &["ctx_size", "n_gpu_layers", "threads", "idle_timeout"];
const CHOICES: &[&str] = &["on_demand_start", "auto_restart"];

impl Field {
    /// The input's id in the page (`field-<key>`), so the page puts the message beside it.
    pub fn key(self) -> &'static str {
        match self {
            Field::Name => "name",
            Field::Option(key) => key,
            Field::Raw => "raw",
            Field::Form => "form",
        }
    }
}

/// A refusal of the form, at the field it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Where to show it.
    pub field: Field,
    /// The API's message.
    pub message: String,
    /// The status the API answers this refusal with.
    pub status: StatusCode,
}

/// The option inputs, in the order the form shows them.
const OPTION_INPUTS: &[&str] = &["model", "ctx_size", "n_gpu_layers", "threads"];

impl InstanceForm {
    /// The form filled in from a stored definition (secret-looking values already hidden): the
    /// option inputs from its options, the rest of its options in the raw editor.
    pub fn of(name: &str, spec: &InstanceSpec) -> InstanceForm {
        let mut rest = spec.backend_options.clone();
        let mut take = |key: &str| match rest.shift_remove(key) {
            Some(Value::String(s)) => s,
            Some(other) => other.to_string(),
            None => String::new(),
        };
        let choice = |v: Option<bool>| v.map(|b| b.to_string()).unwrap_or_default();
        InstanceForm {
            csrf: String::new(),
            name: name.to_string(),
            model: take("model"),
            ctx_size: take("ctx_size"),
            n_gpu_layers: take("n_gpu_layers"),
            threads: take("threads"),
            on_demand_start: choice(spec.on_demand_start),
            idle_timeout: spec
                .idle_timeout
                .and_then(|m| serde_json::to_value(m).ok())
                .map(|v| v.to_string())
                .unwrap_or_default(),
            auto_restart: choice(spec.auto_restart),
            raw: if rest.is_empty() {
                String::new()
            } else {
                serde_json::to_string_pretty(&rest).unwrap_or_default()
            },
        }
    }

    /// The body `PUT /api/v1/instances/{name}` takes to make the definition what the form shows:
    /// its options replaced by the raw editor's plus the option inputs, and a blank choice or idle
    /// timeout back to the server's default. Fields the form does not show are left as they are.
    pub fn edit_body(&self) -> Result<Map<String, Value>, FieldError> {
        let mut options = Map::new();
        let mut fields = Map::new();
        for (key, value) in self.body()? {
            let instance_field = CHOICES.contains(&key.as_str()) || key == "idle_timeout";
            if instance_field {
                fields.insert(key, value);
            } else {
                options.insert(key, value);
            }
        }
        let mut body = Map::new();
        body.insert("backend_options".into(), Value::Object(options));
        for key in CHOICES.iter().chain(["idle_timeout"].iter()) {
            body.insert(key.to_string(), fields.remove(*key).unwrap_or(Value::Null));
        }
        Ok(body)
    }

    fn value_of(&self, key: &str) -> &str {
        match key {
            "model" => &self.model,
            "ctx_size" => &self.ctx_size,
            "n_gpu_layers" => &self.n_gpu_layers,
            "threads" => &self.threads,
            "on_demand_start" => &self.on_demand_start,
            "idle_timeout" => &self.idle_timeout,
            "auto_restart" => &self.auto_restart,
            _ => "",
        }
    }

    /// The body the API takes: the raw options, then each filled-in input. A key given both ways
    /// is refused rather than one silently winning.
    pub fn body(&self) -> Result<Map<String, Value>, FieldError> {
        let mut body = match self.raw.trim() {
            "" => Map::new(),
            raw => match serde_json::from_str::<Value>(raw) {
                Ok(Value::Object(map)) => map,
                Ok(_) => return Err(at(Field::Raw, "raw options must be a JSON object")),
                Err(e) => return Err(at(Field::Raw, &format!("raw options are not JSON: {e}"))),
            },
        };
        let inputs = OPTION_INPUTS
            .iter()
            .chain(["idle_timeout"].iter())
            .chain(CHOICES.iter())
            .copied();
        for key in inputs {
            let text = self.value_of(key).trim();
            if text.is_empty() {
                continue;
            }
            let value = if NUMBERS.contains(&key) {
                // Sent as typed; the API says what it thinks of a number that is not one.
                serde_json::from_str::<serde_json::Number>(text)
                    .map(Value::Number)
                    .unwrap_or_else(|_| Value::String(text.to_string()))
            } else if CHOICES.contains(&key) {
                Value::Bool(text == "true")
            } else {
                Value::String(text.to_string())
            };
            if body.insert(key.to_string(), value).is_some() {
                return Err(at(
                    Field::Raw,
                    &format!("'{key}' is set both in its field and in the raw options"),
                ));
            }
        }
        Ok(body)
    }

    /// Where the API's refusal of this form belongs: the field its message names (the API quotes
    /// option names, e.g. `option 'model': ...`), the name for name errors, else the raw options if
    /// any were given, else the form.
    pub fn place(&self, error: &Error) -> FieldError {
        let message = error.public_message();
        let field = if message.starts_with("invalid instance name")
            || matches!(error, Error::Conflict(m) if m.contains("already exists"))
        {
            Field::Name
        } else if let Some(key) = OPTION_INPUTS
            .iter()
            .chain(["idle_timeout"].iter())
            .chain(CHOICES.iter())
            .copied()
            .find(|key| message.contains(&format!("'{key}'")) && !self.value_of(key).is_empty())
        {
            Field::Option(key)
        } else if !self.raw.trim().is_empty() {
            Field::Raw
        } else {
            Field::Form
        };
        FieldError {
            field,
            message,
            status: error.status(),
        }
    }
}

fn at(field: Field, message: &str) -> FieldError {
    FieldError {
        field,
        message: message.to_string(),
        status: StatusCode::BAD_REQUEST,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn form() -> InstanceForm {
        InstanceForm {
            name: "m".into(),
            model: "/models/a.gguf".into(),
            ctx_size: "2048".into(),
            auto_restart: "false".into(),
            raw: r#"{"temp": 0.7}"#.into(),
            ..InstanceForm::default()
        }
    }

    #[test]
    fn filled_inputs_and_raw_options_make_one_flat_body() {
        let body = form().body().unwrap();
        assert_eq!(
            Value::Object(body),
            json!({"temp": 0.7, "model": "/models/a.gguf", "ctx_size": 2048, "auto_restart": false})
        );
    }

    #[test]
    fn an_edit_replaces_the_options_and_resets_blank_choices_to_the_default() {
        let spec: InstanceSpec = serde_json::from_value(json!({
            "backend_type": "llama_cpp",
            "backend_options": {"model": "/m.gguf", "ctx_size": 512, "temp": 0.5},
            "auto_restart": false,
            "idle_timeout": 5
        }))
        .unwrap();
        let mut form = InstanceForm::of("m", &spec);
        assert_eq!(
            (
                form.model.as_str(),
                form.ctx_size.as_str(),
                form.auto_restart.as_str()
            ),
            ("/m.gguf", "512", "false")
        );
        assert_eq!(form.idle_timeout, "5");
        assert_eq!(
            serde_json::from_str::<Value>(&form.raw).unwrap(),
            json!({"temp": 0.5})
        );
        form.ctx_size = "1024".into();
        form.auto_restart = String::new();
        let body = form.edit_body().unwrap();
        assert_eq!(
            Value::Object(body),
            json!({
                "backend_options": {"temp": 0.5, "model": "/m.gguf", "ctx_size": 1024},
                "on_demand_start": null, "auto_restart": null, "idle_timeout": 5
            })
        );
    }

    #[test]
    fn bad_raw_options_and_doubled_keys_are_refused_at_the_raw_editor() {
        for raw in ["[1]", "{", r#"{"ctx_size": 1}"#] {
            let f = InstanceForm {
                raw: raw.into(),
                ..form()
            };
            assert_eq!(f.body().unwrap_err().field, Field::Raw, "{raw}");
        }
    }

    #[test]
    fn an_api_error_lands_at_the_field_it_names() {
        let f = form();
        let cases = [
            (
                Error::BadRequest("option 'model': a value may not start with '-'".into()),
                Field::Option("model"),
            ),
            (
                Error::BadRequest("invalid instance name: character ' ' is not allowed".into()),
                Field::Name,
            ),
            (
                Error::Conflict("instance 'm' already exists".into()),
                Field::Name,
            ),
            (
                Error::BadRequest("option 'temp' is not allowed: no".into()),
                Field::Raw,
            ),
        ];
        for (error, want) in cases {
            assert_eq!(f.place(&error).field, want, "{error}");
        }
        let plain = InstanceForm {
            raw: String::new(),
            ..form()
        };
        assert_eq!(
            plain
                .place(&Error::Conflict("max_instances reached".into()))
                .field,
            Field::Form
        );
    }
}
