//! How a backend is run: its program, resolved once at startup from the configuration only, and the
//! environment every child starts from.
//!
//! A bare command name was looked up on the *child's* `PATH` at each spawn, so an instance that set
//! `PATH` chose the program. Now the name is resolved against llamactl's own `PATH` when the server
//! starts, and children start from an empty environment: only the variables in [`INHERITED`] are
//! copied from llamactl's own, then the operator's `backends.*.environment`, then the instance's (see
//! `instances::environment` for what an instance may set). No `LLAMACTL_*` variable ever reaches a child.

use crate::config::BackendConfig;
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// Which GPUs a backend uses: inherited from llamactl's environment, and an instance may set them too.
/// Entries ending in `*` are prefixes.
pub const GPU_SELECTION: &[&str] = &[
    "CUDA_VISIBLE_DEVICES",
    "CUDA_DEVICE_ORDER",
    "HIP_VISIBLE_DEVICES",
    "ROCR_VISIBLE_DEVICES",
    "GPU_DEVICE_ORDINAL",
    "HSA_OVERRIDE_GFX_VERSION",
    "ONEAPI_DEVICE_SELECTOR",
    "ZE_AFFINITY_MASK",
    "GGML_*",
];

/// Variables a child inherits from llamactl's own environment besides [`GPU_SELECTION`]: the basics
/// a program expects, where shared libraries and caches live, and proxies and CA bundles for model
/// downloads. Entries ending in `*` are prefixes.
pub const INHERITED: &[&str] = &[
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "LANG",
    "LANGUAGE",
    "LC_*",
    "TZ",
    "TMPDIR",
    "LD_LIBRARY_PATH",
    "XDG_CACHE_HOME",
    "LLAMA_CACHE",
    "HF_HOME",
    "HF_HUB_CACHE",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
];

/// True if `name` is one of `patterns` (an entry ending in `*` is a prefix).
pub fn matches_any(name: &str, patterns: &[&str]) -> bool {
    patterns.iter().any(|p| match p.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => name == *p,
    })
}

/// The backend's program and base environment, fixed when the server starts.
#[derive(Debug, Clone)]
pub struct BackendCommand {
    /// The command as configured, for messages.
    configured: String,
    /// The absolute path to run, or why the command cannot be run.
    program: Result<PathBuf, String>,
    /// Arguments put before the instance's own flags.
    args: Vec<String>,
    /// The operator's `backends.*.environment`.
    operator_env: BTreeMap<String, String>,
    /// What every child starts from: the inherited variables, then the operator's.
    base_env: BTreeMap<OsString, OsString>,
}

impl BackendCommand {
    /// Resolves the configured command against llamactl's own `PATH` and working directory, and
    /// takes the inherited variables from llamactl's own environment.
    pub fn resolve(cfg: &BackendConfig) -> Self {
        Self::resolve_with(cfg, std::env::vars_os())
    }

    /// [`BackendCommand::resolve`] with an injectable environment (for tests).
    pub fn resolve_with(
        cfg: &BackendConfig,
        own_env: impl IntoIterator<Item = (OsString, OsString)>,
    ) -> Self {
        let mut base_env: BTreeMap<OsString, OsString> = own_env
            .into_iter()
            .filter(|(name, _)| {
                name.to_str()
                    .is_some_and(|n| matches_any(n, INHERITED) || matches_any(n, GPU_SELECTION))
            })
            .collect();
        let path = base_env.get(&OsString::from("PATH")).cloned();
        let program = locate(&cfg.command, path);
        base_env.extend(
            cfg.environment
                .iter()
                .map(|(k, v)| (OsString::from(k), OsString::from(v))),
        );
        BackendCommand {
            configured: cfg.command.clone(),
            program,
            args: cfg.args.clone(),
            operator_env: cfg.environment.clone(),
            base_env,
        }
    }

    /// The command as configured.
    pub fn configured(&self) -> &str {
        &self.configured
    }

    /// The absolute path to run, or a message naming the command and why it cannot run.
    pub fn program(&self) -> Result<&Path, String> {
        self.program
            .as_deref()
            .map_err(|why| format!("cannot run '{}': {why}", self.configured))
    }

    /// Arguments put before the instance's own flags.
    pub fn args(&self) -> &[String] {
        &self.args
    }

    /// True if the operator set `name` under `backends.*.environment`.
    pub fn operator_sets(&self, name: &str) -> bool {
        self.operator_env.contains_key(name)
    }

    /// The whole environment of a child: the base, plus the instance's variables (never replacing
    /// one the operator set).
    pub fn environment(
        &self,
        instance: Option<&BTreeMap<String, String>>,
    ) -> BTreeMap<OsString, OsString> {
        let mut env = self.base_env.clone();
        for (name, value) in instance.into_iter().flatten() {
            if !self.operator_sets(name) {
                env.insert(name.into(), value.into());
            }
        }
        env
    }
}

/// The absolute path of `command`: a name with a `/` is taken relative to the working directory,
/// a bare name is searched on `path`; either must be an executable file.
fn locate(command: &str, path: Option<OsString>) -> Result<PathBuf, String> {
    let cwd =
        std::env::current_dir().map_err(|e| format!("cannot read the working directory: {e}"))?;
    which::which_in(command, path, cwd).map_err(|_| {
        if command.contains('/') {
            "no executable file there".to_string()
        } else {
            "no executable of that name on llamactl's PATH at startup".to_string()
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn config(command: &str, env: &[(&str, &str)]) -> BackendConfig {
        BackendConfig {
            command: command.into(),
            args: vec!["--log-disable".into()],
            environment: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    fn own_env(pairs: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
        pairs
            .iter()
            .map(|(k, v)| (OsString::from(k), OsString::from(v)))
            .collect()
    }

    fn executable(dir: &Path, name: &str) -> PathBuf {
        let file = dir.join(name);
        std::fs::write(&file, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o755)).unwrap();
        file
    }

    #[test]
    fn a_bare_name_is_found_on_llamactls_path_once() {
        let dir = tempfile::tempdir().unwrap();
        let want = executable(dir.path(), "llama-server");
        let path = dir.path().display().to_string();
        let cmd =
            BackendCommand::resolve_with(&config("llama-server", &[]), own_env(&[("PATH", &path)]));
        assert_eq!(cmd.program().unwrap(), want);
        assert!(cmd.program().unwrap().is_absolute());
    }

    #[test]
    fn a_missing_or_plain_file_is_an_error_naming_the_command() {
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("plain");
        std::fs::write(&plain, "not executable").unwrap();
        for command in [
            "/nonexistent/llama-server".to_string(),
            plain.display().to_string(),
            "no-such-program-anywhere".to_string(),
        ] {
            let cmd = BackendCommand::resolve_with(&config(&command, &[]), own_env(&[]));
            let err = cmd.program().unwrap_err();
            assert!(err.contains(&command), "{err}");
        }
    }

    #[test]
    fn children_inherit_only_the_allowlist_then_the_operators_variables() {
        let cmd = BackendCommand::resolve_with(
            &config(
                "/bin/sh",
                &[("CUDA_VISIBLE_DEVICES", "1"), ("HF_TOKEN", "op")],
            ),
            own_env(&[
                ("PATH", "/usr/bin"),
                ("LC_ALL", "C"),
                ("GGML_CUDA_NO_PINNED", "1"),
                ("CUDA_VISIBLE_DEVICES", "0"),
                ("LLAMACTL_MANAGEMENT_KEYS", "secret"),
                ("LD_PRELOAD", "/x.so"),
                ("PYTHONPATH", "/x"),
                ("AWS_SECRET_ACCESS_KEY", "x"),
            ]),
        );
        let env = cmd.environment(None);
        let names: Vec<&str> = env.keys().map(|k| k.to_str().unwrap()).collect();
        assert_eq!(
            names,
            [
                "CUDA_VISIBLE_DEVICES",
                "GGML_CUDA_NO_PINNED",
                "HF_TOKEN",
                "LC_ALL",
                "PATH"
            ]
        );
        assert_eq!(env[&OsString::from("CUDA_VISIBLE_DEVICES")], "1");
    }

    #[test]
    fn an_instance_adds_variables_but_never_replaces_the_operators() {
        let cmd = BackendCommand::resolve_with(
            &config("/bin/sh", &[("CUDA_VISIBLE_DEVICES", "1")]),
            own_env(&[]),
        );
        let instance: BTreeMap<String, String> = [
            ("CUDA_VISIBLE_DEVICES".to_string(), "7".to_string()),
            ("OMP_NUM_THREADS".to_string(), "4".to_string()),
        ]
        .into();
        let env = cmd.environment(Some(&instance));
        assert_eq!(env[&OsString::from("CUDA_VISIBLE_DEVICES")], "1");
        assert_eq!(env[&OsString::from("OMP_NUM_THREADS")], "4");
        assert!(cmd.operator_sets("CUDA_VISIBLE_DEVICES"));
        assert!(!cmd.operator_sets("OMP_NUM_THREADS"));
    }
}
