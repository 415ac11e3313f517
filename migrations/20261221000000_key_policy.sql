-- What a key may do besides reaching its instances (issue 13): start and evict on demand, which
-- route classes, its queue priority and its limits. Defaults keep every existing key as it was.
-- `revision` grows with each change, so a server notices a change made elsewhere (the CLI) and
-- drops its cached copy of the key.
ALTER TABLE api_keys ADD COLUMN can_start INTEGER NOT NULL DEFAULT 1 CHECK (can_start IN (0, 1));
ALTER TABLE api_keys ADD COLUMN can_evict INTEGER NOT NULL DEFAULT 1 CHECK (can_evict IN (0, 1));
ALTER TABLE api_keys ADD COLUMN routes TEXT;              -- JSON array of route classes; NULL = all
ALTER TABLE api_keys ADD COLUMN priority TEXT NOT NULL DEFAULT 'normal'
    CHECK (priority IN ('high', 'normal', 'low'));
ALTER TABLE api_keys ADD COLUMN requests_per_minute INTEGER;  -- NULL = unlimited
ALTER TABLE api_keys ADD COLUMN tokens_per_minute INTEGER;    -- NULL = unlimited
ALTER TABLE api_keys ADD COLUMN tokens_per_day INTEGER;       -- NULL = unlimited
ALTER TABLE api_keys ADD COLUMN revision INTEGER NOT NULL DEFAULT 0;
