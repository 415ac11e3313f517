-- One row per inference request: who made it, which instance served it, how it went, and the
-- tokens the backend reported. Trimmed oldest-first (by id) to `activity.max_records`.
CREATE TABLE activity (
    id                INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    at_ms             INTEGER NOT NULL,   -- Unix milliseconds when the request arrived
    key_id            TEXT,               -- the stored API key that made it, if one did
    key_name          TEXT    NOT NULL,   -- the caller's printable name
    instance          TEXT    NOT NULL,
    route             TEXT    NOT NULL,   -- chat_completions, completions, embeddings, ..., read, other
    status            INTEGER NOT NULL,   -- the status the client got
    duration_ms       INTEGER NOT NULL,   -- arrival to the last byte sent (or the client leaving)
    ttfb_ms           INTEGER,            -- arrival to the answer's head, if one was sent
    prompt_tokens     INTEGER,            -- from the backend's usage/timings, if it said
    completion_tokens INTEGER,
    streamed          BOOLEAN NOT NULL,
    client_addr       TEXT
);
-- Pages are read newest first by time, alone or by instance or key; usage sums a time range. Each
-- index ends in the rowid (id), so (time, id) order needs no sort.
CREATE INDEX activity_at ON activity (at_ms);
CREATE INDEX activity_instance_at ON activity (instance, at_ms);
CREATE INDEX activity_key_at ON activity (key_id, at_ms);
