-- Decisions are partitioned by time as the journal's events are (journal V2): range partitions
-- on the event id (a UUIDv7 that starts with the millisecond the event was received), one per
-- calendar month (UTC), named attributions_pYYYYMM, with the same bounds as events_pYYYYMM, so
-- that retention drops a month of decisions with its month of events. The primary key stays
-- (workspace_id, event_id), and every look-up by event id prunes to one partition.
--
-- The decisions stored before this migration stay in one partition, attributions_legacy, up to
-- the start of next month (dropped once all of it is past retention; not kept when empty).
-- attributions_default takes a decision no partition covers; creating a partition moves such
-- rows into it (journal::retention::ensure_partitions).

ALTER TABLE attributions RENAME TO attributions_legacy;
ALTER TABLE attributions_legacy RENAME CONSTRAINT attributions_pkey TO attributions_legacy_pkey;
ALTER INDEX attributions_pending_person RENAME TO attributions_legacy_pending_person;
ALTER INDEX attributions_pending_until RENAME TO attributions_legacy_pending_until;
ALTER INDEX attributions_pending_expiry RENAME TO attributions_legacy_pending_expiry;

CREATE TABLE attributions (LIKE attributions_legacy INCLUDING DEFAULTS INCLUDING CONSTRAINTS)
    PARTITION BY RANGE (event_id);
ALTER TABLE attributions ADD PRIMARY KEY (workspace_id, event_id);
CREATE INDEX attributions_pending_person ON attributions (workspace_id, person_id, occurred_at)
    WHERE status = 'pending';
CREATE INDEX attributions_pending_until ON attributions (pending_until)
    WHERE status = 'pending';
CREATE INDEX attributions_pending_expiry ON attributions (workspace_id, pending_until)
    WHERE status = 'pending';

DO $$
DECLARE
    this_month timestamptz := date_trunc('month', now(), 'UTC');
    month      timestamptz;
    lower      uuid;
    upper      uuid;
BEGIN
    -- The smallest UUID of a millisecond, as in journal::retention::time_bound.
    CREATE OR REPLACE FUNCTION pg_temp.time_bound(t timestamptz) RETURNS uuid LANGUAGE sql IMMUTABLE AS $f$
        SELECT (substr(h, 1, 8) || '-' || substr(h, 9, 4) || '-0000-0000-000000000000')::uuid
        FROM (SELECT lpad(to_hex(floor(extract(epoch FROM t) * 1000)::bigint), 12, '0') AS h) AS x
    $f$;
    IF EXISTS (SELECT 1 FROM attributions_legacy) THEN
        upper := pg_temp.time_bound(this_month + interval '1 month');
        EXECUTE format(
            'ALTER TABLE attributions ATTACH PARTITION attributions_legacy FOR VALUES FROM (MINVALUE) TO (%L)',
            upper);
        month := this_month + interval '1 month';
    ELSE
        DROP TABLE attributions_legacy;
        month := this_month;
    END IF;
    -- This month (unless the legacy partition has it) and the next two.
    WHILE month <= this_month + interval '2 months' LOOP
        lower := pg_temp.time_bound(month);
        upper := pg_temp.time_bound(month + interval '1 month');
        EXECUTE format('CREATE TABLE %I PARTITION OF attributions FOR VALUES FROM (%L) TO (%L)',
                       'attributions_p' || to_char(month AT TIME ZONE 'UTC', 'YYYYMM'), lower, upper);
        month := month + interval '1 month';
    END LOOP;
END
$$;

CREATE TABLE attributions_default PARTITION OF attributions DEFAULT;
