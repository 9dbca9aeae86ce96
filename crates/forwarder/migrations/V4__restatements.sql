-- Restatements: the value history of an event. Revision 0 is the value as first received
-- (written with the first restatement), then one row per restatement. The event itself is
-- never rewritten: its current value is the latest revision here, else its own amount.
CREATE TABLE event_values (
    workspace_id uuid        NOT NULL,
    event_id     uuid        NOT NULL,
    revision     integer     NOT NULL CHECK (revision >= 0),
    amount       numeric     NOT NULL CHECK (amount >= 0),
    currency     text        NOT NULL,
    reason       text,
    recorded_at  timestamptz NOT NULL,
    PRIMARY KEY (workspace_id, event_id, revision)
);

-- The current (latest restated) value of one event; no row when it was never restated, so that
-- a reader takes `coalesce(restated, the event's own amount)`.
CREATE FUNCTION event_current_value(p_workspace_id uuid, p_event_id uuid)
RETURNS TABLE (amount numeric, currency text, revision integer, restated_at timestamptz)
LANGUAGE sql STABLE AS $$
    SELECT v.amount, v.currency, v.revision, v.recorded_at
    FROM event_values v
    WHERE v.workspace_id = p_workspace_id AND v.event_id = p_event_id
    ORDER BY v.revision DESC
    LIMIT 1
$$;

-- The same for many events at once (a join for reports): one row per restated event.
CREATE VIEW event_current_values AS
    SELECT DISTINCT ON (workspace_id, event_id)
           workspace_id, event_id, amount, currency, revision, recorded_at AS restated_at
    FROM event_values
    ORDER BY workspace_id, event_id, revision DESC;

-- A restatement dispatch per destination and revision: `revision` is 0 for conversions and
-- retractions, which stay one per event and destination.
ALTER TABLE dispatches ADD COLUMN revision integer NOT NULL DEFAULT 0;
ALTER TABLE dispatches DROP CONSTRAINT dispatches_kind_check;
ALTER TABLE dispatches ADD CONSTRAINT dispatches_kind_check
    CHECK (kind IN ('conversion', 'retraction', 'restatement'));
ALTER TABLE dispatches DROP CONSTRAINT dispatches_workspace_id_event_id_destination_id_kind_key;
ALTER TABLE dispatches ADD CONSTRAINT dispatches_one_per_revision
    UNIQUE (workspace_id, event_id, destination_id, kind, revision);
