//! The instances pages: the live table, one row alone (for the page's script), the create form,
//! and the start / stop / restart / delete buttons. Each calls the supervisor function the API's
//! handler calls, with the same caller, after the same checks.

use super::chrome::Chrome;

use super::instance_form::InstanceForm;
use super::rows::{tokens_today, InstanceRow};
use super::signed_in::SignedIn;
use super::templates::{render, InstanceFormPage, InstanceRowFragment, InstancesPage, PageError};
use crate::definitions::SpecPatch;
use crate::error::Error;
use crate::http::AppState;
use axum::extract::rejection::FormRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use serde::Deserialize;

/// A button's form: only the CSRF token.
#[derive(Debug, Deserialize)]
pub struct ButtonForm {
    /// The session's CSRF token.
    #[serde(default)]
    csrf: String,
}

/// `GET /`: every instance the viewer's key reaches, as a table kept live by the event stream.
pub async fn list(State(state): State<AppState>, viewer: SignedIn) -> Result<Response, PageError> {
    let mut all = state.supervisor.list();
    viewer.caller.retain_allowed(&mut all, |inst| &inst.name);
    state.activity.flush().await;
    let tokens = tokens_today(&state, &viewer.caller).await?;
    let mut rows: Vec<InstanceRow> = all
        .iter()
        .map(|inst| InstanceRow::of(inst, &tokens))
        .collect();
    rows.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(render(
        StatusCode::OK,
        &InstancesPage {
            chrome: Chrome::of(&viewer, "instances"),
            rows,
        },
    ))
}

/// `GET /instances/{name}/row`: that instance's row alone; 403 outside the key's instances (asked
/// before the lookup, as the API does, so a limited key learns nothing of others), 404 once gone.
pub async fn row(
    State(state): State<AppState>,
    viewer: SignedIn,
    Path(name): Path<String>,
) -> Result<Response, PageError> {
    viewer.caller.ensure_instance(&name)?;
    let inst = state.supervisor.instance(&name)?;
    Ok(render(
        StatusCode::OK,
        &InstanceRowFragment {
            chrome: Chrome::of(&viewer, "instances"),
            row: InstanceRow::of(&inst, &tokens_today(&state, &viewer.caller).await?),
        },
    ))
}

/// `GET /instances/new`: the blank form (management keys only).
pub async fn new_form(viewer: SignedIn) -> Result<Response, PageError> {
    viewer.ensure_operator()?;
    Ok(render(
        StatusCode::OK,
        &InstanceFormPage {
            chrome: Chrome::of(&viewer, "instances"),
            editing: false,
            form: InstanceForm::default(),
            error: None,
        },
    ))
}

/// `POST /instances/new`: creates and starts the instance as `POST /api/v1/instances/{name}` does;
/// a refusal re-shows the form with the API's message at the field it concerns.
pub async fn create(
    State(state): State<AppState>,
    viewer: SignedIn,
    headers: HeaderMap,
    form: Result<Form<InstanceForm>, FormRejection>,
) -> Result<Response, PageError> {
    let Form(form) = form.map_err(|e| Error::BadRequest(e.body_text()))?;
    viewer.check_form(&headers, &form.csrf)?;
    viewer.ensure_operator()?;
    let attempt = match form.body() {
        Ok(body) => match SpecPatch::from_body(body) {
            Ok(patch) => state
                .supervisor
                .create(form.name.trim(), patch, &viewer.caller.actor)
                .await
                .map(drop)
                .map_err(|e| form.place(&viewer.caller.shield(e))),
            Err(e) => Err(form.place(&e)),
        },
        Err(e) => Err(e),
    };
    match attempt {
        Ok(()) => Ok(Redirect::to("/").into_response()),
        Err(error) => Ok(render(
            error.status,
            &InstanceFormPage {
                chrome: Chrome::of(&viewer, "instances"),
                editing: false,
                form: InstanceForm {
                    csrf: String::new(),
                    ..form
                },
                error: Some(error),
            },
        )),
    }
}

/// `GET /instances/{name}/edit`: the form filled in from the stored definition (operators).
pub async fn edit_form(
    State(state): State<AppState>,
    viewer: SignedIn,
    Path(name): Path<String>,
) -> Result<Response, PageError> {
    viewer.ensure_operator()?;
    let inst = state.supervisor.instance(&name)?;
    Ok(render(
        StatusCode::OK,
        &InstanceFormPage {
            chrome: Chrome::of(&viewer, "instances"),
            editing: true,
            form: InstanceForm::of(&name, &inst.spec().redacted()),
            error: None,
        },
    ))
}

/// `POST /instances/{name}/edit`: changes the definition as `PUT /api/v1/instances/{name}` does
/// (a running instance restarts), then shows the instance; a refusal re-shows the form with the
/// API's message at its field.
pub async fn edit(
    State(state): State<AppState>,
    viewer: SignedIn,
    headers: HeaderMap,
    Path(name): Path<String>,
    form: Result<Form<InstanceForm>, FormRejection>,
) -> Result<Response, PageError> {
    let Form(form) = form.map_err(|e| Error::BadRequest(e.body_text()))?;
    viewer.check_form(&headers, &form.csrf)?;
    viewer.ensure_operator()?;
    let attempt = match form.edit_body() {
        Ok(body) => match SpecPatch::from_body(body) {
            Ok(patch) => state
                .supervisor
                .update(&name, patch, &viewer.caller.actor)
                .await
                .map(drop)
                .map_err(|e| form.place(&viewer.caller.shield(e))),
            Err(e) => Err(form.place(&e)),
        },
        Err(e) => Err(e),
    };
    match attempt {
        Ok(()) => Ok(Redirect::to(&format!("/instances/{name}")).into_response()),
        Err(error) => Ok(render(
            error.status,
            &InstanceFormPage {
                chrome: Chrome::of(&viewer, "instances"),
                editing: true,
                form: InstanceForm {
                    csrf: String::new(),
                    name,
                    ..form
                },
                error: Some(error),
            },
        )),
    }
}

/// What a button does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Operation {
    /// Start it.
    Start,
    /// Stop it.
    Stop,
    /// Restart it.
    Restart,
    /// Stop and remove it.
    Delete,
}

/// `POST /instances/{name}/{operation}`: the operation, as the API's route for it, then back to the
/// table (the event stream shows what follows).
pub async fn operate(
    State(state): State<AppState>,
    viewer: SignedIn,
    headers: HeaderMap,
    Path((name, operation)): Path<(String, Operation)>,
    form: Result<Form<ButtonForm>, FormRejection>,
) -> Result<Response, PageError> {
    let Form(form) = form.map_err(|e| Error::BadRequest(e.body_text()))?;
    viewer.check_form(&headers, &form.csrf)?;
    viewer.ensure_operator()?;
    let supervisor = &state.supervisor;
    let actor = &viewer.caller.actor;
    let done = match operation {
        Operation::Start => supervisor.start(&name, actor).await.map(drop),
        Operation::Stop => supervisor.stop(&name, actor).await.map(drop),
        Operation::Restart => supervisor.restart(&name, actor).await.map(drop),
        Operation::Delete => supervisor.delete(&name, actor).await,
    };
    done.map_err(|e| viewer.caller.shield(e))?;
    Ok(Redirect::to("/").into_response())
}
