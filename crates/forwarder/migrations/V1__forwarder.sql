-- Destinations: where a workspace's conversions go. `credentials` is the AES-256-GCM sealed JSON
-- of the type's credentials (version byte, 96-bit nonce, ciphertext and tag; the associated data
-- is workspace_id || id), so that a copy of the table reveals no secret. `revision` lets an update
-- that read an older row fail instead of overwriting a concurrent one.
CREATE TABLE destinations (
    workspace_id uuid        NOT NULL,
    id           uuid        NOT NULL,
    type         text        NOT NULL CHECK (type IN ('google_ads', 'meta', 'webhook')),
    name         text        NOT NULL,
    enabled      boolean     NOT NULL,
    events       text[]      NOT NULL,
    config       jsonb       NOT NULL,
    credentials  bytea       NOT NULL,
    revision     integer     NOT NULL DEFAULT 1,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace_id, id)
);

-- The dispatch queue: one row per (event, destination, kind). `payload` is the conversion as it
-- was routed, so that a send needs nothing but this row and its destination.
--
-- `due_at` is when a worker may next take the row: the next attempt of a queued or retrying
-- dispatch, the lease expiry of an in-flight one. One partial index then serves both "due" and
-- "lease expired". `lease_token` names the claim that holds an in-flight row; a result is recorded
-- only under the token it was claimed with. `retry_from` is `attempts` at the last manual retry:
-- the retry budget counts attempts since then.
CREATE TABLE dispatches (
    workspace_id     uuid        NOT NULL,
    id               uuid        NOT NULL,
    event_id         uuid        NOT NULL,
    destination_id   uuid        NOT NULL,
    destination_type text        NOT NULL CHECK (destination_type IN ('google_ads', 'meta', 'webhook')),
    kind             text        NOT NULL CHECK (kind IN ('conversion', 'retraction')),
    status           text        NOT NULL CHECK (status IN
                         ('queued', 'in_flight', 'succeeded', 'retrying', 'failed', 'skipped', 'cancelled')),
    payload          jsonb       NOT NULL,
    routing          jsonb,
    retract_reason   text,
    attempts         integer     NOT NULL DEFAULT 0,
    retry_from       integer     NOT NULL DEFAULT 0,
    due_at           timestamptz NOT NULL DEFAULT now(),
    lease_token      uuid,
    last_error       text,
    reason           text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace_id, id),
    UNIQUE (workspace_id, event_id, destination_id, kind)
);
CREATE INDEX dispatches_due ON dispatches (due_at)
    WHERE status IN ('queued', 'retrying', 'in_flight');
-- Most dispatches end `succeeded`; leaving them out keeps this index small and spares the last
-- update of each dispatch one index entry. A list of succeeded dispatches walks the primary key.
CREATE INDEX dispatches_by_status ON dispatches (workspace_id, status, id)
    WHERE status <> 'succeeded';
CREATE INDEX dispatches_by_destination ON dispatches (workspace_id, destination_id, id);

-- Every attempt of a dispatch, for operators: what was sent when, and what came back.
CREATE TABLE dispatch_attempts (
    workspace_id     uuid        NOT NULL,
    dispatch_id      uuid        NOT NULL,
    attempt          integer     NOT NULL,
    at               timestamptz NOT NULL,
    duration_ms      integer     NOT NULL,
    http_status      smallint,
    outcome          text        NOT NULL,
    error            text,
    response_excerpt text,
    PRIMARY KEY (workspace_id, dispatch_id, attempt)
);
