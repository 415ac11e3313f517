//! The command line: with no subcommand `llamactl` serves; `llamactl keys ...` manages API keys in
//! the database directly, for the operator who is locked out (it works while the server runs);
//! `llamactl backup PATH` copies the database, also while the server runs.

pub mod backup;
pub mod keys;

use crate::auth::KeyKind;
use clap::{Parser, Subcommand};
use std::path::PathBuf;

/// `llamactl [--config PATH] [keys ...]`.
#[derive(Debug, Parser)]
#[command(
    name = "llamactl",
    version,
    about = "Runs many local llama-server instances behind one API"
)]
pub struct Cli {
    /// Configuration file (else LLAMACTL_CONFIG_PATH, else the usual places).
    #[arg(long, value_name = "PATH", global = true)]
    pub config: Option<PathBuf>,
    /// What to do; serve when absent.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Manage API keys in the server's database.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Copy the database to a new file, consistently, while the server runs (restore: stop
    /// llamactl, copy the backup to the database path, start it).
    Backup {
        /// Where to write the copy; an existing file is never overwritten.
        path: PathBuf,
    },
}

/// `llamactl keys ...`.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a key; its token is printed on stdout, this once.
    Create {
        /// A label for the key.
        #[arg(long)]
        name: String,
        /// `management` or `inference`.
        #[arg(long, value_parser = parse_kind)]
        kind: KeyKind,
        /// Limit an inference key to this instance (repeat for more); all when absent.
        #[arg(long = "instance", value_name = "NAME")]
        instances: Vec<String>,
        /// When the key stops working: Unix seconds or RFC 3339; never when absent.
        #[arg(long, value_name = "WHEN")]
        expires_at: Option<String>,
        /// Policy fields as the API takes them, e.g.
        /// '{"can_start": false, "routes": ["chat"], "limits": {"requests_per_minute": 60}}'.
        #[arg(long, value_name = "JSON")]
        policy: Option<String>,
    },
    /// Change a key's policy; a running server applies it within a few seconds.
    Update {
        /// The key's id.
        id: String,
        /// The fields to change, as `PATCH /api/v1/auth/keys/{id}` takes them, e.g.
        /// '{"can_evict": false, "instances": ["gemma-*"]}'.
        #[arg(value_name = "JSON")]
        change: String,
    },
    /// List keys (never their secrets).
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key by id; a running server refuses it within a few seconds.
    Revoke {
        /// The key's id (the part after `llamactl_mk_` or `llamactl_ik_`).
        id: String,
    },
}

fn parse_kind(text: &str) -> Result<KeyKind, String> {
    crate::names::parse(text).map_err(|_| format!("'{text}' is not 'management' or 'inference'"))
}
