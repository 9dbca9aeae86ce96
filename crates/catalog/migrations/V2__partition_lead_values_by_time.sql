-- The values leads took are partitioned by time as the journal's events are (journal V2): range
-- partitions on the event id (a UUIDv7 that starts with the millisecond the event was received),
-- one per calendar month (UTC), named conversion_lead_values_pYYYYMM, with the bounds of
-- events_pYYYYMM, so that retention drops a month of them with its month of events. The primary
-- key stays (workspace_id, event_id), and every look-up by event id prunes to one partition.
--
-- The values stored before this migration stay in one partition, conversion_lead_values_legacy,
-- up to the start of next month (dropped once all of it is past retention; not kept when
-- empty). conversion_lead_values_default takes a row no partition covers; creating a partition
-- moves such rows into it (journal::retention::ensure_partitions).

ALTER TABLE conversion_lead_values RENAME TO conversion_lead_values_legacy;
ALTER TABLE conversion_lead_values_legacy RENAME CONSTRAINT conversion_lead_values_pkey
    TO conversion_lead_values_legacy_pkey;

CREATE TABLE conversion_lead_values
    (LIKE conversion_lead_values_legacy INCLUDING DEFAULTS INCLUDING CONSTRAINTS)
    PARTITION BY RANGE (event_id);
ALTER TABLE conversion_lead_values ADD PRIMARY KEY (workspace_id, event_id);

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
    IF EXISTS (SELECT 1 FROM conversion_lead_values_legacy) THEN
        upper := pg_temp.time_bound(this_month + interval '1 month');
        EXECUTE format(
            'ALTER TABLE conversion_lead_values ATTACH PARTITION conversion_lead_values_legacy
             FOR VALUES FROM (MINVALUE) TO (%L)', upper);
        month := this_month + interval '1 month';
    ELSE
        DROP TABLE conversion_lead_values_legacy;
        month := this_month;
    END IF;
    -- This month (unless the legacy partition has it) and the next two.
    WHILE month <= this_month + interval '2 months' LOOP
        lower := pg_temp.time_bound(month);
        upper := pg_temp.time_bound(month + interval '1 month');
        EXECUTE format('CREATE TABLE %I PARTITION OF conversion_lead_values FOR VALUES FROM (%L) TO (%L)',
                       'conversion_lead_values_p' || to_char(month AT TIME ZONE 'UTC', 'YYYYMM'),
                       lower, upper);
        month := month + interval '1 month';
    END LOOP;
END
$$;

CREATE TABLE conversion_lead_values_default PARTITION OF conversion_lead_values DEFAULT;
