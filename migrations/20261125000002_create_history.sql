-- Lifecycle and audit history; rows outlive the instance they describe.
CREATE TABLE history (
    id        INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    at_ms     INTEGER NOT NULL,                    -- Unix milliseconds
    instance  TEXT,                                -- instance name, if the event concerns one
    event     TEXT    NOT NULL,                    -- created, start_requested, ready, stopped, crashed, ...
    actor     TEXT    NOT NULL DEFAULT 'system',   -- who caused it: a key, or the server itself
    detail    TEXT
);
CREATE INDEX history_instance_id ON history (instance, id);
CREATE INDEX history_event_id ON history (event, id);
