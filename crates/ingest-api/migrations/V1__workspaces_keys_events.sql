-- Workspaces: a customer's space; every other table's key starts with its id.
CREATE TABLE workspaces (
    id         uuid        PRIMARY KEY,
    name       text        NOT NULL UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- API keys: `cr_<prefix>_<secret>`; only a SHA-256 of the whole key is kept.
CREATE TABLE api_keys (
    workspace_id uuid        NOT NULL REFERENCES workspaces (id),
    prefix       text        NOT NULL,
    key_hash     bytea       NOT NULL,
    scopes       text[]      NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    revoked_at   timestamptz,
    PRIMARY KEY (workspace_id, prefix)
);
CREATE UNIQUE INDEX api_keys_prefix ON api_keys (prefix);

-- The journal: every accepted event, normalised, as stored once.
CREATE TABLE events (
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
    PRIMARY KEY (workspace_id, id)
);
CREATE INDEX events_customer ON events (workspace_id, customer_external_id, id)
    WHERE customer_external_id IS NOT NULL;
CREATE INDEX events_natural_key ON events (workspace_id, natural_key)
    WHERE natural_key IS NOT NULL;
