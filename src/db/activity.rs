//! The `activity` table: one row per inference request, written in batches by the activity
//! recorder, read newest first in pages, and summed into usage; bounded by `activity.max_records`.

use super::{Db, OnDb};
use crate::activity::Record;
use crate::error::Result;
use crate::names;

/// One stored inference request.
#[derive(Debug, Clone, PartialEq)]
pub struct ActivityRow {
    /// Row id, increasing in the order records were written.
    pub id: i64,
    /// Unix milliseconds when the request arrived.
    pub at_ms: i64,
    /// The stored API key that made it.
    pub key_id: Option<String>,
    /// The caller's printable name.
    pub key_name: String,
    /// The instance it went to.
    pub instance: String,
    /// The route's name (`chat_completions`, ...).
    pub route: String,
    /// The status the client got.
    pub status: i64,
    /// Arrival to the last byte sent.
    pub duration_ms: i64,
    /// Arrival to the answer's head.
    pub ttfb_ms: Option<i64>,
    /// Prompt tokens the backend reported.
    pub prompt_tokens: Option<i64>,
    /// Completion tokens the backend reported.
    pub completion_tokens: Option<i64>,
    /// Whether the answer was streamed.
    pub streamed: bool,
    /// The client's address.
    pub client_addr: Option<String>,
}

/// Which records to read: every field narrows the result; `before` pages backwards.
#[derive(Debug, Clone, Default)]
pub struct ActivityFilter {
    /// Only this instance.
    pub instance: Option<String>,
    /// Only requests made with this stored API key.
    pub key: Option<String>,
    /// Only this route.
    pub route: Option<crate::activity::Route>,
    /// Only this status.
    pub status: Option<u16>,
    /// At or after this Unix millisecond.
    pub since_ms: Option<i64>,
    /// At or before this Unix millisecond.
    pub until_ms: Option<i64>,
    /// Only records older than this `(at_ms, id)`: the last record of the previous page.
    pub before: Option<(i64, i64)>,
}

/// How to sum requests: over `[since_ms, until_ms]`, optionally only one instance's or one key's,
/// split by any of key, instance, UTC day and UTC hour.
#[derive(Debug, Clone, Default)]
pub struct UsageFilter {
    /// From this Unix millisecond (inclusive).
    pub since_ms: i64,
    /// To this Unix millisecond (inclusive).
    pub until_ms: i64,
    /// One group per key (id and name).
    pub by_key: bool,
    /// One group per instance.
    pub by_instance: bool,
    /// One group per UTC day.
    pub by_day: bool,
    /// One group per UTC hour.
    pub by_hour: bool,
    /// Only requests to this instance.
    pub instance: Option<String>,
    /// Only requests made with this key.
    pub key: Option<KeyOf>,
}

/// A key as the activity records name it: a stored key by its id, another (a config-file key,
/// or none with auth off) by its printable name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyOf {
    /// A stored API key's id.
    Stored(String),
    /// The name of a key that is not stored (`config-inference-key`, ...).
    Unstored(String),
}

/// The sums for one group; the fields it is not grouped by are `None`.
#[derive(Debug, Clone, PartialEq)]
pub struct UsageRow {
    /// The key's id (also `None` for config-file keys when grouped by key).
    pub key_id: Option<String>,
    /// The key's name.
    pub key_name: Option<String>,
    /// The instance.
    pub instance: Option<String>,
    /// The UTC day, `YYYY-MM-DD`.
    pub day: Option<String>,
    /// The UTC hour, `YYYY-MM-DDTHH`.
    pub hour: Option<String>,
    /// Requests made.
    pub requests: i64,
    /// Requests answered with a status of 400 or more.
    pub errors: i64,
    /// Prompt tokens reported.
    pub prompt_tokens: i64,
    /// Completion tokens reported.
    pub completion_tokens: i64,
}

/// A count as SQLite stores it (its integers are signed); saturates rather than wrap.
fn signed(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl Db {
    /// Writes `records` in one transaction, then drops the oldest rows beyond `keep`.
    pub async fn store_activity(&self, records: &[Record], keep: i64) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool().begin().await.on(self)?;
        let mut last_id = 0;
        for r in records {
            let route = names::name_of(&r.route);
            let duration_ms = signed(r.duration_ms);
            let ttfb_ms = r.ttfb_ms.map(signed);
            let prompt_tokens = r.prompt_tokens.map(signed);
            let completion_tokens = r.completion_tokens.map(signed);
            let client_addr = r.client_addr.map(|a| a.to_string());
            last_id = sqlx::query!(
                "INSERT INTO activity (at_ms, key_id, key_name, instance, route, status,
                    duration_ms, ttfb_ms, prompt_tokens, completion_tokens, streamed, client_addr)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                r.at_ms,
                r.key_id,
                r.key_name,
                r.instance,
                route,
                r.status,
                duration_ms,
                ttfb_ms,
                prompt_tokens,
                completion_tokens,
                r.streamed,
                client_addr
            )
            .execute(&mut *tx)
            .await
            .on(self)?
            .last_insert_rowid();
        }
        // Ids only grow (AUTOINCREMENT) and rows go oldest-first, so this keeps exactly `keep`
        // rows once there are that many; the delete is a primary-key range scan of about one batch.
        let cutoff = last_id - keep.max(1);
        if cutoff > 0 {
            sqlx::query!("DELETE FROM activity WHERE id <= ?", cutoff)
                .execute(&mut *tx)
                .await
                .on(self)?;
        }
        tx.commit().await.on(self)?;
        Ok(())
    }

    /// Records matching `filter`, newest first (by arrival, then id), at most `limit`.
    pub async fn activity(&self, filter: &ActivityFilter, limit: i64) -> Result<Vec<ActivityRow>> {
        let route = filter.route.as_ref().map(names::name_of);
        let status = filter.status.map(i64::from);
        // Open bounds become the widest ones so that the time index serves every query as a range.
        let since = filter.since_ms.unwrap_or(i64::MIN);
        let until = filter.until_ms.unwrap_or(i64::MAX);
        let (before_at, before_id) = filter.before.unwrap_or((i64::MAX, i64::MAX));
        // One query per leading filter, so that SQLite uses the (instance, time) or (key, time)
        // index: it cannot for a column tested as `?1 IS NULL OR column = ?1`.
        let rows = match (&filter.instance, &filter.key) {
            (Some(instance), key) => sqlx::query_as!(
                ActivityRow,
                r#"SELECT id as "id!", at_ms, key_id, key_name, instance, route, status,
                          duration_ms, ttfb_ms, prompt_tokens, completion_tokens,
                          streamed as "streamed: bool", client_addr
                       FROM activity
                       WHERE instance = ?1 AND (?2 IS NULL OR key_id = ?2)
                         AND (?3 IS NULL OR route = ?3) AND (?4 IS NULL OR status = ?4)
                         AND at_ms >= ?5 AND at_ms <= ?6 AND (at_ms, id) < (?7, ?8)
                       ORDER BY at_ms DESC, id DESC
                       LIMIT ?9"#,
                instance,
                key,
                route,
                status,
                since,
                until,
                before_at,
                before_id,
                limit
            )
            .fetch_all(self.pool())
            .await
            .on(self)?,
            (None, Some(key)) => sqlx::query_as!(
                ActivityRow,
                r#"SELECT id as "id!", at_ms, key_id, key_name, instance, route, status,
                          duration_ms, ttfb_ms, prompt_tokens, completion_tokens,
                          streamed as "streamed: bool", client_addr
                       FROM activity
                       WHERE key_id = ?1
                         AND (?2 IS NULL OR route = ?2) AND (?3 IS NULL OR status = ?3)
                         AND at_ms >= ?4 AND at_ms <= ?5 AND (at_ms, id) < (?6, ?7)
                       ORDER BY at_ms DESC, id DESC
                       LIMIT ?8"#,
                key,
                route,
                status,
                since,
                until,
                before_at,
                before_id,
                limit
            )
            .fetch_all(self.pool())
            .await
            .on(self)?,
            (None, None) => sqlx::query_as!(
                ActivityRow,
                r#"SELECT id as "id!", at_ms, key_id, key_name, instance, route, status,
                          duration_ms, ttfb_ms, prompt_tokens, completion_tokens,
                          streamed as "streamed: bool", client_addr
                       FROM activity
                       WHERE (?1 IS NULL OR route = ?1) AND (?2 IS NULL OR status = ?2)
                         AND at_ms >= ?3 AND at_ms <= ?4 AND (at_ms, id) < (?5, ?6)
                       ORDER BY at_ms DESC, id DESC
                       LIMIT ?7"#,
                route,
                status,
                since,
                until,
                before_at,
                before_id,
                limit
            )
            .fetch_all(self.pool())
            .await
            .on(self)?,
        };
        Ok(rows)
    }

    /// Requests, errors and tokens in the filter's range, one row per group, ordered by day,
    /// hour, instance and key; no rows when nothing was recorded in the range.
    pub async fn usage(&self, filter: &UsageFilter) -> Result<Vec<UsageRow>> {
        let (key_id, key_name) = match &filter.key {
            None => (None, None),
            Some(KeyOf::Stored(id)) => (Some(id.as_str()), None),
            Some(KeyOf::Unstored(name)) => (None, Some(name.as_str())),
        };
        // One query per leading filter, as in `activity`: SQLite uses the (instance, time) index
        // only for a plain `instance = ?`, and with it an instance's 30 days out of a million
        // records of 20 instances sum in about a tenth of the time.
        let rows = match &filter.instance {
            Some(instance) => sqlx::query_as!(
                UsageRow,
                r#"SELECT CASE WHEN ?1 THEN key_id END as "key_id?: String",
                          CASE WHEN ?1 THEN key_name END as "key_name?: String",
                          CASE WHEN ?2 THEN instance END as "instance?: String",
                          CASE WHEN ?3 THEN strftime('%Y-%m-%d', at_ms / 1000, 'unixepoch') END
                              as "day?: String",
                          CASE WHEN ?4 THEN strftime('%Y-%m-%dT%H', at_ms / 1000, 'unixepoch') END
                              as "hour?: String",
                          COUNT(*) as "requests!: i64",
                          COALESCE(SUM(status >= 400), 0) as "errors!: i64",
                          COALESCE(SUM(prompt_tokens), 0) as "prompt_tokens!: i64",
                          COALESCE(SUM(completion_tokens), 0) as "completion_tokens!: i64"
                   FROM activity
                   WHERE instance = ?7 AND at_ms >= ?5 AND at_ms <= ?6
                     AND (?8 IS NULL OR key_id = ?8)
                     AND (?9 IS NULL OR (key_id IS NULL AND key_name = ?9))
                   GROUP BY 1, 2, 3, 4, 5
                   ORDER BY 4, 5, 3, 2, 1"#,
                filter.by_key,
                filter.by_instance,
                filter.by_day,
                filter.by_hour,
                filter.since_ms,
                filter.until_ms,
                instance,
                key_id,
                key_name
            )
            .fetch_all(self.pool())
            .await
            .on(self)?,
            None => sqlx::query_as!(
                UsageRow,
                r#"SELECT CASE WHEN ?1 THEN key_id END as "key_id?: String",
                          CASE WHEN ?1 THEN key_name END as "key_name?: String",
                          CASE WHEN ?2 THEN instance END as "instance?: String",
                          CASE WHEN ?3 THEN strftime('%Y-%m-%d', at_ms / 1000, 'unixepoch') END
                              as "day?: String",
                          CASE WHEN ?4 THEN strftime('%Y-%m-%dT%H', at_ms / 1000, 'unixepoch') END
                              as "hour?: String",
                          COUNT(*) as "requests!: i64",
                          COALESCE(SUM(status >= 400), 0) as "errors!: i64",
                          COALESCE(SUM(prompt_tokens), 0) as "prompt_tokens!: i64",
                          COALESCE(SUM(completion_tokens), 0) as "completion_tokens!: i64"
                   FROM activity
                   WHERE at_ms >= ?5 AND at_ms <= ?6
                     AND (?7 IS NULL OR key_id = ?7)
                     AND (?8 IS NULL OR (key_id IS NULL AND key_name = ?8))
                   GROUP BY 1, 2, 3, 4, 5
                   ORDER BY 4, 5, 3, 2, 1"#,
                filter.by_key,
                filter.by_instance,
                filter.by_day,
                filter.by_hour,
                filter.since_ms,
                filter.until_ms,
                key_id,
                key_name
            )
            .fetch_all(self.pool())
            .await
            .on(self)?,
        };
        Ok(rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::activity::Route;

    async fn db() -> (Db, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("t.db")).await.unwrap();
        (db, dir)
    }

    /// The arrival times of the matching records, as read (newest first).
    async fn times(db: &Db, filter: &ActivityFilter, limit: i64) -> Vec<i64> {
        let rows = db.activity(filter, limit).await.unwrap();
        rows.iter().map(|r| r.at_ms).collect()
    }

    #[tokio::test]
    async fn a_batch_reads_back_newest_first_whole_and_by_each_filter() {
        let (db, _dir) = db().await;
        let batch = vec![
            Record::sample(1000, "k1", "a"),
            Record {
                route: Route::Embeddings,
                status: 503,
                streamed: false,
                prompt_tokens: None,
                completion_tokens: None,
                ttfb_ms: None,
                client_addr: None,
                ..Record::sample(3000, "k2", "a")
            },
            Record::sample(2000, "k1", "b"),
            Record {
                key_id: None,
                key_name: "config-inference-key".into(),
                ..Record::sample(4000, "-", "b")
            },
        ];
        db.store_activity(&batch, 100).await.unwrap();

        let all = db.activity(&ActivityFilter::default(), 100).await.unwrap();
        assert_eq!(
            all.iter().map(|r| r.at_ms).collect::<Vec<_>>(),
            [4000, 3000, 2000, 1000]
        );
        let embedding = &all[1];
        assert_eq!(
            (
                embedding.route.as_str(),
                embedding.status,
                embedding.streamed
            ),
            ("embeddings", 503, false)
        );
        assert_eq!((embedding.prompt_tokens, embedding.ttfb_ms), (None, None));
        let chat = &all[3];
        assert_eq!(chat.key_id.as_deref(), Some("k1"));
        assert_eq!(chat.key_name, "name-of-k1");
        assert_eq!(
            (chat.prompt_tokens, chat.completion_tokens),
            (Some(10), Some(5))
        );
        assert_eq!((chat.duration_ms, chat.ttfb_ms), (120, Some(15)));
        assert_eq!(chat.client_addr.as_deref(), Some("127.0.0.1"));
        assert!(chat.streamed);

        let cases = [
            (
                ActivityFilter {
                    instance: Some("a".into()),
                    ..Default::default()
                },
                vec![3000, 1000],
            ),
            (
                ActivityFilter {
                    key: Some("k1".into()),
                    ..Default::default()
                },
                vec![2000, 1000],
            ),
            (
                ActivityFilter {
                    instance: Some("a".into()),
                    key: Some("k1".into()),
                    ..Default::default()
                },
                vec![1000],
            ),
            (
                ActivityFilter {
                    route: Some(Route::Embeddings),
                    ..Default::default()
                },
                vec![3000],
            ),
            (
                ActivityFilter {
                    status: Some(200),
                    ..Default::default()
                },
                vec![4000, 2000, 1000],
            ),
            (
                ActivityFilter {
                    since_ms: Some(2000),
                    ..Default::default()
                },
                vec![4000, 3000, 2000],
            ),
            (
                ActivityFilter {
                    until_ms: Some(2000),
                    ..Default::default()
                },
                vec![2000, 1000],
            ),
            (
                ActivityFilter {
                    key: Some("k1".into()),
                    since_ms: Some(1500),
                    ..Default::default()
                },
                vec![2000],
            ),
            (
                ActivityFilter {
                    instance: Some("c".into()),
                    ..Default::default()
                },
                vec![],
            ),
        ];
        for (filter, want) in cases {
            assert_eq!(times(&db, &filter, 100).await, want, "{filter:?}");
        }
    }

    #[tokio::test]
    async fn the_cursor_pages_through_records_of_equal_times_without_gaps_or_repeats() {
        let (db, _dir) = db().await;
        // Written out of arrival order (a long stream ends after a later short request), and
        // with ties in time.
        let batch: Vec<Record> = [5, 9, 7, 7, 7, 1, 9]
            .into_iter()
            .map(|at| Record::sample(at, "k", "a"))
            .collect();
        db.store_activity(&batch, 100).await.unwrap();
        let mut seen = Vec::new();
        let mut filter = ActivityFilter::default();
        loop {
            let page = db.activity(&filter, 2).await.unwrap();
            seen.extend(page.iter().map(|r| (r.at_ms, r.id)));
            match page.last() {
                Some(last) if page.len() == 2 => filter.before = Some((last.at_ms, last.id)),
                _ => break,
            }
        }
        let mut want = seen.clone();
        want.sort_unstable_by(|a, b| b.cmp(a));
        want.dedup();
        assert_eq!(seen, want, "newest first, each once");
        assert_eq!(seen.len(), 7);
    }

    #[tokio::test]
    async fn retention_trims_the_oldest_records() {
        let (db, _dir) = db().await;
        for start in [0, 3, 6] {
            let batch: Vec<Record> = (start..start + 3)
                .map(|at| Record::sample(at, "k", "a"))
                .collect();
            db.store_activity(&batch, 4).await.unwrap();
        }
        assert_eq!(
            times(&db, &ActivityFilter::default(), 100).await,
            [8, 7, 6, 5]
        );
    }

    fn usage_filter(by_key: bool, by_instance: bool, by_day: bool) -> UsageFilter {
        UsageFilter {
            since_ms: 0,
            until_ms: i64::MAX,
            by_key,
            by_instance,
            by_day,
            ..UsageFilter::default()
        }
    }

    /// (group, requests, errors, prompt, completion), the group as `key/instance/day` with `-`
    /// for what is not grouped by.
    fn summary(rows: &[UsageRow]) -> Vec<(String, i64, i64, i64, i64)> {
        rows.iter()
            .map(|r| {
                let group = [&r.key_name, &r.instance, &r.day]
                    .map(|p| p.clone().unwrap_or_else(|| "-".into()))
                    .join("/");
                (
                    group,
                    r.requests,
                    r.errors,
                    r.prompt_tokens,
                    r.completion_tokens,
                )
            })
            .collect()
    }

    #[tokio::test]
    async fn usage_sums_by_day_across_utc_midnight_by_key_and_by_instance() {
        let (db, _dir) = db().await;
        // 2030-01-31T23:59:59.999Z and a millisecond later, the next UTC day.
        let before_midnight = 1_896_134_399_999;
        let after_midnight = before_midnight + 1;
        let batch = vec![
            Record::sample(before_midnight, "k1", "a"),
            Record {
                status: 500,
                prompt_tokens: None,
                completion_tokens: None,
                ..Record::sample(before_midnight - 5, "k2", "a")
            },
            Record::sample(after_midnight, "k1", "b"),
            Record {
                prompt_tokens: Some(1),
                completion_tokens: Some(2),
                ..Record::sample(after_midnight + 7, "k1", "a")
            },
        ];
        db.store_activity(&batch, 100).await.unwrap();

        let by_day = db.usage(&usage_filter(false, false, true)).await.unwrap();
        assert_eq!(
            summary(&by_day),
            [
                ("-/-/2030-01-31".to_string(), 2, 1, 10, 5),
                ("-/-/2030-02-01".to_string(), 2, 0, 11, 7),
            ]
        );
        let by_key = db.usage(&usage_filter(true, false, false)).await.unwrap();
        assert_eq!(
            summary(&by_key),
            [
                ("name-of-k1/-/-".to_string(), 3, 0, 21, 12),
                ("name-of-k2/-/-".to_string(), 1, 1, 0, 0)
            ]
        );
        assert_eq!(by_key[0].key_id.as_deref(), Some("k1"));
        let by_instance = db.usage(&usage_filter(false, true, false)).await.unwrap();
        assert_eq!(
            summary(&by_instance),
            [
                ("-/a/-".to_string(), 3, 1, 11, 7),
                ("-/b/-".to_string(), 1, 0, 10, 5)
            ]
        );
        let all = db.usage(&usage_filter(true, true, true)).await.unwrap();
        assert_eq!(
            summary(&all),
            [
                ("name-of-k1/a/2030-01-31".to_string(), 1, 0, 10, 5),
                ("name-of-k2/a/2030-01-31".to_string(), 1, 1, 0, 0),
                ("name-of-k1/a/2030-02-01".to_string(), 1, 0, 1, 2),
                ("name-of-k1/b/2030-02-01".to_string(), 1, 0, 10, 5),
            ]
        );
        let total = db.usage(&usage_filter(false, false, false)).await.unwrap();
        assert_eq!(summary(&total), [("-/-/-".to_string(), 4, 1, 21, 12)]);
        let range = UsageFilter {
            since_ms: after_midnight,
            ..usage_filter(false, false, false)
        };
        assert_eq!(
            summary(&db.usage(&range).await.unwrap()),
            [("-/-/-".to_string(), 2, 0, 11, 7)]
        );
        let empty = UsageFilter {
            until_ms: 0,
            ..usage_filter(true, true, true)
        };
        assert!(db.usage(&empty).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn usage_sums_by_utc_hour_for_one_instance_and_one_key() {
        let (db, _dir) = db().await;
        // 2030-01-31T22:59:59.999Z, then the next hour.
        let before_hour = 1_896_130_799_999;
        let batch = vec![
            Record::sample(before_hour, "k1", "a"),
            Record::sample(before_hour + 1, "k1", "a"),
            Record::sample(before_hour + 2, "k2", "a"),
            Record::sample(before_hour + 3, "k1", "b"),
            Record {
                key_id: None,
                key_name: "config-inference-key".into(),
                ..Record::sample(before_hour + 4, "-", "a")
            },
        ];
        db.store_activity(&batch, 100).await.unwrap();
        let hours = |instance: Option<&str>, key: Option<KeyOf>| UsageFilter {
            since_ms: 0,
            until_ms: i64::MAX,
            by_hour: true,
            instance: instance.map(String::from),
            key,
            ..UsageFilter::default()
        };
        let per_hour = |rows: Vec<UsageRow>| -> Vec<(String, i64, i64)> {
            rows.into_iter()
                .map(|r| {
                    let tokens = r.prompt_tokens + r.completion_tokens;
                    (r.hour.unwrap_or_default(), r.requests, tokens)
                })
                .collect()
        };
        let cases = [
            (
                hours(None, None),
                vec![("2030-01-31T22", 1, 15), ("2030-01-31T23", 4, 60)],
            ),
            (
                hours(Some("a"), None),
                vec![("2030-01-31T22", 1, 15), ("2030-01-31T23", 3, 45)],
            ),
            (
                hours(Some("a"), Some(KeyOf::Stored("k1".into()))),
                vec![("2030-01-31T22", 1, 15), ("2030-01-31T23", 1, 15)],
            ),
            (
                hours(
                    Some("a"),
                    Some(KeyOf::Unstored("config-inference-key".into())),
                ),
                vec![("2030-01-31T23", 1, 15)],
            ),
            (
                // A stored key named like a config key is not that key.
                hours(None, Some(KeyOf::Unstored("name-of-k1".into()))),
                vec![],
            ),
            (hours(Some("c"), None), vec![]),
        ];
        for (filter, want) in cases {
            let want: Vec<(String, i64, i64)> = want
                .into_iter()
                .map(|(h, n, t)| (h.to_string(), n, t))
                .collect();
            assert_eq!(
                per_hour(db.usage(&filter).await.unwrap()),
                want,
                "{filter:?}"
            );
        }
    }
}
