-- approvals schema version 5 (SQLite): the database itself keeps the log in order. A record
-- is written only right after the log's last: its `seq` is the key (a number already taken
-- is refused), and the trigger below refuses one whose predecessor is missing. A writer can
-- then append with a plain INSERT of its records, numbered after the head it built on,
-- and learn from the refusal that another writer got in first. Before, the INSERT read the
-- log's last record itself (INSERT ... SELECT ... WHERE), which made SQLite copy the row
-- into a temporary b-tree of its own on every append, about a tenth of its instructions.
-- Every writer is held to it, another program's included: no gap can be written.
DROP TRIGGER approvals_audit_frontier;
CREATE TRIGGER approvals_audit_append AFTER INSERT ON approvals_audit
BEGIN
    SELECT RAISE(ABORT, 'approvals_audit: a record must follow the log''s last')
        WHERE NEW.seq <> 0 AND NOT EXISTS (SELECT 1 FROM approvals_audit WHERE seq = NEW.seq - 1);
    -- Only the log's last record holds a frontier: each record inserted clears the one
    -- before it (found by its key, on the page the insert writes).
    UPDATE approvals_audit SET frontier = NULL WHERE seq = NEW.seq - 1 AND frontier IS NOT NULL;
END;
