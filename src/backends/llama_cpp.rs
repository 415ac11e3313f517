//! How an instance's options become `llama-server`'s argv.

use serde_json::{Map, Value};

/// Turns options into flags: `snake_case` → `--kebab-case`; `true` → bare flag; `false` → omitted;
/// a list repeats the flag; numbers and strings are passed as given (`instances::options` has checked
/// that no string starts with `-`, so none reads as a flag). Then `--alias <name>` unless the options
/// give one, so that answers name the model as the client asked for it (the instance), not the
/// model file's path, without llamactl re-encoding bodies. The server's own `--host` and `--port`
/// come last so nothing in the options can override them.
pub fn build_args(
    base_args: &[String],
    options: &Map<String, Value>,
    name: &str,
    host: &str,
    port: u16,
) -> Vec<String> {
    let mut args: Vec<String> = base_args.to_vec();
    for (key, value) in options {
        let flag = format!("--{}", key.replace('_', "-"));
        match value {
            Value::Bool(true) => args.push(flag),
            Value::Bool(false) | Value::Null => {}
            Value::Array(items) => {
                for item in items {
                    args.push(flag.clone());
                    args.push(scalar(item));
                }
            }
            other => {
                args.push(flag);
                args.push(scalar(other));
            }
        }
    }
    let aliased = options
        .keys()
        .any(|key| key.replace('-', "_").eq_ignore_ascii_case("alias"));
    if !aliased {
        args.extend(["--alias".to_string(), name.to_string()]);
    }
    args.extend(["--host".to_string(), host.to_string()]);
    args.extend(["--port".to_string(), port.to_string()]);
    args
}

fn scalar(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn opts(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn maps_each_value_kind() {
        let args = build_args(
            &["--log-disable".into()],
            &opts(json!({
                "model": "/m/a b.gguf",
                "ctx_size": 2048,
                "n_gpu_layers": 0,
                "temp": 0.5,
                "embeddings": true,
                "flash_attn": false,
                "lora": ["a.gguf", "b.gguf"]
            })),
            "gemma",
            "127.0.0.1",
            8001,
        );
        assert_eq!(
            args,
            [
                "--log-disable",
                "--model",
                "/m/a b.gguf",
                "--ctx-size",
                "2048",
                "--n-gpu-layers",
                "0",
                "--temp",
                "0.5",
                "--embeddings",
                "--lora",
                "a.gguf",
                "--lora",
                "b.gguf",
                "--alias",
                "gemma",
                "--host",
                "127.0.0.1",
                "--port",
                "8001"
            ]
        );
    }

    #[test]
    fn shell_metacharacters_stay_one_argument() {
        let args = build_args(
            &[],
            &opts(json!({"model": "$(rm -rf /); echo"})),
            "m",
            "127.0.0.1",
            1,
        );
        assert_eq!(args[1], "$(rm -rf /); echo");
        assert_eq!(args.len(), 8);
    }

    #[test]
    fn answers_name_the_instance_unless_the_options_give_an_alias() {
        let ours = build_args(&[], &opts(json!({"model": "/m.gguf"})), "gemma", "h", 1);
        assert_eq!(ours[2..4], ["--alias", "gemma"]);
        let theirs = build_args(&[], &opts(json!({"alias": "g3"})), "gemma", "h", 1);
        assert_eq!(theirs.iter().filter(|a| *a == "--alias").count(), 1);
        assert!(theirs.contains(&"g3".to_string()));
    }
}
