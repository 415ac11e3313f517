-- Facts about this database that must outlive the rows they came from. The first is that a
-- management key was once created here: then no boot ever creates one by itself again, even after
-- every management key was revoked or has expired (the operator uses `llamactl keys create`).
CREATE TABLE meta (
    name  TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
);
INSERT INTO meta (name, value)
    SELECT 'first_management_key_at', MIN(created_at) FROM api_keys
    WHERE kind = 'management' HAVING COUNT(*) > 0;
-- However a key is created (API, CLI, first boot), in the same transaction as the key.
CREATE TRIGGER api_keys_remember_management AFTER INSERT ON api_keys
WHEN NEW.kind = 'management'
BEGIN
    INSERT OR IGNORE INTO meta (name, value) VALUES ('first_management_key_at', NEW.created_at);
END;
