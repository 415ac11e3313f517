-- A third desired state: 'dormant' (stopped by llamactl itself — evicted at the running limit or
-- stopped for idleness — so it comes back on the next request), apart from 'stopped' (stopped by
-- an operator through the API, which a request must not undo). SQLite cannot change a CHECK in
-- place, so the table is rebuilt with the same columns.
CREATE TABLE instances_new (
    name            TEXT    PRIMARY KEY NOT NULL,
    spec            TEXT    NOT NULL,
    desired_state   TEXT    NOT NULL DEFAULT 'running'
                            CHECK (desired_state IN ('running', 'stopped', 'dormant')),
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    pid             INTEGER,
    pid_start_ticks INTEGER,
    pid_boot_id     TEXT
);
INSERT INTO instances_new (name, spec, desired_state, created_at, updated_at, pid, pid_start_ticks, pid_boot_id)
    SELECT name, spec, desired_state, created_at, updated_at, pid, pid_start_ticks, pid_boot_id FROM instances;
DROP TABLE instances;
ALTER TABLE instances_new RENAME TO instances;
-- Instances whose last stop was an eviction or an idle stop were stopped by llamactl, not by an operator.
UPDATE instances SET desired_state = 'dormant'
WHERE desired_state = 'stopped'
  AND (SELECT h.event FROM history h
       WHERE h.instance = instances.name AND h.event IN ('stop_requested', 'evicted', 'idle_stopped')
       ORDER BY h.id DESC LIMIT 1) IN ('evicted', 'idle_stopped');
