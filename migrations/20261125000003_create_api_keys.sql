-- API keys. Only an argon2id hash of the secret part is stored; the public id (also part of the
-- token) is the lookup key, so authenticating a token costs one primary-key read and one verify.
CREATE TABLE api_keys (
    id           TEXT    PRIMARY KEY NOT NULL,      -- short public id, e.g. 'k7m2x9q4ab'
    name         TEXT    NOT NULL,                  -- label chosen by whoever created it
    kind         TEXT    NOT NULL CHECK (kind IN ('management', 'inference')),
    secret_hash  TEXT    NOT NULL,                  -- argon2id PHC string of the secret part
    instances    TEXT,                              -- JSON array of instance names; NULL = all
    created_at   INTEGER NOT NULL,                  -- Unix seconds
    created_by   TEXT    NOT NULL,                  -- actor that created it
    expires_at   INTEGER,                           -- Unix seconds; NULL = never
    last_used_at INTEGER,                           -- Unix seconds, written in batches
    revoked_at   INTEGER                            -- Unix seconds; NULL = in force
);
