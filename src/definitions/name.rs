//! Instance names: 1–64 characters of `[A-Za-z0-9._-]`, not `.` or `..`.

use crate::error::{Error, Result};

/// Longest accepted name.
pub const MAX_NAME_LEN: usize = 64;

/// Checks a name; the error says what is wrong with it.
pub fn validate(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(Error::BadRequest(format!(
            "invalid instance name: must be 1 to {MAX_NAME_LEN} characters"
        )));
    }
    if name == "." || name == ".." {
        return Err(Error::BadRequest(format!(
            "invalid instance name '{name}': '.' and '..' are reserved"
        )));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(Error::BadRequest(format!(
            "invalid instance name: character {bad:?} is not allowed (use A-Z a-z 0-9 . _ -)"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_valid_names() {
        for name in ["a", "llama2-7b", "Qwen2.5_7B", "x.y-z_1", &"a".repeat(64)] {
            assert!(validate(name).is_ok(), "{name}");
        }
    }

    #[test]
    fn rejects_invalid_names() {
        for name in [
            "",
            ".",
            "..",
            "a b",
            "a/b",
            "../etc",
            "na\u{e9}me",
            "semi;colon",
            &"a".repeat(65),
        ] {
            assert!(
                matches!(validate(name), Err(Error::BadRequest(_))),
                "{name:?}"
            );
        }
    }
}
