//! The keys page (operators only): every key, a form to create one (its secret shown this once,
//! with a copy button), and revoke buttons. It calls the key store as `/api/v1/auth/keys` does,
//! and the create form is read into the API's own request type, so the API's rules judge it.

use super::chrome::Chrome;
use super::signed_in::SignedIn;
use super::templates::{render, KeyLine, KeysPage, PageError};
use crate::auth::model::CreateKey;
use crate::error::{Error, Result};
use crate::http::AppState;
use axum::extract::rejection::FormRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use serde::Deserialize;
use serde_json::{json, Map, Value};

/// The create form as posted; text fields, empty when left blank.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct KeyForm {
    /// The session's CSRF token.
    pub csrf: String,
    /// Label.
    pub name: String,
    /// `inference` or `management`.
    pub kind: String,
    /// Instance names and `*` patterns, separated by commas or spaces; blank = all.
    pub instances: String,
    /// When it stops working: RFC 3339 or Unix seconds; blank = never.
    pub expires_at: String,
}

impl KeyForm {
    /// The API's request body for this form.
    fn request(&self) -> Result<CreateKey> {
        let mut body = Map::new();
        body.insert("name".into(), json!(self.name.trim()));
        body.insert("kind".into(), json!(self.kind));
        let instances: Vec<&str> = self
            .instances
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|s| !s.is_empty())
            .collect();
        if !instances.is_empty() {
            body.insert("instances".into(), json!(instances));
        }
        let expires = self.expires_at.trim();
        if !expires.is_empty() {
            let value = expires
                .parse::<i64>()
                .map_or_else(|_| json!(expires), |secs| json!(secs));
            body.insert("expires_at".into(), value);
        }
        serde_json::from_value(Value::Object(body)).map_err(|e| Error::BadRequest(e.to_string()))
    }

    /// Which field the API's refusal names: `name`, `instances`, `expires_at`, else the form.
    fn field_of(message: &str) -> &'static str {
        ["instances", "expires", "name", "kind"]
            .into_iter()
            .find(|field| message.contains(field))
            .map_or("form", |field| match field {
                "expires" => "expires_at",
                other => other,
            })
    }
}

/// A revoke button's form.
#[derive(Debug, Deserialize)]
pub struct RevokeForm {
    /// The session's CSRF token.
    #[serde(default)]
    csrf: String,
}

async fn page(
    state: &AppState,
    viewer: &SignedIn,
    form: KeyForm,
    error: Option<(&'static str, String)>,
    created: Option<(String, String)>,
    status: StatusCode,
) -> std::result::Result<Response, PageError> {
    let keys = state.auth.keys().list().await?;
    Ok(render(
        status,
        &KeysPage {
            chrome: Chrome::of(viewer, "keys"),
            keys: keys.into_iter().rev().map(KeyLine::from).collect(),
            form: KeyForm {
                csrf: String::new(),
                ..form
            },
            error,
            created,
        },
    ))
}

/// `GET /keys`.
pub async fn list(
    State(state): State<AppState>,
    viewer: SignedIn,
) -> std::result::Result<Response, PageError> {
    viewer.ensure_operator()?;
    let form = KeyForm {
        kind: "inference".into(),
        ..KeyForm::default()
    };
    page(&state, &viewer, form, None, None, StatusCode::OK).await
}

/// `POST /keys`: creates the key and shows its secret this once (the answer is never cached).
pub async fn create(
    State(state): State<AppState>,
    viewer: SignedIn,
    headers: HeaderMap,
    form: std::result::Result<Form<KeyForm>, FormRejection>,
) -> std::result::Result<Response, PageError> {
    let Form(form) = form.map_err(|e| Error::BadRequest(e.body_text()))?;
    viewer.check_form(&headers, &form.csrf)?;
    viewer.ensure_operator()?;
    let attempt = async {
        let new = form.request()?.validate(chrono::Utc::now().timestamp())?;
        state.auth.keys().create(new, &viewer.caller.actor).await
    };
    match attempt.await {
        Ok(created) => {
            let shown = (created.info.name.clone(), created.key.expose());
            let blank = KeyForm {
                kind: form.kind,
                ..KeyForm::default()
            };
            page(
                &state,
                &viewer,
                blank,
                None,
                Some(shown),
                StatusCode::CREATED,
            )
            .await
        }
        Err(e @ (Error::BadRequest(_) | Error::Conflict(_))) => {
            let message = e.public_message();
            let field = KeyForm::field_of(&message);
            page(
                &state,
                &viewer,
                form,
                Some((field, message)),
                None,
                e.status(),
            )
            .await
        }
        Err(e) => Err(e.into()),
    }
}

/// `POST /keys/{id}/revoke`: refused from the next request on; its sessions end with it.
pub async fn revoke(
    State(state): State<AppState>,
    viewer: SignedIn,
    headers: HeaderMap,
    Path(id): Path<String>,
    form: std::result::Result<Form<RevokeForm>, FormRejection>,
) -> std::result::Result<Response, PageError> {
    let Form(form) = form.map_err(|e| Error::BadRequest(e.body_text()))?;
    viewer.check_form(&headers, &form.csrf)?;
    viewer.ensure_operator()?;
    state.auth.keys().revoke(&id, &viewer.caller.actor).await?;
    Ok(Redirect::to("/keys").into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_form_becomes_the_apis_request() {
        let form = KeyForm {
            name: " app ".into(),
            kind: "inference".into(),
            instances: "a, g-*  b".into(),
            expires_at: "4102444800".into(),
            ..KeyForm::default()
        };
        let req = form.request().unwrap();
        assert_eq!(req.name, "app");
        assert_eq!(
            req.instances,
            Some(vec!["a".to_string(), "g-*".into(), "b".into()])
        );
        let bad = KeyForm {
            kind: "root".into(),
            ..form
        };
        assert_eq!(bad.request().unwrap_err().status().as_u16(), 400);
        assert_eq!(
            KeyForm::field_of("instances must name at least one"),
            "instances"
        );
        assert_eq!(
            KeyForm::field_of("expires_at must be in the future"),
            "expires_at"
        );
        assert_eq!(KeyForm::field_of("something else"), "form");
    }
}
