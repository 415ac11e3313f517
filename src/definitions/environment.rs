//! Which environment variables an instance definition may set for its backend.
//!
//! An allowlist, not a denylist: too many variables make a program load code or change where it
//! listens (`PATH`, `LD_PRELOAD`, `GGML_BACKEND_PATH`, `VK_ICD_FILENAMES`, `CUDA_INJECTION64_PATH`,
//! `HSA_TOOLS_LIB`, `PYTHONPATH`, `HOME` (llama.cpp reads `~/.config/llama.cpp/config.ini`),
//! `AIP_HTTP_PORT` (moves llama-server's port), `LLAMA_ARG_*` (llama-server's options), ...) to list
//! them all. Anything else is the operator's to set, under `backends.*.environment`.

use crate::backends::command::{matches_any, GPU_SELECTION};
use crate::error::{Error, Result};

/// What an instance may set besides [`GPU_SELECTION`] (llama.cpp's `GGML_*` tuning included):
/// threading and the Hugging Face token. Entries ending in `*` are prefixes.
pub const INSTANCE_ALLOWED: &[&str] = &[
    "MTMD_BACKEND_DEVICE",
    "OMP_NUM_THREADS",
    "OMP_WAIT_POLICY",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "HF_TOKEN",
    "NO_COLOR",
    "TZ",
];

/// Words that make a `GGML_*` variable name a file or library location rather than a tuning knob
/// (`GGML_BACKEND_PATH` loads a shared library).
const LOCATION_WORDS: &[&str] = &["PATH", "DIR", "FILE", "LIB"];

/// Checks that an instance may set `name`; `operator_sets` says whether the operator set it.
pub fn check_variable(name: &str, operator_sets: impl Fn(&str) -> bool) -> Result<()> {
    let valid = !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        return Err(Error::BadRequest(format!(
            "environment: '{name}' is not a valid variable name"
        )));
    }
    if let Some(option) = name.strip_prefix("LLAMA_ARG_") {
        return Err(Error::BadRequest(format!(
            "environment: '{name}' cannot be set per instance; use the option '{}' instead",
            option.to_ascii_lowercase()
        )));
    }
    let location = name.starts_with("GGML_") && LOCATION_WORDS.iter().any(|w| name.contains(w));
    if location || !(matches_any(name, GPU_SELECTION) || matches_any(name, INSTANCE_ALLOWED)) {
        return Err(Error::BadRequest(format!(
            "environment: '{name}' cannot be set per instance (allowed: {}, {}); the operator can \
             set it for every instance under backends.llama-cpp.environment",
            GPU_SELECTION.join(", "),
            INSTANCE_ALLOWED.join(", ")
        )));
    }
    if operator_sets(name) {
        return Err(Error::BadRequest(format!(
            "environment: '{name}' is set by the operator (backends.llama-cpp.environment) and \
             cannot be changed per instance"
        )));
    }
    Ok(())
}

/// Checks a value: an environment entry cannot hold a NUL byte, so one would make every start fail.
pub fn check_value(name: &str, value: &str) -> Result<()> {
    if value.contains('\0') {
        return Err(Error::BadRequest(format!(
            "environment: the value of '{name}' contains a NUL byte"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_with_a_nul_byte_are_refused() {
        assert!(check_value("TZ", "UTC").is_ok());
        assert!(matches!(
            check_value("TZ", "U\0TC"),
            Err(Error::BadRequest(_))
        ));
    }

    fn check(name: &str) -> Result<()> {
        check_variable(name, |n| n == "CUDA_VISIBLE_DEVICES")
    }

    #[test]
    fn gpu_selection_and_tuning_are_allowed() {
        for name in [
            "HIP_VISIBLE_DEVICES",
            "GGML_CUDA_ENABLE_UNIFIED_MEMORY",
            "GGML_VK_VISIBLE_DEVICES",
            "OMP_NUM_THREADS",
            "HF_TOKEN",
        ] {
            assert!(check(name).is_ok(), "{name}");
        }
    }

    #[test]
    fn loader_and_runtime_variables_are_refused_by_name() {
        for name in [
            "PATH",
            "LD_PRELOAD",
            "LD_LIBRARY_PATH",
            "DYLD_INSERT_LIBRARIES",
            "GCONV_PATH",
            "GLIBC_TUNABLES",
            "MALLOC_CONF",
            "LOCPATH",
            "NLSPATH",
            "HOSTALIASES",
            "RES_OPTIONS",
            "PYTHONPATH",
            "PYTHONWARNINGS",
            "PERL5OPT",
            "RUBYOPT",
            "NODE_OPTIONS",
            "BASH_ENV",
            "ENV",
            "IFS",
            "SHELL",
            "HOME",
            "XDG_CONFIG_HOME",
            "TMPDIR",
            "VK_ICD_FILENAMES",
            "CUDA_INJECTION64_PATH",
            "HSA_TOOLS_LIB",
            "OMP_TOOL_LIBRARIES",
            "AIP_HTTP_PORT",
            "LLAMA_APP_CMD",
            "LLAMA_CACHE",
            "GGML_BACKEND_PATH",
            "GGML_METAL_PATH_RESOURCES",
            "LLAMACTL_MANAGEMENT_KEYS",
        ] {
            let err = check(name).unwrap_err().to_string();
            assert!(err.contains(&format!("'{name}'")), "{name}: {err}");
        }
    }

    #[test]
    fn llama_server_options_point_to_the_option() {
        for (name, option) in [
            ("LLAMA_ARG_HOST", "host"),
            ("LLAMA_ARG_PORT", "port"),
            ("LLAMA_ARG_LOG_FILE", "log_file"),
        ] {
            let err = check(name).unwrap_err().to_string();
            assert!(err.contains(name) && err.contains(option), "{err}");
        }
    }

    #[test]
    fn the_operators_variables_cannot_be_overridden() {
        let err = check("CUDA_VISIBLE_DEVICES").unwrap_err().to_string();
        assert!(err.contains("set by the operator"), "{err}");
    }

    #[test]
    fn malformed_names_are_refused() {
        for name in ["", "1BAD", "A-B", "A=B", "A\0"] {
            assert!(check(name).is_err(), "{name:?}");
        }
    }
}
