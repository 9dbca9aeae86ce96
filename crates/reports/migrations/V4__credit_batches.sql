-- The report stage's queue holds one row per matcher step and workspace, its conversions in the
-- order they were decided, instead of one row per conversion: queueing costs one row a step, and
-- taking a batch no longer steps over the dead rows of the conversions taken before it.
CREATE TABLE credit_batches (
    workspace_id uuid NOT NULL,
    id           bigint GENERATED ALWAYS AS IDENTITY,
    event_ids    uuid[] NOT NULL,
    PRIMARY KEY (workspace_id, id)
);

-- What waits moves over in batches of at most a thousand.
INSERT INTO credit_batches (workspace_id, event_ids)
SELECT workspace_id, array_agg(event_id ORDER BY event_id)
FROM (SELECT workspace_id, event_id,
             (row_number() OVER (PARTITION BY workspace_id ORDER BY event_id) - 1) / 1000 AS chunk
      FROM credit_queue) AS waiting
GROUP BY workspace_id, chunk
ORDER BY workspace_id, chunk;

DROP TABLE credit_queue;
