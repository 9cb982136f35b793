-- approvals schema version 2 (SQLite): console sessions, shared by every service on the file.
-- `key` is the SHA-256 of the session cookie, never the cookie itself.
CREATE TABLE approvals_sessions (
    key        TEXT PRIMARY KEY,
    expires_at INTEGER NOT NULL,      -- unix microseconds
    body       TEXT NOT NULL
);
CREATE INDEX approvals_sessions_expiry ON approvals_sessions (expires_at);
