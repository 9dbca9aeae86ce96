-- Confirmation: where a platform processes an accepted upload later (Google Data Manager), a
-- succeeded dispatch is `pending` until the status of the upload request that carried it is read
-- back; synchronous platforms are `confirmed` at once. `confirmation_request` is the platform's
-- id of that upload request. Dispatches that succeeded before this column existed stay NULL.
ALTER TABLE dispatches
    ADD COLUMN confirmation            text CHECK (confirmation IN
                                           ('pending', 'confirmed', 'partially_failed', 'failed')),
    ADD COLUMN confirmation_request    text,
    ADD COLUMN confirmation_checked_at timestamptz,
    ADD COLUMN confirmation_detail     text;
-- `GET /v1/dispatches?confirmation=…`: the confirmed majority is left out, as succeeded is above.
CREATE INDEX dispatches_by_confirmation ON dispatches (workspace_id, confirmation, id)
    WHERE confirmation IN ('pending', 'partially_failed', 'failed');
-- A final status reaches every dispatch of the upload request at once.
CREATE INDEX dispatches_by_upload_request ON dispatches (workspace_id, destination_id, confirmation_request)
    WHERE confirmation_request IS NOT NULL;

-- One row per accepted upload request still to be (or once) checked: one status call per
-- request, not per conversion. `due_at` is the next check (or the lease's end while a worker
-- checks it, under `lease_token`); `deadline_at` is when checking stops (Google: 24 h).
CREATE TABLE upload_checks (
    workspace_id     uuid        NOT NULL,
    destination_id   uuid        NOT NULL,
    request_id       text        NOT NULL,
    status           text        NOT NULL CHECK (status IN
                         ('pending', 'confirmed', 'partially_failed', 'failed')),
    checks           integer     NOT NULL DEFAULT 0,
    due_at           timestamptz NOT NULL,
    deadline_at      timestamptz NOT NULL,
    lease_token      uuid,
    checked_at       timestamptz,
    detail           text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace_id, destination_id, request_id)
);
CREATE INDEX upload_checks_due ON upload_checks (due_at) WHERE status = 'pending';

-- Pacing: a token bucket per published quota (a Google Cloud project, an ad account), shared
-- by every worker process: a send takes a token in one atomic update of this row.
CREATE TABLE pacing_buckets (
    workspace_id uuid        NOT NULL,
    bucket       text        NOT NULL,
    tokens       float8      NOT NULL,
    updated_at   timestamptz NOT NULL,
    PRIMARY KEY (workspace_id, bucket)
);

-- A destination whose platform asked to come back much later (quota spent): its dispatches are
-- not claimed until `parked_until`, and spend no attempts meanwhile.
CREATE TABLE destination_parks (
    workspace_id   uuid        NOT NULL,
    destination_id uuid        NOT NULL,
    parked_until   timestamptz NOT NULL,
    reason         text        NOT NULL,
    parked_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace_id, destination_id)
);
