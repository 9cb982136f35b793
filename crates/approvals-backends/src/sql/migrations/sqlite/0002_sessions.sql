-- approvals schema version 2 (SQLite): console sessions, shared by every service on the file,
-- and an index of the open requests.
-- `key` is the SHA-256 of the session cookie, never the cookie itself.
CREATE TABLE approvals_sessions (
    key        TEXT PRIMARY KEY,
    expires_at INTEGER NOT NULL,      -- unix microseconds
    body       TEXT NOT NULL
);
CREATE INDEX approvals_sessions_expiry ON approvals_sessions (expires_at);

-- The open list reads only what is open, whatever the history holds.
CREATE INDEX approvals_requests_open ON approvals_requests (id) WHERE pending = 1;
