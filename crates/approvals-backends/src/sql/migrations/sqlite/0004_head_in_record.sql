-- approvals schema version 4 (SQLite): the log's Merkle frontier kept in the row of its
-- last record, not in a head row of its own that every append rewrote. An append is then
-- one INSERT, numbered after the log's last record (`seq` is the key, and the INSERT writes
-- only if the last record is still the one the writer built on): moving a row of a second
-- table with each record cost 1.11-1.16x the INSERT alone (benches/durable.rs).
-- The last record of every append carries the frontier after it (earlier records of a
-- batch leave it NULL), and the head's last leaf is that record's own `leaf`. What stays in
-- the head row is what moves only when a checkpoint is signed.
ALTER TABLE approvals_audit ADD COLUMN frontier BLOB;
UPDATE approvals_audit SET frontier = (SELECT frontier FROM approvals_audit_head WHERE id = 1)
    WHERE seq = (SELECT MAX(seq) FROM approvals_audit);
ALTER TABLE approvals_audit_head DROP COLUMN frontier;
ALTER TABLE approvals_audit_head DROP COLUMN last_leaf;
-- Only the log's last record holds a frontier: each record inserted clears the one before
-- it (found by its key, on the page the insert writes). A log whose last records were
-- removed is then left without one, and is refused when opened.
CREATE TRIGGER approvals_audit_frontier AFTER INSERT ON approvals_audit
BEGIN
    UPDATE approvals_audit SET frontier = NULL WHERE seq = NEW.seq - 1 AND frontier IS NOT NULL;
END;
