//! Token counts read from the end of a backend's answer, without buffering or re-encoding it.
//!
//! llama-server reports what a request cost near the end of its answer: a non-streamed answer
//! ends with `"usage":{...}` and `"timings":{...}`; a streamed one ends with a last event that
//! carries them, before `data: [DONE]`; the native `/completion` says `tokens_evaluated` and
//! `tokens_predicted`. So only the last few KiB of an answer are kept (copied, so no buffer of the
//! connection is held on to), and read once, when the answer has been sent.

use serde::Deserialize;

/// How much of a non-streamed answer's end is kept: it puts `usage` within its last few hundred
/// bytes, and such answers are short-lived, so the margin is wide.
const TAIL: usize = 16 * 1024;

/// How much of a streamed answer's end is kept: its last event (the final message, `usage` and
/// `timings`) is about 1 KiB. Kept small because a stream holds it for as long as it is open,
/// and there may be thousands.
const STREAM_TAIL: usize = 4 * 1024;

/// What a request cost, as the backend said.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tokens {
    /// Prompt tokens (evaluated input).
    pub prompt: Option<u64>,
    /// Completion tokens (generated output).
    pub completion: Option<u64>,
}

/// The last bytes of an answer, kept as it passes, in a ring that never grows past its limit.
#[derive(Debug)]
pub struct Tail {
    buf: std::collections::VecDeque<u8>,
    limit: usize,
}

impl Tail {
    /// A tail for an answer; a streamed one keeps less (see [`STREAM_TAIL`]).
    pub fn for_answer(streamed: bool) -> Self {
        Tail {
            // Allocated at the first byte, to its limit at most.
            buf: std::collections::VecDeque::new(),
            limit: if streamed { STREAM_TAIL } else { TAIL },
        }
    }

    /// Keeps the end of `chunk`, dropping the oldest bytes kept beyond the limit.
    pub fn push(&mut self, chunk: &[u8]) {
        let chunk = &chunk[chunk.len().saturating_sub(self.limit)..];
        let needed = self.buf.len() + chunk.len();
        if needed > self.buf.capacity() {
            // Doubling, but never past the limit: plain growth overshot it (a stream's ring stood
            // at 5.8 KiB on average for a 4 KiB limit).
            let target = needed.max(2 * self.buf.capacity()).min(self.limit);
            self.buf
                .reserve_exact(target.saturating_sub(self.buf.len()));
        }
        let over = (self.buf.len() + chunk.len()).saturating_sub(self.limit);
        self.buf.drain(..over);
        self.buf.extend(chunk);
    }

    /// True if what was kept ends with the event that closes an OpenAI-style stream
    /// (`data: [DONE]`, then blank lines): the answer is whole for its client from there, even if
    /// the backend's body has not ended yet.
    pub fn ends_with_done(&self) -> bool {
        const DONE: &[u8] = b"data: [DONE]";
        let mut end = self
            .buf
            .iter()
            .rev()
            .skip_while(|b| b.is_ascii_whitespace());
        DONE.iter().rev().all(|want| end.next() == Some(want))
    }

    /// The token counts the answer's end reports, if any.
    pub fn tokens(&mut self) -> Tokens {
        tokens_in(self.buf.make_contiguous())
    }
}

/// OpenAI's `usage` object.
#[derive(Deserialize)]
struct Usage {
    prompt_tokens: Option<u64>,
    completion_tokens: Option<u64>,
}

/// llama-server's `timings` object.
#[derive(Deserialize)]
struct Timings {
    prompt_n: Option<u64>,
    predicted_n: Option<u64>,
}

/// The last report in `text`: `usage`, else the native counters, else `timings`. `timings` comes
/// last because its `prompt_n` leaves out the prompt tokens served from the cache, while the
/// others count the whole prompt, as OpenAI's `prompt_tokens` does.
fn tokens_in(text: &[u8]) -> Tokens {
    if let Some(usage) = last_value::<Usage>(text, b"\"usage\"") {
        if usage.prompt_tokens.is_some() || usage.completion_tokens.is_some() {
            return Tokens {
                prompt: usage.prompt_tokens,
                completion: usage.completion_tokens,
            };
        }
    }
    let native = Tokens {
        prompt: last_value::<u64>(text, b"\"tokens_evaluated\""),
        completion: last_value::<u64>(text, b"\"tokens_predicted\""),
    };
    if native != Tokens::default() {
        return native;
    }
    match last_value::<Timings>(text, b"\"timings\"") {
        Some(timings) => Tokens {
            prompt: timings.prompt_n,
            completion: timings.predicted_n,
        },
        None => Tokens::default(),
    }
}

/// The value of the last `key` in `text` that parses as a `T`. A key can only match where it
/// really is one: inside a JSON string its quotes would be escaped.
fn last_value<T: for<'de> Deserialize<'de>>(text: &[u8], key: &[u8]) -> Option<T> {
    let mut end = text.len();
    while let Some(at) = find_last(&text[..end], key) {
        end = at;
        let rest = text[at + key.len()..].trim_ascii_start();
        let Some(rest) = rest.strip_prefix(b":") else {
            continue;
        };
        // One value, then stop: whatever follows it is not read.
        let mut values = serde_json::Deserializer::from_slice(rest).into_iter::<T>();
        if let Some(Ok(value)) = values.next() {
            return Some(value);
        }
    }
    None
}

fn find_last(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).rposition(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tail_of(parts: &[&[u8]]) -> Tokens {
        let mut tail = Tail::for_answer(false);
        for part in parts {
            tail.push(part);
        }
        tail.tokens()
    }

    #[test]
    fn a_non_streamed_answer_reports_its_usage() {
        let body = br#"{"choices":[{"message":{"content":"say \"usage\":{\"prompt_tokens\":999}"}}],"usage":{"completion_tokens":7,"prompt_tokens":12,"total_tokens":19},"id":"x","timings":{"prompt_n":1,"predicted_n":2}}"#;
        assert_eq!(
            tail_of(&[body]),
            Tokens {
                prompt: Some(12),
                completion: Some(7)
            }
        );
    }

    #[test]
    fn a_stream_reports_its_last_event_split_across_chunks() {
        let events: &[&[u8]] = &[
            b"data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}],\"timings\":{\"prompt_n\":5,\"pre",
            b"dicted_n\":1}}\n\n",
            b"data: {\"choices\":[{\"delta\":{}, \"finish_reason\":\"stop\"}],\"usage\": {\"completion_tokens\":3,\"prompt_to",
            b"kens\":5},\"timings\":{\"prompt_n\":5,\"predicted_n\":3}}\n\ndata: [DONE]\n\n",
        ];
        assert_eq!(
            tail_of(events),
            Tokens {
                prompt: Some(5),
                completion: Some(3)
            }
        );
    }

    #[test]
    fn native_counters_then_timings_are_used_without_usage() {
        let stream = b"data: {\"timings\":{\"prompt_n\":4,\"predicted_n\":9}}\n\n";
        assert_eq!(
            tail_of(&[stream]),
            Tokens {
                prompt: Some(4),
                completion: Some(9)
            }
        );
        let native = br#"{"content":"x","tokens_predicted":6,"tokens_evaluated":11,"stop":true,"timings":{"prompt_n":1,"predicted_n":6}}"#;
        assert_eq!(
            tail_of(&[native]),
            Tokens {
                prompt: Some(11),
                completion: Some(6)
            }
        );
        assert_eq!(tail_of(&[b"{\"data\":[0.1,0.2]}"]), Tokens::default());
        assert_eq!(tail_of(&[b"\"usage\": oops"]), Tokens::default());
    }

    #[test]
    fn only_the_end_of_a_long_answer_is_kept() {
        let mut tail = Tail::for_answer(false);
        let filler = vec![b'x'; 5000];
        for _ in 0..100 {
            tail.push(&filler);
            assert!(tail.buf.len() <= TAIL && tail.buf.capacity() < 2 * TAIL);
        }
        tail.push(br#","usage":{"prompt_tokens":1,"completion_tokens":2}}"#);
        assert_eq!(
            tail.tokens(),
            Tokens {
                prompt: Some(1),
                completion: Some(2)
            }
        );
        let huge = vec![b'y'; 3 * TAIL];
        tail.push(&huge);
        assert!(tail.buf.len() <= TAIL);
        assert_eq!(tail.tokens(), Tokens::default());
    }

    #[test]
    fn a_stream_is_done_at_its_done_event_even_split_across_frames() {
        let mut tail = Tail::for_answer(true);
        tail.push(b"data: {\"choices\":[]}\n\n");
        assert!(!tail.ends_with_done());
        tail.push(b"data: [DO");
        assert!(!tail.ends_with_done());
        tail.push(b"NE]\n");
        assert!(tail.ends_with_done());
        tail.push(b"\n");
        assert!(tail.ends_with_done());
        // A later event means it was not the end after all.
        tail.push(b"data: {}\n\n");
        assert!(!tail.ends_with_done());
        assert!(!Tail::for_answer(true).ends_with_done());
    }

    #[test]
    fn a_stream_keeps_a_small_tail_that_still_holds_its_last_event() {
        let mut tail = Tail::for_answer(true);
        let event = b"data: {\"choices\":[{\"delta\":{\"content\":\" word\"}}]}\n\n";
        for _ in 0..1000 {
            tail.push(event);
        }
        tail.push(b"data: {\"choices\":[],\"usage\":{\"completion_tokens\":1000,\"prompt_tokens\":4}}\n\n");
        tail.push(b"data: [DONE]\n\n");
        // Never more than its limit: each open stream holds it.
        assert!(
            tail.buf.capacity() <= STREAM_TAIL,
            "{}",
            tail.buf.capacity()
        );
        assert_eq!(
            tail.tokens(),
            Tokens {
                prompt: Some(4),
                completion: Some(1000)
            }
        );
    }
}
