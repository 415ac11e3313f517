//! `llamactl backup PATH`: a consistent copy of the database the configuration points at, taken
//! while the server runs, so an operator never needs to lock the live file to copy it.

use crate::config::Config;
use crate::db::Db;
use crate::error::{Error, Result};
use std::io::Write;
use std::path::Path;

/// Copies the database to `target`; the result goes to `out`.
pub async fn run(target: &Path, cfg: &Config, out: &mut impl Write) -> Result<()> {
    let source = cfg.database_path();
    // Opening would create an empty database, and a backup of nothing is no backup.
    if !source.exists() {
        return Err(Error::NotFound(format!(
            "no database at {} (check data_dir and database.path)",
            source.display()
        )));
    }
    let db = Db::open(&source).await?;
    let bytes = db.backup_to(target).await?;
    writeln!(
        out,
        "backed up {} to {} ({bytes} bytes)",
        source.display(),
        target.display()
    )?;
    Ok(())
}
