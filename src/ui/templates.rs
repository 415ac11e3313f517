//! What the pages render: one struct per template in the crate's `templates/`, so a template that names a
//! field the struct lacks does not compile. askama escapes every value for HTML.

use super::chrome::Chrome;
use super::instance_form::{FieldError, InstanceForm};
use super::keys::KeyForm;
use super::rows::InstanceRow;
use crate::error::Error;
use askama::Template;
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};

/// The sign-in form.
#[derive(Template)]
#[template(path = "sign_in.html")]
pub struct SignInPage {
    /// Why the last attempt failed.
    pub error: Option<String>,
}

/// The instances table, the landing page.
#[derive(Template)]
#[template(path = "instances.html")]
pub struct InstancesPage {
    /// The frame.
    pub chrome: Chrome,
    /// One row per instance the viewer may see.
    pub rows: Vec<InstanceRow>,
}

/// One row of the table alone, for the page's script to swap in when an event says it changed.
#[derive(Template)]
#[template(path = "instance_row.html")]
pub struct InstanceRowFragment {
    /// The frame (the row's forms need its CSRF token and whether to offer them).
    pub chrome: Chrome,
    /// The row.
    pub row: InstanceRow,
}

/// One instance's page.
#[derive(Template)]
#[template(path = "instance.html")]
pub struct InstancePage {
    /// The frame.
    pub chrome: Chrome,
    /// The instance.
    pub name: String,
    /// Its row, alone (a list so the live table's markup and script serve here too).
    pub rows: Vec<InstanceRow>,
    /// The definition as JSON, secret-looking values hidden (operators only; else empty).
    pub definition: String,
    /// The command line it runs (operators only; else empty).
    pub command: String,
    /// Its latest history, newest first (operators only).
    pub history: Vec<HistoryLine>,
    /// Its requests and tokens over the last day and month.
    pub periods: Vec<super::usage_chart::Period>,
    /// Whose requests the charts count, said under their heading.
    pub usage_scope: &'static str,
}

/// One history row as the page shows it.
#[derive(Debug, Clone)]
pub struct HistoryLine {
    /// RFC 3339, UTC.
    pub time: String,
    /// What happened.
    pub event: String,
    /// Who caused it.
    pub actor: String,
    /// More about it.
    pub detail: String,
}

impl From<crate::db::history::HistoryRow> for HistoryLine {
    fn from(row: crate::db::history::HistoryRow) -> Self {
        HistoryLine {
            time: crate::timestamp::format_millis(row.at_ms),
            event: row.event,
            actor: row.actor,
            detail: row.detail.unwrap_or_default(),
        }
    }
}

/// The keys page.
#[derive(Template)]
#[template(path = "keys.html")]
pub struct KeysPage {
    /// The frame.
    pub chrome: Chrome,
    /// Every key, newest first.
    pub keys: Vec<KeyLine>,
    /// The create form's values.
    pub form: KeyForm,
    /// The create form's refusal: the field it concerns (`form` for none) and the API's message.
    pub error: Option<(&'static str, String)>,
    /// A key just made: its name and whole token, shown this once.
    pub created: Option<(String, String)>,
}

impl KeysPage {
    /// The error message if it belongs at `field`.
    pub fn error_at(&self, field: &str) -> Option<&str> {
        self.error
            .as_ref()
            .filter(|(f, _)| *f == field)
            .map(|(_, m)| m.as_str())
    }

    /// `selected` if the kind chosen is `kind`.
    pub fn kind_selected(&self, kind: &str) -> &'static str {
        if self.form.kind == kind {
            "selected"
        } else {
            ""
        }
    }
}

/// One key as the keys page lists it.
#[derive(Debug, Clone)]
pub struct KeyLine {
    /// Public id.
    pub id: String,
    /// Label.
    pub name: String,
    /// `management` or `inference`.
    pub kind: String,
    /// Its instances in words.
    pub instances: String,
    /// `active`, `expired` or `revoked`.
    pub status: String,
    /// RFC 3339 or `never`.
    pub expires: String,
    /// RFC 3339 or `never`.
    pub last_used: String,
    /// RFC 3339.
    pub created: String,
}

fn when(secs: Option<i64>) -> String {
    secs.and_then(|s| chrono::DateTime::from_timestamp(s, 0))
        .map_or_else(|| "never".into(), |at| at.to_rfc3339())
}

impl From<crate::auth::model::KeyInfo> for KeyLine {
    fn from(key: crate::auth::model::KeyInfo) -> Self {
        KeyLine {
            instances: key
                .instances
                .map_or_else(|| "all".into(), |names| names.join(", ")),
            kind: crate::names::name_of(&key.kind),
            status: crate::names::name_of(&key.status),
            expires: when(key.expires_at),
            last_used: when(key.last_used_at),
            created: when(Some(key.created_at)),
            id: key.id,
            name: key.name,
        }
    }
}

/// The activity and usage page.
#[derive(Template)]
#[template(path = "activity.html")]
pub struct ActivityPage {
    /// The frame.
    pub chrome: Chrome,
    /// The range shown (`1h`, `24h`, `7d`, `30d`).
    pub range: &'static str,
    /// The latest requests in the range, newest first.
    pub recent: Vec<ActivityLine>,
    /// Sums per key.
    pub per_key: Vec<UsageLine>,
    /// Sums per instance.
    pub per_instance: Vec<UsageLine>,
    /// Sums per UTC day.
    pub per_day: Vec<UsageLine>,
}

impl ActivityPage {
    /// The ranges offered: (id, label).
    pub fn ranges(&self) -> Vec<(&'static str, &'static str)> {
        super::activity::RANGES
            .iter()
            .map(|(id, label, _)| (*id, *label))
            .collect()
    }

    /// `selected` for the range shown.
    pub fn selected(&self, id: &str) -> &'static str {
        if id == self.range {
            "selected"
        } else {
            ""
        }
    }
}

/// One request on the activity page.
#[derive(Debug, Clone)]
pub struct ActivityLine {
    /// RFC 3339, UTC.
    pub time: String,
    /// The key's name.
    pub key: String,
    /// The instance.
    pub instance: String,
    /// The route class.
    pub route: String,
    /// HTTP status.
    pub status: i64,
    /// Milliseconds.
    pub duration_ms: i64,
    /// Prompt tokens, or blank when unknown.
    pub prompt_tokens: String,
    /// Completion tokens, or blank when unknown.
    pub completion_tokens: String,
}

impl From<crate::db::activity::ActivityRow> for ActivityLine {
    fn from(row: crate::db::activity::ActivityRow) -> Self {
        let count = |n: Option<i64>| n.map(|n| n.to_string()).unwrap_or_default();
        ActivityLine {
            time: crate::timestamp::format_millis(row.at_ms),
            key: row.key_name,
            instance: row.instance,
            route: row.route,
            status: row.status,
            duration_ms: row.duration_ms,
            prompt_tokens: count(row.prompt_tokens),
            completion_tokens: count(row.completion_tokens),
        }
    }
}

/// One group's sums on the activity page.
#[derive(Debug, Clone)]
pub struct UsageLine {
    /// The key, instance or day.
    pub label: String,
    /// Requests.
    pub requests: i64,
    /// Answers with a 4xx or 5xx status.
    pub errors: i64,
    /// Prompt tokens.
    pub prompt_tokens: i64,
    /// Completion tokens.
    pub completion_tokens: i64,
    /// The largest token count among its table's lines (its bar's maximum).
    pub scale: i64,
}

impl UsageLine {
    /// Prompt and completion tokens.
    pub fn tokens(&self) -> i64 {
        self.prompt_tokens + self.completion_tokens
    }
}

/// The system page.
#[derive(Template)]
#[template(path = "system.html")]
pub struct SystemPage {
    /// The frame.
    pub chrome: Chrome,
    /// llamactl's version.
    pub version: &'static str,
    /// The commit it was built from.
    pub commit: &'static str,
    /// When.
    pub build_time: &'static str,
    /// The backend command as configured.
    pub backend: String,
    /// What `llama-server --version` printed (or why it could not run).
    pub backend_version: String,
    /// What `llama-server --list-devices` printed.
    pub devices: String,
    /// Instances defined.
    pub instances: usize,
    /// Instances holding a process.
    pub running: usize,
    /// `max_instances`, in words.
    pub max_instances: String,
    /// `max_running_instances`, in words.
    pub max_running: String,
    /// llamactl's resident memory.
    pub own_memory: String,
    /// Each backend process.
    pub processes: Vec<ProcessLine>,
}

/// One backend process on the system page.
#[derive(Debug, Clone)]
pub struct ProcessLine {
    /// Its instance.
    pub name: String,
    /// Its PID.
    pub pid: u32,
    /// Its resident memory.
    pub memory: String,
}

/// The instance form, to create or edit, blank, filled in, or with the last attempt and its error.
#[derive(Template)]
#[template(path = "instance_form.html")]
pub struct InstanceFormPage {
    /// The frame.
    pub chrome: Chrome,
    /// True to edit the instance named in the form, false to create one.
    pub editing: bool,
    /// What was typed.
    pub form: InstanceForm,
    /// Why it was refused, and where.
    pub error: Option<FieldError>,
}

impl InstanceFormPage {
    /// The error message if it belongs at `key`'s field.
    pub fn error_at(&self, key: &str) -> Option<&str> {
        self.error
            .as_ref()
            .filter(|e| e.field.key() == key)
            .map(|e| e.message.as_str())
    }

    /// Where the form is posted.
    pub fn action(&self) -> String {
        if self.editing {
            format!("/instances/{}/edit", self.form.name)
        } else {
            "/instances/new".into()
        }
    }

    /// `selected` if the choice field `value` holds `option`.
    pub fn chosen(&self, value: &str, option: &str) -> &'static str {
        if value == option {
            "selected"
        } else {
            ""
        }
    }
}

/// A refusal or failure, as a page.
#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    status: u16,
    reason: &'static str,
    message: String,
}

/// Renders a page with `status`.
pub fn render(status: StatusCode, page: &impl Template) -> Response {
    match page.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => PageError(Error::Internal(format!("cannot render a page: {e}"))).into_response(),
    }
}

/// An [`Error`] shown as a page, with the status and message the API would give.
#[derive(Debug)]
pub struct PageError(pub Error);

impl From<Error> for PageError {
    fn from(e: Error) -> Self {
        PageError(e)
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let status = self.0.status();
        if status.is_server_error() {
            tracing::error!(error = %self.0, "dashboard request failed");
        }
        let page = ErrorPage {
            status: status.as_u16(),
            reason: status.canonical_reason().unwrap_or("Error"),
            message: self.0.public_message(),
        };
        let html = page.render().unwrap_or_else(|_| page.message.clone());
        let mut response = (status, Html(html)).into_response();
        if let Error::TooManyRequests { retry_after, .. } = self.0 {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, retry_after.into());
        }
        response
    }
}
