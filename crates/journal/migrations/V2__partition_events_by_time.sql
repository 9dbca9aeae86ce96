-- The events table becomes range-partitioned by time, so that retention drops whole partitions
-- instead of deleting rows. The partition key is the event id: a UUIDv7 whose first 48 bits are
-- the millisecond it was received (`receivedAt`), so the primary key (workspace_id, id) stays
-- as it is, every look-up by id prunes to one partition, and a list in id order reads the newest
-- partition first. A bound is the smallest UUID of its millisecond (the time in the first 48
-- bits, every other bit zero).
--
-- Partitions span a calendar month (UTC), named events_pYYYYMM; the workers create them ahead
-- (journal::retention). The events stored before this migration stay in one partition,
-- events_legacy, which covers everything up to the start of next month and is dropped like any
-- other once all of it is past retention; on an empty database it is not kept. events_default
-- takes an event that no partition covers (the workers were stopped for months), so that an
-- accepted event is never refused; creating a partition moves such rows into it.

ALTER TABLE events RENAME TO events_legacy;
ALTER TABLE events_legacy RENAME CONSTRAINT events_pkey TO events_legacy_pkey;
ALTER INDEX events_customer RENAME TO events_legacy_customer;

CREATE TABLE events (LIKE events_legacy INCLUDING DEFAULTS INCLUDING CONSTRAINTS)
    PARTITION BY RANGE (id);
ALTER TABLE events ADD PRIMARY KEY (workspace_id, id);
CREATE INDEX events_customer ON events (workspace_id, customer_external_id, id)
    WHERE customer_external_id IS NOT NULL;

DO $$
DECLARE
    this_month timestamptz := date_trunc('month', now(), 'UTC');
    month      timestamptz;
    lower      uuid;
    upper      uuid;
BEGIN
    -- The smallest UUID of a millisecond, as in journal::retention::time_bound.
    CREATE FUNCTION pg_temp.time_bound(t timestamptz) RETURNS uuid LANGUAGE sql IMMUTABLE AS $f$
        SELECT (substr(h, 1, 8) || '-' || substr(h, 9, 4) || '-0000-0000-000000000000')::uuid
        FROM (SELECT lpad(to_hex(floor(extract(epoch FROM t) * 1000)::bigint), 12, '0') AS h) AS x
    $f$;
    IF EXISTS (SELECT 1 FROM events_legacy) THEN
        upper := pg_temp.time_bound(this_month + interval '1 month');
        EXECUTE format(
            'ALTER TABLE events ATTACH PARTITION events_legacy FOR VALUES FROM (MINVALUE) TO (%L)',
            upper);
        month := this_month + interval '1 month';
    ELSE
        DROP TABLE events_legacy;
        month := this_month;
    END IF;
    -- This month (unless the legacy partition has it) and the next two.
    WHILE month <= this_month + interval '2 months' LOOP
        lower := pg_temp.time_bound(month);
        upper := pg_temp.time_bound(month + interval '1 month');
        EXECUTE format('CREATE TABLE %I PARTITION OF events FOR VALUES FROM (%L) TO (%L)',
                       'events_p' || to_char(month AT TIME ZONE 'UTC', 'YYYYMM'), lower, upper);
        month := month + interval '1 month';
    END LOOP;
END
$$;

CREATE TABLE events_default PARTITION OF events DEFAULT;
