-- Dashboard sign-in sessions. The browser holds a random token in a cookie; only its SHA-256 is
-- stored, so a copy of this file signs nobody in. A session names the key it was made with and its
-- kind; what the key allows (instances, policy) is read from api_keys on each page, so a policy change
-- holds for its sessions at once. It ends with that key: revoking a key deletes its sessions (ON
-- DELETE CASCADE covers a deleted key row too). Sessions of keys from the configuration file
-- (key_id NULL) are deleted at startup, since the file may have changed.
CREATE TABLE sessions (
    token_hash  BLOB    PRIMARY KEY NOT NULL,          -- SHA-256 of the cookie's token
    key_id      TEXT    REFERENCES api_keys (id) ON DELETE CASCADE, -- NULL = a configuration key
    key_name    TEXT    NOT NULL,                      -- who, for the history
    kind        TEXT    NOT NULL CHECK (kind IN ('management', 'inference')),
    created_at  INTEGER NOT NULL,                      -- Unix seconds
    expires_at  INTEGER NOT NULL                       -- Unix seconds
);
CREATE INDEX sessions_by_key ON sessions (key_id);
