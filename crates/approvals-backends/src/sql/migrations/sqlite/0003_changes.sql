-- approvals schema version 3 (SQLite): which requests changed, in commit order.
-- Every write of a request stamps it one past the highest stamp (writes are serialised by
-- BEGIN IMMEDIATE, so stamps follow commits). A process's change watcher reads only the
-- rows stamped since it last looked and wakes their waiters, not every waiter it has.
ALTER TABLE approvals_requests ADD COLUMN changed INTEGER NOT NULL DEFAULT 0;
CREATE INDEX approvals_requests_changed ON approvals_requests (changed);
