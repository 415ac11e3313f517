//! One instance's requests and tokens over time, as bar charts drawn on the server: per UTC hour
//! for the last 24 hours and per UTC day for the last 30 days, summed by the usage query behind
//! `/api/v1/usage`. The bars are SVG `<rect>`s placed by their attributes, each with a `<title>`
//! holding its exact figure, so the page needs no script and no inline style (the CSP allows
//! neither); a table under each period says the same for screen readers.

use crate::auth::Caller;
use crate::db::activity::{KeyOf, UsageFilter, UsageRow};
use crate::error::Result;
use crate::http::AppState;
use chrono::{DateTime, Duration, DurationRound, Utc};
use std::collections::HashMap;

/// Height of a chart's drawing area, in SVG units; the tallest bar is this tall.
pub const HEIGHT: i64 = 100;

/// Width of one bar's slot, in SVG units (the bar and the gap after it).
const SLOT: i64 = 10;

/// Width of a bar, in SVG units.
const BAR: i64 = 8;

/// The periods shown: how buckets are cut, how many, and the SQL bucket's format.
#[derive(Debug, Clone, Copy)]
enum Step {
    /// UTC hours: `YYYY-MM-DDTHH`.
    Hour,
    /// UTC days: `YYYY-MM-DD`.
    Day,
}

impl Step {
    fn length(self) -> Duration {
        match self {
            Step::Hour => Duration::hours(1),
            Step::Day => Duration::days(1),
        }
    }

    /// The bucket's key as the usage query names it.
    fn key(self, start: DateTime<Utc>) -> String {
        match self {
            Step::Hour => start.format("%Y-%m-%dT%H").to_string(),
            Step::Day => start.format("%Y-%m-%d").to_string(),
        }
    }

    /// The bucket as a person reads it.
    fn label(self, start: DateTime<Utc>) -> String {
        match self {
            Step::Hour => start.format("%Y-%m-%d %H:00 UTC").to_string(),
            Step::Day => start.format("%Y-%m-%d").to_string(),
        }
    }

    fn bucket_of(self, row: &UsageRow) -> Option<&str> {
        match self {
            Step::Hour => row.hour.as_deref(),
            Step::Day => row.day.as_deref(),
        }
    }
}

/// One period's two charts and its table.
#[derive(Debug, Clone)]
pub struct Period {
    /// `24h` or `30d`, for element ids.
    pub id: &'static str,
    /// Its heading.
    pub heading: &'static str,
    /// Requests per bucket, then tokens per bucket.
    pub charts: [Chart; 2],
    /// The buckets that had requests, oldest first.
    pub lines: Vec<Line>,
    /// The sums over the whole period, in words.
    pub summary: String,
}

/// One bar chart.
#[derive(Debug, Clone)]
pub struct Chart {
    /// Element id (`requests-24h`, ...).
    pub id: String,
    /// `requests` or `tokens`: the bars' class.
    pub kind: &'static str,
    /// What it shows, for its caption and accessible name.
    pub caption: String,
    /// The drawing's width in SVG units.
    pub width: i64,
    /// One bar per bucket, oldest first, empty buckets included (height 0).
    pub bars: Vec<Bar>,
    /// The first bucket's label, under the left edge.
    pub first: String,
    /// The last bucket's label, under the right edge.
    pub last: String,
}

/// One bar, placed in SVG units.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bar {
    /// Left edge.
    pub x: i64,
    /// Top edge.
    pub y: i64,
    /// Width.
    pub width: i64,
    /// Height (0 for an empty bucket).
    pub height: i64,
    /// The exact figure, e.g. `2030-01-31 22:00 UTC: 3 requests (1 error)`.
    pub title: String,
}

/// One bucket's sums.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Line {
    /// The bucket.
    pub label: String,
    /// Requests.
    pub requests: i64,
    /// Of which answered with 400 or more.
    pub errors: i64,
    /// Prompt tokens.
    pub prompt_tokens: i64,
    /// Completion tokens.
    pub completion_tokens: i64,
}

impl Line {
    fn tokens(&self) -> i64 {
        self.prompt_tokens + self.completion_tokens
    }

    fn requests_of(&self) -> i64 {
        self.requests
    }
}

/// Whose requests `viewer` may count on an instance's page: everyone's for an operator (the
/// usage API is theirs), only its own key's for an inference key (which the usage API refuses
/// altogether; its own requests are what it already knows).
pub fn scope_of(viewer: &Caller) -> Option<KeyOf> {
    if viewer.is_operator() {
        return None;
    }
    Some(match &viewer.actor.key_id {
        Some(id) => KeyOf::Stored(id.clone()),
        None => KeyOf::Unstored(viewer.actor.name.clone()),
    })
}

/// The instance's two periods up to `now`, counting only `key`'s requests if one is given.
pub async fn periods(
    state: &AppState,
    instance: &str,
    key: Option<KeyOf>,
    now: DateTime<Utc>,
) -> Result<Vec<Period>> {
    let mut periods = Vec::new();
    for (id, heading, step, count) in [
        ("24h", "Last 24 hours, per hour (UTC)", Step::Hour, 24),
        ("30d", "Last 30 days, per day (UTC)", Step::Day, 30),
    ] {
        let first = start_of(step, now) - step.length() * (count - 1);
        let rows = state
            .db
            .usage(&UsageFilter {
                since_ms: first.timestamp_millis(),
                until_ms: now.timestamp_millis(),
                by_hour: matches!(step, Step::Hour),
                by_day: matches!(step, Step::Day),
                instance: Some(instance.to_string()),
                key: key.clone(),
                ..UsageFilter::default()
            })
            .await?;
        periods.push(period(id, heading, step, first, count, &rows));
    }
    Ok(periods)
}

/// The start of the bucket holding `now`.
fn start_of(step: Step, now: DateTime<Utc>) -> DateTime<Utc> {
    // Rounding a UTC time down to whole hours or days cannot fail for dates we record.
    now.duration_trunc(step.length()).unwrap_or(now)
}

/// `count` buckets from `first`, filled from `rows` (the usage query's, grouped by `step`).
fn period(
    id: &'static str,
    heading: &'static str,
    step: Step,
    first: DateTime<Utc>,
    count: i32,
    rows: &[UsageRow],
) -> Period {
    let by_bucket: HashMap<&str, &UsageRow> = rows
        .iter()
        .filter_map(|r| Some((step.bucket_of(r)?, r)))
        .collect();
    let buckets: Vec<Line> = (0..count)
        .map(|i| {
            let start = first + step.length() * i;
            let row = by_bucket.get(step.key(start).as_str());
            Line {
                label: step.label(start),
                requests: row.map_or(0, |r| r.requests),
                errors: row.map_or(0, |r| r.errors),
                prompt_tokens: row.map_or(0, |r| r.prompt_tokens),
                completion_tokens: row.map_or(0, |r| r.completion_tokens),
            }
        })
        .collect();
    let requests = chart(id, "requests", &buckets, Line::requests_of, |l| {
        format!(
            "{}: {} (of which {} failed)",
            l.label,
            plural(l.requests, "request"),
            l.errors
        )
    });
    let tokens = chart(id, "tokens", &buckets, Line::tokens, |l| {
        format!(
            "{}: {} ({} prompt, {} completion)",
            l.label,
            plural(l.tokens(), "token"),
            l.prompt_tokens,
            l.completion_tokens
        )
    });
    let total = buckets.iter().fold(Line::default(), |mut sum, l| {
        sum.requests += l.requests;
        sum.errors += l.errors;
        sum.prompt_tokens += l.prompt_tokens;
        sum.completion_tokens += l.completion_tokens;
        sum
    });
    let summary = format!(
        "{}, {} ({} prompt, {} completion).",
        plural(total.requests, "request"),
        plural(total.tokens(), "token"),
        total.prompt_tokens,
        total.completion_tokens
    );
    Period {
        id,
        heading,
        charts: [requests, tokens],
        lines: buckets.into_iter().filter(|l| l.requests > 0).collect(),
        summary,
    }
}

/// A chart of `value` per bucket, scaled so that the largest fills [`HEIGHT`]; a bucket with
/// anything in it is at least one unit tall, so it never looks empty.
fn chart(
    period: &str,
    kind: &'static str,
    buckets: &[Line],
    value: impl Fn(&Line) -> i64,
    title: impl Fn(&Line) -> String,
) -> Chart {
    let peak = buckets.iter().map(&value).max().unwrap_or(0).max(1);
    let bars = buckets
        .iter()
        .zip(0..)
        .map(|(line, i)| {
            let v = value(line).max(0);
            let height = if v == 0 {
                0
            } else {
                (v * HEIGHT / peak).max(1)
            };
            Bar {
                x: i * SLOT + (SLOT - BAR) / 2,
                y: HEIGHT - height,
                width: BAR,
                height,
                title: title(line),
            }
        })
        .collect::<Vec<_>>();
    let peak_text = plural(peak, kind.trim_end_matches('s'));
    Chart {
        id: format!("{kind}-{period}"),
        kind,
        caption: format!("{} (highest bar: {peak_text})", capitalised(kind)),
        width: SLOT * i64::try_from(bars.len()).unwrap_or(0),
        first: buckets.first().map(|l| l.label.clone()).unwrap_or_default(),
        last: buckets.last().map(|l| l.label.clone()).unwrap_or_default(),
        bars,
    }
}

/// `1 token`, `2 tokens`.
fn plural(n: i64, one: &str) -> String {
    if n == 1 {
        format!("{n} {one}")
    } else {
        format!("{n} {one}s")
    }
}

fn capitalised(word: &str) -> String {
    let mut chars = word.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(hour: &str, requests: i64, prompt: i64, completion: i64) -> UsageRow {
        UsageRow {
            key_id: None,
            key_name: None,
            instance: None,
            day: None,
            hour: Some(hour.into()),
            requests,
            errors: 0,
            prompt_tokens: prompt,
            completion_tokens: completion,
        }
    }

    #[test]
    fn hours_without_requests_are_empty_bars_and_the_busiest_fills_the_height() {
        let now = DateTime::parse_from_rfc3339("2030-01-31T22:30:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let first = start_of(Step::Hour, now) - Duration::hours(2);
        let rows = [
            row("2030-01-31T20", 1, 10, 0),
            row("2030-01-31T22", 4, 30, 10),
        ];
        let p = period("24h", "h", Step::Hour, first, 3, &rows);
        let [requests, tokens] = &p.charts;
        assert_eq!(requests.width, 30);
        let heights: Vec<i64> = requests.bars.iter().map(|b| b.height).collect();
        assert_eq!(heights, [25, 0, 100]);
        assert_eq!(requests.bars[2].y, 0);
        assert_eq!(requests.bars[0].y, 75);
        assert_eq!(
            requests.bars[2].title,
            "2030-01-31 22:00 UTC: 4 requests (of which 0 failed)"
        );
        assert_eq!(
            tokens.bars[0].title,
            "2030-01-31 20:00 UTC: 10 tokens (10 prompt, 0 completion)"
        );
        assert_eq!(
            tokens.bars.iter().map(|b| b.height).collect::<Vec<_>>(),
            [25, 0, 100]
        );
        assert_eq!(
            (requests.first.as_str(), requests.last.as_str()),
            ("2030-01-31 20:00 UTC", "2030-01-31 22:00 UTC")
        );
        assert_eq!(p.lines.len(), 2, "only hours with requests are listed");
        assert_eq!(
            p.summary,
            "5 requests, 50 tokens (40 prompt, 10 completion)."
        );
    }

    #[test]
    fn a_tiny_figure_beside_a_huge_one_still_shows() {
        let lines = [
            Line {
                requests: 1,
                ..Line::default()
            },
            Line {
                requests: 100_000,
                ..Line::default()
            },
        ];
        let c = chart("24h", "requests", &lines, Line::requests_of, |_| {
            String::new()
        });
        assert_eq!(c.bars[0].height, 1);
        assert_eq!(c.bars[1].height, HEIGHT);
        assert_eq!(c.caption, "Requests (highest bar: 100000 requests)");
    }
}
