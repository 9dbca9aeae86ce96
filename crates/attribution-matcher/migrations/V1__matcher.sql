-- Every table's key starts with workspace_id, the distribution column under Citus.

-- Per-workspace settings of the matcher; a workspace without a row uses the defaults.
CREATE TABLE matcher_settings (
    workspace_id            uuid        PRIMARY KEY,
    attribution_window_secs bigint      NOT NULL CHECK (attribution_window_secs > 0),
    updated_at              timestamptz NOT NULL DEFAULT now()
);

-- The clicks registry (POST /v1/clicks). `identifier` is the SHA-256 of "clickId:<click_id>",
-- the click's node in the identity graph.
CREATE TABLE clicks (
    workspace_id uuid        NOT NULL,
    click_id     text        NOT NULL,
    identifier   bytea       NOT NULL,
    clicked_at   timestamptz NOT NULL,
    click_ids    jsonb       NOT NULL,
    utm          jsonb,
    url          text,
    referrer     text,
    ip           inet,
    user_agent   text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace_id, click_id)
);
CREATE INDEX clicks_identifier ON clicks (workspace_id, identifier);

-- The identity graph: each identifier (SHA-256 of "<kind>:<normalised value>", never the value
-- itself) belongs to one person. Merging two persons re-points the loser's rows.
CREATE TABLE identities (
    workspace_id uuid        NOT NULL,
    identifier   bytea       NOT NULL,
    kind         text        NOT NULL,
    person_id    uuid        NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace_id, identifier)
);
CREATE INDEX identities_person ON identities (workspace_id, person_id);

-- A person's clicks: registered clicks an event linked to the person (click_id set), and click
-- ids captured on events themselves (touchpoint set). One row per owning identifier.
CREATE TABLE touches (
    workspace_id uuid        NOT NULL,
    identifier   bytea       NOT NULL,
    person_id    uuid        NOT NULL,
    clicked_at   timestamptz NOT NULL,
    click_id     text,
    touchpoint   jsonb,
    PRIMARY KEY (workspace_id, identifier),
    CHECK ((click_id IS NULL) <> (touchpoint IS NULL))
);
CREATE INDEX touches_person ON touches (workspace_id, person_id, clicked_at);

-- Work for the matcher: newly stored events (event_id) and newly registered clicks
-- (click_identifier), plus pending events marked for another look (event_id).
CREATE TABLE match_queue (
    workspace_id     uuid        NOT NULL,
    id               bigint      GENERATED ALWAYS AS IDENTITY,
    event_id         uuid,
    click_identifier bytea,
    enqueued_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace_id, id),
    CHECK ((event_id IS NULL) <> (click_identifier IS NULL))
);
CREATE INDEX match_queue_order ON match_queue (id);

-- The decision per event: its attribution and routes as served, and while it is pending what
-- a late link needs (the person, the named click, the time it happened).
CREATE TABLE attributions (
    workspace_id  uuid        NOT NULL,
    event_id      uuid        NOT NULL,
    status        text        NOT NULL CHECK (status IN ('matched', 'unmatched', 'pending')),
    attribution   jsonb       NOT NULL,
    routes        jsonb       NOT NULL,
    occurred_at   timestamptz NOT NULL,
    received_at   timestamptz NOT NULL,
    pending_until timestamptz,
    person_id     uuid,
    named_click   bytea,
    decided_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL,
    PRIMARY KEY (workspace_id, event_id)
);
CREATE INDEX attributions_pending_person ON attributions (workspace_id, person_id, occurred_at)
    WHERE status = 'pending';
CREATE INDEX attributions_pending_until ON attributions (pending_until)
    WHERE status = 'pending';
