//! Checks on an instance's llama.cpp options, so that what the API sends stays an option of the
//! instance's own server: names that map to flags, values that never read as flags, and no option
//! that would make llama-server write or serve host files, run other programs or move its listener.
//!
//! `slot_save_path` is kept, but confined: its value is a relative directory inside the instance's
//! own slot directory (`<instances.slots_dir>/<name>/`), which llamactl creates before each start.

use crate::error::{Error, Result};
use serde_json::{Map, Value};
use std::path::{Component, Path};

/// Options llamactl sets itself.
pub(crate) const RESERVED: &[&str] = &["host", "port"];

/// Options refused outright, each with the reason shown to the caller.
pub(crate) const REFUSED: &[(&str, &str)] = &[
    (
        "log_file",
        "it writes a file anywhere; llamactl already keeps the log (GET .../logs)",
    ),
    ("log_prompts_dir", "it writes files anywhere"),
    (
        "lookup_cache_dynamic",
        "it names a file llama-server updates",
    ),
    ("path", "it serves a host directory over HTTP"),
    (
        "media_path",
        "it lets API callers read files of a host directory",
    ),
    (
        "models_dir",
        "it turns the instance into a router that starts other servers",
    ),
    (
        "models_preset",
        "it turns the instance into a router that starts other servers",
    ),
    ("video_ffmpeg_dir", "it chooses programs to run"),
    (
        "tools",
        "it lets API callers run commands and write files on the host",
    ),
    (
        "tools_runtime",
        "it lets API callers run commands elsewhere",
    ),
    (
        "agent",
        "it lets API callers run commands and write files on the host",
    ),
    ("mcp_servers_config", "it starts programs"),
    ("mcp_servers_json", "it starts programs"),
    ("ui_mcp_proxy", "it lets API callers reach other hosts"),
    ("webui_mcp_proxy", "it lets API callers reach other hosts"),
];

/// Download options that write to the file named by their partner option when both are given.
pub(crate) const DOWNLOAD_TARGETS: &[(&str, &str)] =
    &[("model_url", "model"), ("mmproj_url", "mmproj")];

/// The option whose value is confined to the instance's slot directory.
pub const SLOT_SAVE_PATH: &str = "slot_save_path";

/// An option name as llama-server matches it: `-` and `_` alike, any case.
pub fn canonical(key: &str) -> String {
    key.to_ascii_lowercase().replace('-', "_")
}

/// Checks every option, and the ones that must not be combined.
pub fn validate(options: &Map<String, Value>) -> Result<()> {
    for (key, value) in options {
        validate_option(key, value)?;
    }
    let given = |name: &str| options.keys().find(|k| canonical(k) == name);
    for (url, target) in DOWNLOAD_TARGETS {
        if let (Some(url), Some(target)) = (given(url), given(target)) {
            return Err(Error::BadRequest(format!(
                "options '{url}' and '{target}' together would download into the file '{target}' \
                 names; give '{url}' alone (llama.cpp then downloads into its cache)"
            )));
        }
    }
    Ok(())
}

/// Checks one option: a flag-like name that llamactl does not own or refuse, and a value that maps
/// to argv without ever reading as a flag.
fn validate_option(key: &str, value: &Value) -> Result<()> {
    let flag_like = key.len() <= 64
        && key.starts_with(|c: char| c.is_ascii_alphanumeric())
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !flag_like {
        return Err(Error::BadRequest(format!(
            "invalid option name '{key}': use letters, digits, '_' and '-'"
        )));
    }
    let name = canonical(key);
    if RESERVED.contains(&name.as_str()) {
        return Err(Error::BadRequest(format!(
            "option '{key}' is set by llamactl; use the instance-level 'port' field to fix a port"
        )));
    }
    if let Some((_, why)) = REFUSED.iter().find(|(refused, _)| *refused == name) {
        return Err(Error::BadRequest(format!(
            "option '{key}' is not allowed: {why}"
        )));
    }
    let items: &[Value] = match value {
        Value::Array(items) => items,
        other => std::slice::from_ref(other),
    };
    let list = value.is_array();
    for item in items {
        match item {
            Value::String(s) => check_string(key, s)?,
            Value::Number(_) => {}
            Value::Bool(_) if !list => {}
            _ => {
                return Err(Error::BadRequest(format!(
                    "option '{key}' has an unsupported value ({}): use a string, number, boolean or a list of strings/numbers",
                    super::spec::type_name(value)
                )))
            }
        }
    }
    if name == SLOT_SAVE_PATH {
        check_slot_path(key, value)?;
    }
    Ok(())
}

/// A string value is one argument: never a flag, never holding a NUL.
fn check_string(key: &str, s: &str) -> Result<()> {
    if s.starts_with('-') {
        return Err(Error::BadRequest(format!(
            "option '{key}': a value may not start with '-' (write negative numbers as JSON numbers, e.g. -1)"
        )));
    }
    if s.contains('\0') {
        return Err(Error::BadRequest(format!(
            "option '{key}' contains a NUL byte"
        )));
    }
    Ok(())
}

/// `slot_save_path` must be a relative directory that stays inside the instance's slot directory.
fn check_slot_path(key: &str, value: &Value) -> Result<()> {
    let inside = value.as_str().is_some_and(|s| {
        !s.is_empty()
            && Path::new(s)
                .components()
                .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
    });
    if !inside {
        return Err(Error::BadRequest(format!(
            "option '{key}' must be a relative directory without '..' (e.g. \".\"); it is kept \
             inside the instance's own slot directory"
        )));
    }
    Ok(())
}

/// The options as llama-server gets them: `slot_save_path` placed inside `slot_dir`. Returns them
/// and, when slots are saved, the directory to create first.
pub fn for_run(
    options: &Map<String, Value>,
    slot_dir: &Path,
) -> (Map<String, Value>, Option<std::path::PathBuf>) {
    let mut run = options.clone();
    let mut created = None;
    for (key, value) in run.iter_mut() {
        if canonical(key) == SLOT_SAVE_PATH {
            if let Some(relative) = value.as_str() {
                let dir = slot_dir.join(relative);
                *value = Value::String(dir.display().to_string());
                created = Some(dir);
            }
        }
    }
    (run, created)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn opts(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    fn refused(v: Value) -> String {
        match validate(&opts(v.clone())) {
            Err(Error::BadRequest(why)) => why,
            other => panic!("{v} was not refused: {other:?}"),
        }
    }

    #[test]
    fn ordinary_options_pass() {
        validate(&opts(json!({
            "model": "/m/a b.gguf", "ctx_size": 2048, "n_gpu_layers": -1, "seed": -1,
            "temp": -0.5, "embeddings": true, "flash_attn": false, "lora": ["a.gguf", "b.gguf"],
            "api_key": "k", "hf_repo": "org/repo:Q4_K_M", "slot_save_path": "kv/cache"
        })))
        .unwrap();
    }

    #[test]
    fn values_that_read_as_flags_are_refused_naming_the_option() {
        for (case, key) in [
            (json!({"alias": "--host"}), "alias"),
            (json!({"alias": "-x"}), "alias"),
            (json!({"n_gpu_layers": "-1"}), "n_gpu_layers"),
            (json!({"lora": ["a.gguf", "--x"]}), "lora"),
        ] {
            let why = refused(case);
            assert!(
                why.contains(&format!("'{key}'")) && why.contains("'-'"),
                "{why}"
            );
        }
    }

    #[test]
    fn options_that_write_serve_or_run_are_refused_in_any_spelling() {
        for key in [
            "log_file",
            "log-file",
            "LOG_FILE",
            "log_prompts_dir",
            "lookup-cache-dynamic",
            "path",
            "media_path",
            "models_dir",
            "models-preset",
            "video_ffmpeg_dir",
            "tools",
            "tools_runtime",
            "agent",
            "mcp_servers_config",
            "mcp-servers-json",
            "ui_mcp_proxy",
            "webui-mcp-proxy",
            "host",
            "Port",
        ] {
            let why = refused(json!({ key: "x" }));
            assert!(why.contains(&format!("'{key}'")), "{why}");
        }
    }

    #[test]
    fn a_download_may_not_name_its_destination() {
        let why = refused(json!({"model_url": "https://x/m.gguf", "model": "/data/llamactl.db"}));
        assert!(
            why.contains("model_url") && why.contains("'model'"),
            "{why}"
        );
        refused(json!({"mmproj-url": "https://x/p.gguf", "mmproj": "/tmp/p"}));
    }

    #[test]
    fn slot_save_path_stays_inside_the_instance_directory() {
        for bad in [
            json!("/var/lib/llamactl"),
            json!("../other"),
            json!("a/../../b"),
            json!(""),
            json!(true),
            json!(["a"]),
        ] {
            refused(json!({ "slot_save_path": bad }));
        }
        let (run, dir) = for_run(
            &opts(json!({"model": "/m.gguf", "slot-save-path": "kv"})),
            Path::new("/data/slots/m"),
        );
        assert_eq!(run["slot-save-path"], "/data/slots/m/kv");
        assert_eq!(dir.as_deref(), Some(Path::new("/data/slots/m/kv")));
        assert_eq!(run["model"], "/m.gguf");
    }

    #[test]
    fn unsupported_value_shapes_are_refused() {
        for case in [
            json!({"model": {"nested": 1}}),
            json!({"x": [{"a": 1}]}),
            json!({"x": [true]}),
            json!({"--model": "x"}),
            json!({"bad key": 1}),
            json!({"model": "a\u{0}b"}),
        ] {
            refused(case);
        }
    }
}
