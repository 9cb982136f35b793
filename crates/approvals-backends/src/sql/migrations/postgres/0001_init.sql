-- approvals schema version 1 (Postgres).
-- Requests and grants are JSON documents; the columns beside them are what is queried.
CREATE TABLE approvals_requests (
    id         TEXT PRIMARY KEY,      -- ULID: sorts by creation time
    requester  TEXT NOT NULL,
    digest     TEXT NOT NULL,
    attachable BOOLEAN NOT NULL,      -- tally::attachable, as of the last write
    pending    BOOLEAN NOT NULL,
    next_due   BIGINT,                -- unix microseconds of next_due(), NULL once decided
    version    BIGINT NOT NULL,
    body       TEXT NOT NULL
);
CREATE INDEX approvals_requests_call ON approvals_requests (requester, digest) WHERE attachable;
CREATE INDEX approvals_requests_due ON approvals_requests (next_due) WHERE pending;

CREATE TABLE approvals_grants (
    id        TEXT PRIMARY KEY,
    requester TEXT NOT NULL,
    policy    TEXT NOT NULL,
    action    TEXT NOT NULL,
    body      TEXT NOT NULL
);
CREATE INDEX approvals_grants_for ON approvals_grants (requester, policy, action);

-- The audit log: record `seq` is the canonical JSON its Merkle leaf is computed over.
CREATE TABLE approvals_audit (
    seq    BIGINT PRIMARY KEY,
    leaf   BYTEA NOT NULL,
    record TEXT NOT NULL
);
-- One row: the log's Merkle frontier and last leaf, read and rewritten by every append.
CREATE TABLE approvals_audit_head (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    frontier    BYTEA NOT NULL,
    last_leaf   BYTEA,
    signed_size BIGINT NOT NULL,
    signed_at   BIGINT NOT NULL
);
INSERT INTO approvals_audit_head VALUES (1, '\x0000000000000000'::bytea, NULL, 0, 0);
CREATE TABLE approvals_checkpoints (
    size BIGINT PRIMARY KEY,
    note TEXT NOT NULL
);
