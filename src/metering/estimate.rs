//! What a key with token limits is charged for an answer that ends without the backend's usage.
//!
//! Tokens are charged from the usage a backend reports at the end of its answer (see
//! [`super::tokens`]). An answer cut before that end (the client left, or the backend broke off)
//! reports none, and charging nothing for it would let a key spend without limit by cancelling
//! each request just before its end. So such an answer is charged an estimate:
//! - the prompt: the tokens the backend reported for it if any, else the request body's bytes / 4
//!   (about 4 bytes of English text per token, and the JSON around the messages makes the body
//!   longer than the prompt, so it errs on the high side);
//! - the completion, for a stream: the events passed to the client, as llama-server sends about
//!   one token per event.
//!
//! Only keys with token limits pay for this (one substring search per streamed chunk); the
//! answers of other keys are not looked at.

use super::Tokens;
use memchr::memmem::Finder;
use std::sync::LazyLock;

/// What to charge a token-limited key when its answer ends without the backend's usage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Estimate {
    /// The prompt's tokens, estimated from the request body.
    prompt: u64,
}

impl Estimate {
    /// The estimate for a request whose body is `body_bytes` long (0 if unknown).
    pub(crate) fn of_request(body_bytes: u64) -> Self {
        Estimate {
            prompt: body_bytes.div_ceil(4),
        }
    }

    /// The tokens to charge instead of the reported ones, or `None` when the reported usage
    /// stands. `reported` is what the answer's end said; `events` the events of a stream passed to
    /// the client (`None` for an answer that is not a stream); `complete` whether the answer was
    /// sent to its end.
    pub(crate) fn charge(
        self,
        reported: Tokens,
        events: Option<u64>,
        complete: bool,
    ) -> Option<u64> {
        match events {
            // A stream's completion is known only from its last event; without it the events
            // passed tell it, whether or not the stream was cut.
            Some(events) if reported.completion.is_none() => {
                Some((reported.prompt.unwrap_or(self.prompt) + events).max(1))
            }
            Some(_) => None,
            // A whole answer without usage ran no generation (an error, a tokenization): nothing
            // to charge beyond what it says.
            None if complete || reported != Tokens::default() => None,
            // Cut short, so its length says nothing: the prompt was read at least. A request
            // that reached a backend is never free.
            None => Some(self.prompt.max(1)),
        }
    }
}

/// An event's start in a server-sent-event stream: a `data:` field at the start of a line. Inside
/// an event's JSON a line break is escaped, so content never matches.
const EVENT: &[u8] = b"\ndata:";

static EVENT_FINDER: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(EVENT));

/// Counts the events of a stream as its chunks pass, including events split across chunks.
#[derive(Debug, Clone)]
pub(crate) struct Events {
    count: u64,
    /// The stream's last bytes (fewer than an event's marker), where a marker split across chunks
    /// begins. Starts as a line break: the stream's start is a line's start.
    carry: [u8; EVENT.len() - 1],
    carried: usize,
}

impl Default for Events {
    fn default() -> Self {
        let mut carry = [0; EVENT.len() - 1];
        carry[0] = b'\n';
        Events {
            count: 0,
            carry,
            carried: 1,
        }
    }
}

impl Events {
    /// Counts the events starting in `chunk`.
    pub(crate) fn push(&mut self, chunk: &[u8]) {
        let finder = &*EVENT_FINDER;
        // A marker that begins in the carry and ends in this chunk: it ends within the chunk's
        // first bytes, and is seen only here (the carry alone is too short to hold one).
        let head = &chunk[..chunk.len().min(EVENT.len() - 1)];
        let mut seam = [0; 2 * (EVENT.len() - 1)];
        seam[..self.carried].copy_from_slice(&self.carry[..self.carried]);
        seam[self.carried..self.carried + head.len()].copy_from_slice(head);
        let seam = &seam[..self.carried + head.len()];
        self.count += finder.find_iter(seam).count() as u64;
        // Those wholly inside the chunk (a marker is longer than the head, so none counted twice).
        self.count += finder.find_iter(chunk).count() as u64;
        // The carry is the last bytes of the stream so far: of the seam, which ends with the
        // chunk's head when the chunk is shorter than the carry, or of the chunk itself.
        let tail = if chunk.len() >= self.carry.len() {
            &chunk[chunk.len() - self.carry.len()..]
        } else {
            &seam[seam.len().saturating_sub(self.carry.len())..]
        };
        self.carry[..tail.len()].copy_from_slice(tail);
        self.carried = tail.len();
    }

    /// The events seen so far.
    pub(crate) fn count(&self) -> u64 {
        self.count
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events_in(chunks: &[&[u8]]) -> u64 {
        let mut events = Events::default();
        for chunk in chunks {
            events.push(chunk);
        }
        events.count()
    }

    #[test]
    fn events_are_counted_wherever_the_chunks_split_them() {
        let stream: &[u8] =
            b"data: {\"choices\":[{\"delta\":{\"content\":\"data: no\\ndata: no\"}}]}\n\n\
data: {\"choices\":[{\"delta\":{\"content\":\" b\"}}]}\r\n\r\n\
: a comment\n\ndata: {\"x\":1}\n\ndata: [DONE]\n\n";
        assert_eq!(events_in(&[stream]), 4);
        // Every way of cutting it in two, and in one-byte chunks.
        for at in 0..=stream.len() {
            assert_eq!(
                events_in(&[&stream[..at], &stream[at..]]),
                4,
                "split at {at}"
            );
        }
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(events_in(&bytes), 4);
        let threes: Vec<&[u8]> = stream.chunks(3).collect();
        assert_eq!(events_in(&threes), 4);
        assert_eq!(events_in(&[b"", b"da", b"", b"ta:", b"\n"]), 1);
        assert_eq!(events_in(&[b"{\"data\": 1}"]), 0);
    }

    #[test]
    fn an_answer_without_usage_is_charged_an_estimate() {
        let est = Estimate::of_request(401);
        let none = Tokens::default();
        let reported = Tokens {
            prompt: Some(7),
            completion: Some(3),
        };
        // A stream cut before its usage: the prompt estimate and one token per event passed.
        assert_eq!(est.charge(none, Some(12), false), Some(101 + 12));
        // ...with the prompt's tokens when the backend reported them.
        let prompt_only = Tokens {
            prompt: Some(9),
            completion: None,
        };
        assert_eq!(est.charge(prompt_only, Some(12), false), Some(21));
        // A whole stream that reported its usage is charged that.
        assert_eq!(est.charge(reported, Some(5), true), None);
        // A plain answer cut short: the prompt estimate; whole, what it reported (even nothing).
        assert_eq!(est.charge(none, None, false), Some(101));
        assert_eq!(est.charge(none, None, true), None);
        assert_eq!(est.charge(reported, None, true), None);
        // Never free, even with an unknown body and no event.
        assert_eq!(
            Estimate::of_request(0).charge(none, Some(0), false),
            Some(1)
        );
        assert_eq!(Estimate::of_request(0).charge(none, None, false), Some(1));
    }
}
