-- approvals schema version 3 (Postgres): the log's Merkle frontier kept in the rows of its
-- records, not in a head row that every append rewrote. Moving that row cost an append
-- about 1.1x a plain INSERT on its own (benches/durable.rs), and it was a lock every writer
-- queued on. The record whose `seq + 1` is a multiple of 32 keeps the frontier after it, so
-- the log's last 32 records hold one (or run back to its first record), and its head is
-- that frontier with the leaves after it. Writers are ordered by a transaction-scoped
-- advisory lock (no row is written for it), and a record's `seq` is its key, so two
-- writers that built on the same head cannot both write. What stays in the head row is
-- what moves only when a checkpoint is signed.
ALTER TABLE approvals_audit ADD COLUMN frontier BYTEA;
-- The log's last record keeps the frontier the head row held, until the next record
-- whose `seq` keeps one.
UPDATE approvals_audit SET frontier = (SELECT frontier FROM approvals_audit_head WHERE id = 1)
    WHERE seq = (SELECT MAX(seq) FROM approvals_audit);
ALTER TABLE approvals_audit_head DROP COLUMN frontier, DROP COLUMN last_leaf;
