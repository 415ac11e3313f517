//! What the answers came to, by kind of request and status class, and the windows in which the
//! soak broke an instance on purpose: a 5xx (or a cut stream) that overlaps one of those, on that
//! instance, is counted apart from the ones nobody asked for.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Instant;

/// The kinds of request the soak makes, in the order the table lists them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// `POST /v1/chat/completions`, plain answer.
    Chat,
    /// `POST /v1/chat/completions` with `"stream": true`.
    ChatStream,
    /// `POST /api/v1/instances/{name}/proxy/v1/chat/completions`, plain answer.
    ProxyChat,
    /// The same through the proxy, streamed.
    ProxyStream,
    /// An inference call with a valid stored key (`GET /v1/models`).
    ValidKey,
    /// An inference call with a key that never existed.
    InvalidKey,
    /// An inference call with a key revoked through the API.
    RevokedKey,
    /// Key creation and revocation through the API.
    KeyAdmin,
    /// Instance create, update, delete, start, stop, restart.
    Lifecycle,
    /// Management reads (instance views polled while waiting for a status, logs).
    Read,
}

impl Kind {
    /// How the table names it.
    pub fn label(self) -> &'static str {
        match self {
            Kind::Chat => "chat, `/v1`",
            Kind::ChatStream => "chat streamed, `/v1`",
            Kind::ProxyChat => "chat, instance proxy",
            Kind::ProxyStream => "chat streamed, instance proxy",
            Kind::ValidKey => "valid stored key",
            Kind::InvalidKey => "unknown key",
            Kind::RevokedKey => "revoked key",
            Kind::KeyAdmin => "key create / revoke",
            Kind::Lifecycle => "create / update / start / stop / restart / delete",
            Kind::Read => "management reads",
        }
    }
}

/// How one request ended.
#[derive(Clone, Debug)]
pub enum Outcome {
    /// An answer with this status (a stream read to its `[DONE]`, if it was a 200 stream), and
    /// the start of its body (kept for a 5xx nobody caused).
    Status(u16, String),
    /// No answer, or a stream cut before its end: what went wrong.
    Failed(String),
}

/// When a fault began, and ended (`None`: not yet).
type Window = (Instant, Option<Instant>);

impl Outcome {
    /// The outcome in a few words, for the report.
    fn describe(&self) -> String {
        match self {
            Outcome::Status(status, body) => {
                format!(
                    "HTTP {status} {}",
                    body.chars().take(200).collect::<String>()
                )
            }
            Outcome::Failed(why) => why.clone(),
        }
    }
}

/// Counts for one kind of request.
#[derive(Clone, Debug, Default)]
pub struct Counts {
    /// 1xx to 3xx.
    pub ok: u64,
    /// 4xx.
    pub client_error: u64,
    /// 5xx outside every fault window.
    pub server_error: u64,
    /// 5xx overlapping a fault the soak caused on that instance.
    pub server_error_in_fault: u64,
    /// No answer or a cut stream, outside every fault window.
    pub failed: u64,
    /// No answer or a cut stream, overlapping a fault the soak caused.
    pub failed_in_fault: u64,
}

/// How many unexplained failures are kept verbatim for the report.
const KEEP: usize = 20;

/// Every answer of a run; shared by all workers.
#[derive(Debug, Default)]
pub struct Tally {
    counts: Mutex<BTreeMap<Kind, Counts>>,
    /// The first unexplained 5xx and failures, described.
    unexplained: Mutex<Vec<String>>,
    /// Per instance, the windows in which it was broken on purpose (`None`: still open).
    faults: Mutex<HashMap<String, Vec<Window>>>,
}

impl Tally {
    /// Marks `instance` as broken on purpose from now until [`Tally::fault_ended`].
    pub fn fault_began(&self, instance: &str) {
        let mut faults = self.faults.lock().unwrap_or_else(|p| p.into_inner());
        faults
            .entry(instance.to_string())
            .or_default()
            .push((Instant::now(), None));
    }

    /// Closes the open fault window of `instance`.
    pub fn fault_ended(&self, instance: &str) {
        let mut faults = self.faults.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(open) = faults
            .get_mut(instance)
            .and_then(|w| w.iter_mut().find(|(_, end)| end.is_none()))
        {
            open.1 = Some(Instant::now());
        }
    }

    /// True if a request to `instance` from `began` until now overlaps a fault window.
    fn in_fault(&self, instance: Option<&str>, began: Instant) -> bool {
        let Some(instance) = instance else {
            return false;
        };
        let faults = self.faults.lock().unwrap_or_else(|p| p.into_inner());
        faults.get(instance).is_some_and(|windows| {
            windows
                .iter()
                .any(|(start, end)| end.is_none_or(|end| end >= began) && *start <= Instant::now())
        })
    }

    /// Counts one request of `kind` to `instance` (if it had one) that began at `began`.
    pub fn record(&self, kind: Kind, instance: Option<&str>, began: Instant, outcome: Outcome) {
        let fault = self.in_fault(instance, began);
        let unexplained = {
            let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
            let c = counts.entry(kind).or_default();
            match (&outcome, fault) {
                (Outcome::Status(s, _), _) if *s < 400 => c.ok += 1,
                (Outcome::Status(s, _), _) if *s < 500 => c.client_error += 1,
                (Outcome::Status(..), true) => c.server_error_in_fault += 1,
                (Outcome::Status(..), false) => c.server_error += 1,
                (Outcome::Failed(_), true) => c.failed_in_fault += 1,
                (Outcome::Failed(_), false) => c.failed += 1,
            }
            match &outcome {
                Outcome::Status(s, _) => *s >= 500 && !fault,
                Outcome::Failed(_) => !fault,
            }
        };
        if unexplained {
            let mut kept = self.unexplained.lock().unwrap_or_else(|p| p.into_inner());
            if kept.len() < KEEP {
                kept.push(format!(
                    "{} to {}: {}",
                    kind.label(),
                    instance.unwrap_or("llamactl"),
                    outcome.describe()
                ));
            }
        }
    }

    /// Keeps `what` (something that went wrong outside any one request) with the unexplained.
    pub fn note(&self, what: String) {
        let mut kept = self.unexplained.lock().unwrap_or_else(|p| p.into_inner());
        if kept.len() < KEEP {
            kept.push(what);
        }
    }

    /// The counts so far, by kind.
    pub fn counts(&self) -> BTreeMap<Kind, Counts> {
        self.counts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The unexplained 5xx and failures kept so far.
    pub fn unexplained(&self) -> Vec<String> {
        self.unexplained
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}
