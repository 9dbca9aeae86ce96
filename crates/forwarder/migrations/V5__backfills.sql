-- Backfilling a newly connected destination from history. One row per destination: its
-- progress, and where the walk through the workspace's events (newest first) stands: `cursor`
-- is the last event id considered (events are walked below it), `since` the oldest receipt time
-- taken. Events received after the backfill started are live traffic, not its business.
CREATE TABLE backfills (
    workspace_id   uuid        NOT NULL,
    destination_id uuid        NOT NULL,
    status         text        NOT NULL CHECK (status IN ('running', 'done')),
    since          timestamptz NOT NULL,
    cursor         uuid        NOT NULL,
    considered     integer     NOT NULL DEFAULT 0,
    queued         integer     NOT NULL DEFAULT 0,
    skipped        integer     NOT NULL DEFAULT 0,
    due_at         timestamptz NOT NULL DEFAULT now(),
    lease_token    uuid,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    finished_at    timestamptz,
    PRIMARY KEY (workspace_id, destination_id)
);
CREATE INDEX backfills_due ON backfills (due_at) WHERE status = 'running';

-- A backfilled dispatch goes behind live ones: the claim takes live dispatches first.
ALTER TABLE dispatches ADD COLUMN backfill boolean NOT NULL DEFAULT false;
DROP INDEX dispatches_due;
CREATE INDEX dispatches_due ON dispatches (backfill, due_at)
    WHERE status IN ('queued', 'retrying', 'in_flight');
