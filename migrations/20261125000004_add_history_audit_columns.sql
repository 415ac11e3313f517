-- Audit columns: which key acted and from where, and which key an event is about.
ALTER TABLE history ADD COLUMN actor_key_id TEXT;   -- id of the API key that acted, if any
ALTER TABLE history ADD COLUMN client_addr TEXT;    -- IP address the request came from, if any
ALTER TABLE history ADD COLUMN key_id TEXT;         -- the API key an event concerns (created, revoked)
