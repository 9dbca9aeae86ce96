-- Conversions the matcher decided (or decided again) whose credit is not shared yet: the report
-- stage takes them in batches after the matcher's step has committed, so that attribution and
-- relaying never wait for multi-touch credit.
CREATE TABLE credit_queue (
    workspace_id uuid NOT NULL,
    event_id     uuid NOT NULL,
    PRIMARY KEY (workspace_id, event_id)
);
