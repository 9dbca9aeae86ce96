-- Kept Idempotency-Key answers are partitioned by the day (UTC) they expire, so that a day of them
-- goes whole, by dropping its partition, instead of row by row: the API's upkeep creates the days
-- ahead and drops those past (`dedup::idempotency::keep_days`). A partitioned table's primary key
-- must hold its partition key, so it is (workspace_id, key, expires_at): one key has at most one
-- live answer all the same, because a request takes its key's lock and looks for a live answer
-- before it keeps its own. An expired answer stays in its day's partition, ignored, until that
-- day goes. The default partition takes an answer whose day was not created in time.
ALTER TABLE idempotency_keys RENAME TO idempotency_keys_unpartitioned;
ALTER TABLE idempotency_keys_unpartitioned
    RENAME CONSTRAINT idempotency_keys_pkey TO idempotency_keys_unpartitioned_pkey;
DROP INDEX idempotency_keys_expires_at;

CREATE TABLE idempotency_keys (
    workspace_id    uuid        NOT NULL,
    key             text        NOT NULL,
    request_hash    bytea       NOT NULL,
    response_status smallint    NOT NULL,
    response_body   bytea       NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz NOT NULL,
    PRIMARY KEY (workspace_id, key, expires_at)
) PARTITION BY RANGE (expires_at);

CREATE TABLE idempotency_keys_default PARTITION OF idempotency_keys DEFAULT;

-- A partition for each day from today to the last day a live answer expires (at least two days
-- ahead), named as the upkeep names them.
DO $$
DECLARE
    day  date := (now() AT TIME ZONE 'UTC')::date;
    last date := greatest(
        (SELECT max(expires_at) FROM idempotency_keys_unpartitioned),
        now() + interval '2 days') AT TIME ZONE 'UTC';
BEGIN
    WHILE day <= last LOOP
        EXECUTE format(
            'CREATE TABLE %I PARTITION OF idempotency_keys FOR VALUES FROM (%L) TO (%L)',
            'idempotency_keys_p' || to_char(day, 'YYYYMMDD'),
            (day::timestamp AT TIME ZONE 'UTC'),
            ((day + 1)::timestamp AT TIME ZONE 'UTC'));
        day := day + 1;
    END LOOP;
END
$$;

INSERT INTO idempotency_keys
SELECT workspace_id, key, request_hash, response_status, response_body, created_at, expires_at
FROM idempotency_keys_unpartitioned
WHERE expires_at > now();

DROP TABLE idempotency_keys_unpartitioned;
