//! `GET /ui/events`: the API's live event stream for a signed-in page, limited to the instances
//! the viewer's key reaches (events about keys and the server only for operators). The pages'
//! script swaps in the rows these events name: no polling.

use super::signed_in::SignedIn;
use crate::events::LiveEvent;
use crate::http::events::live;
use crate::http::AppState;
use axum::extract::State;
use axum::response::IntoResponse;

/// The stream, filtered by the viewer's key.
pub async fn events(State(state): State<AppState>, viewer: SignedIn) -> impl IntoResponse {
    let caller = viewer.caller;
    live(&state, move |event: &LiveEvent| match event.instance() {
        Some(instance) => caller.may_use(instance),
        None => caller.is_operator(),
    })
}
