-- Instance definitions in the history (the detail of `created` and `updated` events, as JSON) kept
-- environment and option values that look secret: their names contain token, key, secret or
-- password (any case). Newer versions redact them when writing; this redacts what older ones
-- wrote, replacing each such value with "***". Options appear under `backend_options` or, in the
-- older flat form, at the top level; environment values under `environment`.
WITH RECURSIVE
candidates(id, doc) AS (
    SELECT id, detail FROM history
    WHERE event IN ('created', 'updated') AND json_valid(detail) AND json_type(detail) = 'object'
),
secrets(id, path) AS (
    SELECT c.id, e.fullkey
    FROM candidates AS c, json_each(c.doc) AS e
    WHERE e.type NOT IN ('object', 'array')
      AND (e.key LIKE '%token%' OR e.key LIKE '%key%' OR e.key LIKE '%secret%' OR e.key LIKE '%password%')
    UNION ALL
    SELECT c.id, e.fullkey
    FROM candidates AS c, json_each(c.doc, '$.backend_options') AS e
    WHERE e.key LIKE '%token%' OR e.key LIKE '%key%' OR e.key LIKE '%secret%' OR e.key LIKE '%password%'
    UNION ALL
    SELECT c.id, e.fullkey
    FROM candidates AS c, json_each(c.doc, '$.environment') AS e
    WHERE e.key LIKE '%token%' OR e.key LIKE '%key%' OR e.key LIKE '%secret%' OR e.key LIKE '%password%'
),
numbered(id, n, path) AS (
    SELECT id, row_number() OVER (PARTITION BY id ORDER BY path), path FROM secrets
),
-- One json_set per secret, applied in turn to each row's document.
redacted(id, n, doc) AS (
    SELECT id, 0, doc FROM candidates WHERE id IN (SELECT id FROM secrets)
    UNION ALL
    SELECT r.id, r.n + 1, json_set(r.doc, s.path, '***')
    FROM redacted AS r JOIN numbered AS s ON s.id = r.id AND s.n = r.n + 1
)
UPDATE history
SET detail = (SELECT doc FROM redacted WHERE redacted.id = history.id ORDER BY n DESC LIMIT 1)
WHERE id IN (SELECT id FROM secrets);
