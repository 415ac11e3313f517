//! First boot: with management auth required and no management key anywhere, the server creates
//! one so the operator is not locked out, and prints it once. Only its hash is stored, so the next
//! boot finds it and creates nothing.

use super::model::{KeyKind, KeyScope, NewKey};
use super::store::KeyStore;
use super::token::Token;
use crate::db::history::Actor;
use crate::error::Result;
use std::io::Write;

/// Name of the key created on first boot.
pub const FIRST_KEY_NAME: &str = "initial-management-key";

/// Creates the first management key if none is in force and the file gives none; returns its token.
pub async fn first_management_key(
    store: &KeyStore,
    configured: bool,
    required: bool,
) -> Result<Option<Token>> {
    if !required || configured || store.has_management_key().await? {
        return Ok(None);
    }
    let new = NewKey {
        name: FIRST_KEY_NAME.into(),
        kind: KeyKind::Management,
        scope: KeyScope::All,
        expires_at: None,
    };
    let created = store.create(new, &Actor::system()).await?;
    Ok(Some(created.key))
}

/// Shows the first key on stderr, once, set apart so it is not lost among log lines.
pub fn announce(token: &Token) {
    let rule = "=".repeat(78);
    let text = format!(
        "\n{rule}\n\
         llamactl: no management API key existed, so one was created (id {id}).\n\
         It is shown only this once and stored only as a hash; save it now:\n\n\
         \x20   {secret}\n\n\
         Use it as 'Authorization: Bearer <key>'. Create more with POST /api/v1/auth/keys or\n\
         'llamactl keys create', and revoke this one when you no longer need it.\n\
         {rule}\n",
        id = token.id,
        secret = token.expose(),
    );
    // Printed, not logged: a log event could be shipped, filtered or repeated; this is shown once.
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}
