//! First boot: with management auth required, no management key in the configuration, and none
//! ever created in this database, the server creates one so the operator is not locked out. The
//! token is written once to a file only llamactl's user can read; only the file's path is printed.
//!
//! "Ever" is remembered by the database (see the `meta` table): once every management key is
//! revoked or expired, no boot creates one by itself again; the server warns, and the operator
//! creates one with `llamactl keys create`.

use super::model::{Access, KeyKind, NewKey};
use super::store::KeyStore;
use crate::audit::Actor;
use crate::error::{Error, Result};
use crate::files;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Name of the key created on first boot, and of the file it is written to in the data dir.
pub const FIRST_KEY_NAME: &str = "initial-management-key";

/// What the first-boot check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FirstBoot {
    /// A management key is in force, or the configuration gives one, or none is needed.
    Nothing,
    /// A key was created (this id) and its token written to this file.
    Created {
        /// Public id of the new key.
        id: String,
        /// The file holding the token.
        file: PathBuf,
    },
    /// Management keys were created before, but none is in force: the management API refuses
    /// every request until the operator creates one.
    NoneInForce,
}

/// The file the first key is written to.
pub fn key_file(data_dir: &Path) -> PathBuf {
    data_dir.join(FIRST_KEY_NAME)
}

/// Creates the first management key if none was ever created and the configuration gives none,
/// writing its token to [`key_file`].
pub async fn first_management_key(
    store: &KeyStore,
    configured: bool,
    required: bool,
    data_dir: &Path,
) -> Result<FirstBoot> {
    if !required || configured || store.has_management_key().await? {
        return Ok(FirstBoot::Nothing);
    }
    if store.had_management_key().await? {
        return Ok(FirstBoot::NoneInForce);
    }
    let path = key_file(data_dir);
    // Created before the key, so a file that is in the way costs no key.
    let mut file = files::create_new_private(&path, "create key file").map_err(|e| {
        Error::Failed(format!(
            "{e}; it may hold an earlier first-boot key: move it away and start again"
        ))
    })?;
    let new = NewKey {
        name: FIRST_KEY_NAME.into(),
        kind: KeyKind::Management,
        access: (*Access::open()).clone(),
        expires_at: None,
    };
    let created = match store.create(new, &Actor::system()).await {
        Ok(created) => created,
        Err(e) => {
            let _ = std::fs::remove_file(&path);
            return Err(e);
        }
    };
    let written = writeln!(file, "{}", created.key.expose()).and_then(|()| file.sync_all());
    if let Err(e) = written {
        // A key nobody can read would only be a liability.
        let _ = store.revoke(&created.info.id, &Actor::system()).await;
        let _ = std::fs::remove_file(&path);
        return Err(Error::io("write the first management key to", &path, e));
    }
    Ok(FirstBoot::Created {
        id: created.info.id,
        file: path,
    })
}

/// Tells the operator what the first-boot check found, with the file's path, never a token.
pub fn announce(outcome: &FirstBoot) {
    match outcome {
        FirstBoot::Nothing => {}
        FirstBoot::Created { id, file } => tracing::warn!(
            key_id = %id,
            file = %file.display(),
            "no management API key existed, so one was created and written to {}, readable only \
             by this user: use it as 'Authorization: Bearer <key>', keep it somewhere safe, and \
             delete the file",
            file.display()
        ),
        FirstBoot::NoneInForce => tracing::warn!(
            "no management API key is in force (all were revoked or have expired), so the \
             management API refuses every request; create one with 'llamactl keys create --name \
             NAME --kind management' (it works while the server runs)"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::Db;
    use std::os::unix::fs::PermissionsExt;

    #[tokio::test]
    async fn a_key_is_made_once_per_database_and_never_again_after_revocation() {
        let dir = tempfile::tempdir().unwrap();
        let store = KeyStore::new(Db::open(&dir.path().join("t.db")).await.unwrap());
        let data = dir.path();

        assert_eq!(
            first_management_key(&store, true, true, data)
                .await
                .unwrap(),
            FirstBoot::Nothing
        );
        assert_eq!(
            first_management_key(&store, false, false, data)
                .await
                .unwrap(),
            FirstBoot::Nothing
        );
        let FirstBoot::Created { id, file } = first_management_key(&store, false, true, data)
            .await
            .unwrap()
        else {
            panic!("no key created");
        };
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let token = std::fs::read_to_string(&file).unwrap();
        assert!(token.trim().starts_with(&format!("llamactl_mk_{id}_")));
        assert_eq!(
            first_management_key(&store, false, true, data)
                .await
                .unwrap(),
            FirstBoot::Nothing
        );

        store.revoke(&id, &Actor::system()).await.unwrap();
        std::fs::remove_file(&file).unwrap();
        assert_eq!(
            first_management_key(&store, false, true, data)
                .await
                .unwrap(),
            FirstBoot::NoneInForce
        );
        assert!(!file.exists());
        assert_eq!(store.list().await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_file_in_the_way_is_an_error_and_costs_no_key() {
        let dir = tempfile::tempdir().unwrap();
        let store = KeyStore::new(Db::open(&dir.path().join("t.db")).await.unwrap());
        std::fs::write(key_file(dir.path()), "old").unwrap();
        let err = first_management_key(&store, false, true, dir.path())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("move it away"), "{err}");
        assert!(store.list().await.unwrap().is_empty());
        assert_eq!(
            std::fs::read_to_string(key_file(dir.path())).unwrap(),
            "old"
        );
    }
}
