CREATE TABLE IF NOT EXISTS approvals_schema (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    version BIGINT NOT NULL
);
