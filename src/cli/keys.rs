//! `llamactl keys create|list|update|revoke`, on the database the configuration points at.

use super::KeysCommand;
use crate::audit::Actor;
use crate::auth::model::{CreateKey, KeyInfo, UpdateKey};
use crate::auth::KeyStore;
use crate::config::Config;
use crate::db::Db;
use crate::error::{Error, Result};
use crate::names;
use crate::timestamp::{self, When};
use std::io::Write;

/// Runs one `keys` subcommand; results go to `out`, notes to stderr.
pub async fn run(cmd: KeysCommand, cfg: &Config, out: &mut impl Write) -> Result<()> {
    let db = Db::open(&cfg.database_path())
        .await?
        .with_history_limit(cfg.history.max_events);
    let store = KeyStore::new(db);
    // Usage as the server last saved it (at most a couple of seconds old while it runs).
    store.load_quotas().await?;
    match cmd {
        KeysCommand::Create {
            name,
            kind,
            instances,
            expires_at,
            policy,
        } => {
            let policy: UpdateKey = match policy {
                Some(json) => serde_json::from_str(&json)
                    .map_err(|e| Error::BadRequest(format!("--policy: {e}")))?,
                None => UpdateKey::default(),
            };
            if policy.instances.is_some() {
                return Err(Error::BadRequest(
                    "--policy: give instances with --instance".into(),
                ));
            }
            let request = CreateKey {
                name,
                kind,
                instances: (!instances.is_empty()).then_some(instances),
                expires_at: expires_at
                    .map(|t| timestamp::parse(&t).map(When))
                    .transpose()?,
                can_start: policy.can_start,
                can_evict: policy.can_evict,
                routes: policy.routes.flatten(),
                priority: policy.priority,
                limits: policy.limits.flatten(),
            };
            let new = request.validate(chrono::Utc::now().timestamp())?;
            let created = store.create(new, &operator()).await?;
            eprintln!(
                "created {} key '{}' (id {}); it is shown only this once:",
                names::name_of(&created.info.kind),
                created.info.name,
                created.info.id
            );
            writeln!(out, "{}", created.key.expose())?;
        }
        KeysCommand::List { json } => {
            let keys = store.list().await?;
            if json {
                let text = serde_json::to_string_pretty(&keys)
                    .map_err(|e| Error::Internal(e.to_string()))?;
                writeln!(out, "{text}")?;
            } else {
                write_table(&keys, out)?;
            }
        }
        KeysCommand::Update { id, change } => {
            let change: UpdateKey = serde_json::from_str(&change)
                .map_err(|e| Error::BadRequest(format!("invalid change: {e}")))?;
            let key = store.update(&id, change, &operator()).await?;
            let text =
                serde_json::to_string_pretty(&key).map_err(|e| Error::Internal(e.to_string()))?;
            writeln!(out, "{text}")?;
        }
        KeysCommand::Revoke { id } => {
            store.revoke(&id, &operator()).await?;
            writeln!(out, "revoked key {id}")?;
        }
    }
    Ok(())
}

/// The history's name for whoever runs the CLI.
fn operator() -> Actor {
    let user = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
    Actor::named(&format!("cli:{user}"))
}

fn when(secs: Option<i64>) -> String {
    secs.and_then(|s| chrono::DateTime::from_timestamp(s, 0))
        .map_or_else(|| "-".into(), |t| t.format("%Y-%m-%d %H:%M").to_string())
}

fn write_table(keys: &[KeyInfo], out: &mut impl Write) -> Result<()> {
    writeln!(
        out,
        "{:<10}  {:<24}  {:<10}  {:<8}  {:<16}  {:<16}  {:<16}  INSTANCES",
        "ID", "NAME", "KIND", "STATUS", "CREATED", "EXPIRES", "LAST USED"
    )?;
    for key in keys {
        let status = names::name_of(&key.status);
        writeln!(
            out,
            "{:<10}  {:<24}  {:<10}  {:<8}  {:<16}  {:<16}  {:<16}  {}",
            key.id,
            key.name,
            names::name_of(&key.kind),
            status,
            when(Some(key.created_at)),
            when(key.expires_at),
            when(key.last_used_at),
            key.instances
                .as_ref()
                .map_or_else(|| "all".into(), |list| list.join(","))
        )?;
    }
    Ok(())
}
