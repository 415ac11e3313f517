//! `GET /api/v1/events`: the live event stream (server-sent events), so a UI never polls. Every
//! history row as it is stored (`event: history`, the same object `GET /api/v1/history` lists) and
//! every status change (`event: status`); a reader that fell behind gets `event: lagged` and can
//! read the gap from the history. The stream is pulled as fast as the client reads, from the bus's
//! bounded ring (see `crate::events`), and ends when the server shuts down.

use super::extract::Query;
use super::history::HistoryEntry;
use super::openapi::ErrorBody;
use super::AppState;
use crate::definitions::name;
use crate::error::Result;
use crate::events::{LiveEvent, Received, StatusChange};
use crate::supervisor::Status;
use crate::timestamp;
use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use serde::{Deserialize, Serialize};
use std::convert::Infallible;
use std::time::Duration;
use utoipa::{IntoParams, ToSchema};

/// A comment this often keeps an idle stream (and the proxies on its way) open.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// Which events to send.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Only events about this instance.
    #[param(pattern = r"^[A-Za-z0-9._-]{1,64}$")]
    instance: Option<String>,
}

/// The data of an `event: status`.
#[derive(Debug, Serialize, ToSchema)]
pub struct StatusEvent {
    /// The instance.
    instance: String,
    /// Its status now.
    status: Status,
    /// Its status before.
    previous: Status,
    /// Unix milliseconds.
    at_ms: i64,
    /// RFC 3339, UTC, milliseconds.
    time: String,
}

/// The data of an `event: lagged`.
#[derive(Debug, Serialize, ToSchema)]
pub struct LaggedEvent {
    /// Events this reader missed; `GET /api/v1/history` has the history rows among them.
    missed: u64,
}

impl From<&StatusChange> for StatusEvent {
    fn from(change: &StatusChange) -> Self {
        StatusEvent {
            instance: change.instance.clone(),
            status: change.status,
            previous: change.previous,
            at_ms: change.at_ms,
            time: timestamp::format_millis(change.at_ms),
        }
    }
}

/// `GET /api/v1/events`.
#[utoipa::path(get, path = "/api/v1/events", tag = "History", params(EventsQuery),
    responses(
        (status = 200, content_type = "text/event-stream", body = String,
            description = "Server-sent events until the server shuts down: `event: history` (`id:` the \
                history id, data one history entry as `GET /api/v1/history` lists it), `event: status` \
                (data: instance, status, previous, at_ms, time), `event: lagged` (data: missed, the \
                number of events this reader fell behind by). A comment is sent every 15 s."),
        (status = 400, description = "Invalid instance name or unknown parameter", body = ErrorBody)))]
pub async fn stream(
    State(state): State<AppState>,
    Query(query): Query<EventsQuery>,
) -> Result<Sse<impl Stream<Item = std::result::Result<Event, Infallible>>>> {
    if let Some(instance) = &query.instance {
        name::validate(instance)?;
    }
    let only = query.instance;
    Ok(live(&state, move |event| {
        only.is_none() || event.instance() == only.as_deref()
    }))
}

/// The live stream of the events `wanted` keeps, as `GET /api/v1/events` sends them (the dashboard
/// subscribes through its own session-checked route with a filter by the viewer's instances).
pub(crate) fn live(
    state: &AppState,
    wanted: impl Fn(&LiveEvent) -> bool + Clone + Send + 'static,
) -> Sse<impl Stream<Item = std::result::Result<Event, Infallible>>> {
    let subscription = state.events.subscribe();
    let events = futures_util::stream::unfold(subscription, move |mut subscription| {
        let wanted = wanted.clone();
        async move {
            loop {
                let event = match subscription.next().await? {
                    Received::Lagged(missed) => lagged(missed),
                    Received::Event(event) => {
                        if !wanted(&event) {
                            continue;
                        }
                        sse(&event)
                    }
                };
                return Some((Ok(event), subscription));
            }
        }
    });
    Sse::new(events).keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
}

/// One event as sent.
fn sse(event: &LiveEvent) -> Event {
    match event {
        LiveEvent::History(row) => {
            let entry = HistoryEntry::from(row.as_ref().clone());
            data(
                Event::default().event("history").id(row.id.to_string()),
                &entry,
            )
        }
        LiveEvent::Status(change) => data(
            Event::default().event("status"),
            &StatusEvent::from(change.as_ref()),
        ),
    }
}

fn lagged(missed: u64) -> Event {
    data(Event::default().event("lagged"), &LaggedEvent { missed })
}

/// `event` with `value` as its JSON data.
fn data(event: Event, value: &impl Serialize) -> Event {
    // Plain structs of strings and numbers always serialise.
    let json = serde_json::to_string(value).unwrap_or_else(|_| "{}".into());
    event.data(json)
}
