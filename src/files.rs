//! llamactl's files are private to the user it runs as: directories 0700, files 0600, because they
//! hold API key hashes, instance definitions with their environment, and backend logs. New ones
//! are created so; ones left looser (by an older llamactl or a lax umask) are tightened at startup.

use crate::error::{Error, Result};
use std::fs::{DirBuilder, File, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Mode of llamactl's directories.
pub const DIR_MODE: u32 = 0o700;

/// Mode of llamactl's files.
pub const FILE_MODE: u32 = 0o600;

/// Makes whatever the process creates from now on private to its user, children included (a
/// backend's slot files or caches). Called once by the binary, before anything is created.
pub fn private_umask() {
    // SAFETY: umask only swaps the process's file-creation mask; it cannot fail.
    unsafe {
        libc::umask(0o077);
    }
}

/// Creates `dir` and missing parents with [`DIR_MODE`]; an existing one is left as it is. `what`
/// names it in the error (`data directory`).
pub fn create_private_dir(dir: &Path, what: &'static str) -> Result<()> {
    DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
        .map_err(|e| Error::io(what, dir, e))
}

/// Creates `dir` like [`create_private_dir`], and tightens it if it exists with a looser mode.
/// Only for directories that are llamactl's own (the data and log directories).
pub fn private_dir(dir: &Path, what: &'static str) -> Result<()> {
    create_private_dir(dir, what)?;
    tighten(dir);
    Ok(())
}

/// Takes group and other access away from `path`, if it exists and has any; warns if it cannot.
pub fn tighten(path: &Path) {
    let Ok(meta) = std::fs::metadata(path) else {
        return;
    };
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 == 0 {
        return;
    }
    let tight = mode & !0o077;
    match std::fs::set_permissions(path, std::fs::Permissions::from_mode(tight)) {
        Ok(()) => tracing::info!(
            path = %path.display(),
            "made private (mode {mode:o} -> {tight:o})"
        ),
        Err(e) => tracing::warn!(
            path = %path.display(),
            error = %e,
            "readable by other users (mode {mode:o}) and cannot be made private"
        ),
    }
}

/// Creates `path` for writing with [`FILE_MODE`]; fails if anything exists there, so it never
/// writes through a link planted in its place and never is readable by others, not even briefly.
pub fn create_new_private(path: &Path, what: &'static str) -> Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .open(path)
        .map_err(|e| Error::io(what, path, e))
}

/// Opens `path` for appending, creating it with [`FILE_MODE`] if it does not exist.
pub fn append_private(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(FILE_MODE)
        .open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn creates_private_and_tightens_loose_modes() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/b");
        private_dir(&dir, "create test directory").unwrap();
        assert_eq!(mode(&dir), 0o700);
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        private_dir(&dir, "create test directory").unwrap();
        assert_eq!(mode(&dir), 0o700);

        let file = dir.join("f");
        drop(append_private(&file).unwrap());
        assert_eq!(mode(&file), 0o600);
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        tighten(&file);
        assert_eq!(mode(&file), 0o600);
        tighten(&dir.join("missing"));

        let new = dir.join("new");
        drop(create_new_private(&new, "create test file").unwrap());
        assert_eq!(mode(&new), 0o600);
        let err = create_new_private(&new, "create test file").unwrap_err();
        assert!(err.to_string().contains("exists"), "{err}");
    }
}
