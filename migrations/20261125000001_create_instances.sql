-- Instance definitions (desired state) and the PID of the child a server last started for each,
-- so that a server restarted after being killed can find and end it.
CREATE TABLE instances (
    name            TEXT    PRIMARY KEY NOT NULL,
    spec            TEXT    NOT NULL,              -- JSON definition (backend type, options, lifecycle)
    desired_state   TEXT    NOT NULL DEFAULT 'running' CHECK (desired_state IN ('running', 'stopped')),
    created_at      INTEGER NOT NULL,              -- Unix seconds
    updated_at      INTEGER NOT NULL,              -- Unix seconds
    pid             INTEGER,                       -- child PID while one runs
    pid_start_ticks INTEGER,                       -- /proc/<pid>/stat starttime, guards against PID reuse
    pid_boot_id     TEXT                           -- kernel boot id the PID belongs to
);
