-- A key's quota counters (issue 13), so that a restart does not hand every key a fresh budget.
-- Written in batches every couple of seconds and at shutdown; the windows are fixed UTC minutes
-- and days, numbered from the Unix epoch (`minute` = seconds / 60, `day` = seconds / 86400).
CREATE TABLE key_usage (
    key_id TEXT PRIMARY KEY NOT NULL REFERENCES api_keys (id) ON DELETE CASCADE,
    minute INTEGER NOT NULL,
    minute_requests INTEGER NOT NULL,
    minute_tokens INTEGER NOT NULL,
    day INTEGER NOT NULL,
    day_tokens INTEGER NOT NULL
);
