//! What every signed-in page shows around its content: who is looking (key name, kind, the
//! instances the key reaches), the navigation their key allows, and the sign-out form.

use super::signed_in::SignedIn;

/// The frame of a signed-in page.
#[derive(Debug, Clone)]
pub struct Chrome {
    /// Whose key it is.
    pub name: String,
    /// `management` or `inference`.
    pub kind: String,
    /// Which instances the key reaches, in words.
    pub scope: String,
    /// The session's CSRF token for forms; `None` while the API is open (no session).
    pub csrf: Option<String>,
    /// May manage (a management key, or anyone while the management API is open).
    pub operator: bool,
    /// When the session ends (RFC 3339), if it is a session.
    pub session_ends: Option<String>,
    /// Which navigation entry is current.
    pub page: &'static str,
}

impl Chrome {
    /// The frame for `viewer` on the page named `page`.
    pub fn of(viewer: &SignedIn, page: &'static str) -> Chrome {
        let caller = &viewer.caller;
        let scope = match caller.access().scope.names() {
            None => "every instance".to_string(),
            Some(names) if names.is_empty() => "no instance".to_string(),
            Some(names) => names.join(", "),
        };
        Chrome {
            name: caller.actor.name.clone(),
            // A session says its key's kind; an open API's anonymous caller is an operator.
            kind: match &viewer.session {
                Some((session, _)) => crate::names::name_of(&session.kind),
                None if caller.is_operator() => "management".into(),
                None => "inference".into(),
            },
            scope,
            csrf: viewer.session.as_ref().map(|(s, _)| s.csrf.clone()),
            operator: caller.is_operator(),
            session_ends: viewer.session.as_ref().and_then(|(s, _)| {
                chrono::DateTime::from_timestamp(s.expires_at, 0).map(|at| at.to_rfc3339())
            }),
            page,
        }
    }

    /// The CSRF token for a form (empty without a session, where none is checked).
    pub fn token(&self) -> &str {
        self.csrf.as_deref().unwrap_or("")
    }
}
