//! A consistent copy of the database, taken while the server runs: `VACUUM INTO` reads one
//! snapshot (a read transaction, which in WAL mode blocks no writer) and writes it as a compact,
//! self-contained database file.

use super::Db;
use crate::error::{Error, Result};
use crate::files;
use std::path::Path;

impl Db {
    /// Writes a copy of the database to `target`, a new file private to this user; returns its
    /// size in bytes. An existing `target` is refused, never overwritten.
    pub async fn backup_to(&self, target: &Path) -> Result<u64> {
        let Some(name) = target.to_str() else {
            return Err(Error::BadRequest(format!(
                "the backup path {} is not valid UTF-8",
                target.display()
            )));
        };
        // Created here, empty, exclusively and 0600 (SQLite writes into an empty file and keeps
        // its mode): nothing that exists is overwritten, no link planted there is followed, and
        // the copy is never readable by others, not even while it is written.
        drop(files::create_new_private(target, "create the backup file")?);
        let copied = async {
            sqlx::query("VACUUM INTO ?")
                .bind(name)
                .execute(self.pool())
                .await
                .map_err(|e| Error::database(e, target.parent()))?;
            // VACUUM INTO does not sync what it wrote: a backup must survive a power cut.
            let file = std::fs::File::open(target)
                .map_err(|e| Error::io("open the backup file", target, e))?;
            file.sync_all()
                .map_err(|e| Error::io("sync the backup file", target, e))?;
            let meta = file
                .metadata()
                .map_err(|e| Error::io("read the backup file", target, e))?;
            Ok(meta.len())
        }
        .await;
        if copied.is_err() {
            // Half a copy must not be mistaken for a backup.
            let _ = std::fs::remove_file(target);
        }
        copied
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::instances::Desired;
    use std::os::unix::fs::PermissionsExt;

    #[tokio::test]
    async fn the_copy_is_private_complete_and_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("live.db")).await.unwrap();
        db.insert_instance("a", "{}", Desired::Running, 1)
            .await
            .unwrap();
        let target = dir.path().join("copy.db");

        let size = db.backup_to(&target).await.unwrap();

        assert!(size > 0);
        let mode = std::fs::metadata(&target).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let copy = Db::open(&target).await.unwrap();
        let names: Vec<String> = copy
            .list_instances()
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.name)
            .collect();
        assert_eq!(names, ["a"]);

        let before = std::fs::read(&target).unwrap();
        let err = db.backup_to(&target).await.unwrap_err();
        assert!(err.to_string().contains("exists"), "{err}");
        assert_eq!(std::fs::read(&target).unwrap(), before, "left as it was");
    }
}
