-- The queue holds groups: one row per ingest transaction and workspace, with the events in
-- arrival order, instead of one row per event. Ingest writes (and the matcher deletes) a row
-- per group, and a claim finds the oldest work without walking past thousands of dead rows.
ALTER TABLE match_queue ADD COLUMN event_ids uuid[];
UPDATE match_queue SET event_ids = ARRAY[event_id] WHERE event_id IS NOT NULL;
-- Dropping the column drops the check that named it.
ALTER TABLE match_queue DROP COLUMN event_id;
ALTER TABLE match_queue ADD CONSTRAINT match_queue_one_kind
    CHECK ((event_ids IS NULL) <> (click_identifier IS NULL));
ALTER TABLE match_queue ADD CONSTRAINT match_queue_no_empty_group
    CHECK (cardinality(event_ids) > 0);

-- A claim looks for one workspace's pending events whose window is over. With only the index on
-- pending_until, the planner went through the workspace's pending-person index and filtered
-- every pending row of the workspace (tens of milliseconds once a workspace holds many).
CREATE INDEX attributions_pending_expiry ON attributions (workspace_id, pending_until)
    WHERE status = 'pending';
