-- The journal: every accepted event, normalised, as stored once. Databases made before the
-- journal had migrations of its own got this table from the binary's first migrations; there
-- this is a no-op.
CREATE TABLE IF NOT EXISTS events (
    workspace_id         uuid        NOT NULL,
    id                   uuid        NOT NULL,
    kind                 text        NOT NULL,
    occurred_at          timestamptz NOT NULL,
    received_at          timestamptz NOT NULL,
    natural_key          text,
    customer_external_id text,
    mode                 text        NOT NULL,
    amount               numeric,
    currency             text,
    payload              jsonb       NOT NULL,
    retracted_at         timestamptz,
    retract_reason       text,
    PRIMARY KEY (workspace_id, id)
);
CREATE INDEX IF NOT EXISTS events_customer ON events (workspace_id, customer_external_id, id)
    WHERE customer_external_id IS NOT NULL;
