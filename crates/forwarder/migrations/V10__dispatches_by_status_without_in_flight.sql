-- A claim takes a dispatch `in_flight` and its record takes it out again moments later: with that
-- status left out of the by-status index as well, a claim adds no entry to it (about a tenth of
-- the write-ahead log of a drained dispatch). A list of in-flight dispatches, the only reader
-- that loses it, goes through the due index (every waiting dispatch) or walks the workspace's
-- dispatches newest first: tens of milliseconds for a backlog of tens of thousands, where the
-- index answered at once.
DROP INDEX dispatches_by_status;
CREATE INDEX dispatches_by_status ON dispatches (workspace_id, status, id)
    WHERE status NOT IN ('succeeded', 'in_flight');
