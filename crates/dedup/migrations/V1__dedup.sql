-- Natural keys: a sale's invoiceId, a lead's leadId. The primary key is the dedup rule.
CREATE TABLE natural_keys (
    workspace_id uuid        NOT NULL,
    kind         text        NOT NULL,
    key          text        NOT NULL,
    event_id     uuid        NOT NULL,
    PRIMARY KEY (workspace_id, kind, key)
);

-- Idempotency-Key records: the first answer to a POST, replayed byte for byte.
CREATE TABLE idempotency_keys (
    workspace_id    uuid        NOT NULL,
    key             text        NOT NULL,
    request_hash    bytea       NOT NULL,
    response_status smallint    NOT NULL,
    response_body   bytea       NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz NOT NULL,
    PRIMARY KEY (workspace_id, key)
);
CREATE INDEX idempotency_keys_expires_at ON idempotency_keys (expires_at);
