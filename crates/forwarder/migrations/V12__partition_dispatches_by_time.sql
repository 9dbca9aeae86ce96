-- The dispatch tables are range-partitioned by time, as the journal's events are (journal V2),
-- so that retention drops a month of them whole instead of deleting rows.
--
-- A dispatch's id now begins with its event's time: the first 48 bits are the millisecond the
-- event was received (those of the event id), the rest are made from the event, the destination,
-- the kind and the revision (forwarder::queue::dispatch_id). So `dispatches`, `dispatch_attempts` and
-- `dispatch_payloads` are partitioned on the dispatch id with the bounds of events_pYYYYMM, a
-- month of them goes with its month of events, and every look-up by dispatch id prunes to one
-- partition. The id being made from what the dispatch is, the primary key now refuses a second
-- dispatch of one event, destination, kind and revision, which the unique constraint did (a
-- partitioned table's unique constraint must include its partition key).
--
-- `dispatch_requests` is partitioned on its own id, a UUIDv7 of the time the request was made,
-- and goes by its own months: a request is never older than the attempts it decided, so it
-- outlives them. Its `last_event_id`, which retention used to find it, goes.
--
-- The rows stored before this migration stay in one partition per table, <table>_legacy, which
-- covers everything up to the start of next month (dropped once all of it is past retention; not
-- kept when empty). dispatches_legacy keeps its own unique constraint: the dispatches it holds
-- have ids of the time they were queued, and a new dispatch of one of their events lands in it
-- too (its id begins with the event's time), so the queue's inserts (`ON CONFLICT DO NOTHING`)
-- still find the older one. <table>_default takes a row no partition covers; creating a
-- partition moves such rows into it (journal::retention::ensure_partitions).

CREATE OR REPLACE FUNCTION pg_temp.time_bound(t timestamptz) RETURNS uuid LANGUAGE sql IMMUTABLE AS $f$
    SELECT (substr(h, 1, 8) || '-' || substr(h, 9, 4) || '-0000-0000-000000000000')::uuid
    FROM (SELECT lpad(to_hex(floor(extract(epoch FROM t) * 1000)::bigint), 12, '0') AS h) AS x
$f$;

-- Attaches <table>_legacy under <table> when it holds rows (else drops it), creates this month
-- (unless the legacy partition has it) and the next two, and the default partition.
CREATE OR REPLACE FUNCTION pg_temp.partition_by_month(tab text, options text) RETURNS void
LANGUAGE plpgsql AS $f$
DECLARE
    this_month timestamptz := date_trunc('month', now(), 'UTC');
    month      timestamptz;
    has_rows   boolean;
BEGIN
    EXECUTE format('SELECT EXISTS (SELECT 1 FROM %I)', tab || '_legacy') INTO has_rows;
    IF has_rows THEN
        EXECUTE format('ALTER TABLE %I ATTACH PARTITION %I FOR VALUES FROM (MINVALUE) TO (%L)',
                       tab, tab || '_legacy', pg_temp.time_bound(this_month + interval '1 month'));
        month := this_month + interval '1 month';
    ELSE
        EXECUTE format('DROP TABLE %I', tab || '_legacy');
        month := this_month;
    END IF;
    WHILE month <= this_month + interval '2 months' LOOP
        EXECUTE format('CREATE TABLE %I PARTITION OF %I FOR VALUES FROM (%L) TO (%L) %s',
                       tab || '_p' || to_char(month AT TIME ZONE 'UTC', 'YYYYMM'), tab,
                       pg_temp.time_bound(month), pg_temp.time_bound(month + interval '1 month'),
                       options);
        month := month + interval '1 month';
    END LOOP;
    EXECUTE format('CREATE TABLE %I PARTITION OF %I DEFAULT %s', tab || '_default', tab, options);
END
$f$;

-- dispatches
ALTER TABLE dispatches RENAME TO dispatches_legacy;
ALTER TABLE dispatches_legacy RENAME CONSTRAINT dispatches_pkey TO dispatches_legacy_pkey;
ALTER TABLE dispatches_legacy RENAME CONSTRAINT dispatches_one_per_revision
    TO dispatches_legacy_one_per_revision;
ALTER INDEX dispatches_due RENAME TO dispatches_legacy_due;
ALTER INDEX dispatches_by_status RENAME TO dispatches_legacy_by_status;
ALTER INDEX dispatches_by_destination RENAME TO dispatches_legacy_by_destination;
ALTER INDEX dispatches_by_confirmation RENAME TO dispatches_legacy_by_confirmation;
ALTER INDEX dispatches_by_upload_request RENAME TO dispatches_legacy_by_upload_request;

CREATE TABLE dispatches (LIKE dispatches_legacy INCLUDING DEFAULTS INCLUDING CONSTRAINTS)
    PARTITION BY RANGE (id);
ALTER TABLE dispatches ADD PRIMARY KEY (workspace_id, id);
-- An event's dispatches (its page, a retraction, a restatement, an erasure).
CREATE INDEX dispatches_by_event ON dispatches (workspace_id, event_id);
CREATE INDEX dispatches_due ON dispatches (backfill, due_at)
    WHERE status IN ('queued', 'retrying', 'in_flight');
CREATE INDEX dispatches_by_status ON dispatches (workspace_id, status, id)
    WHERE status NOT IN ('succeeded', 'in_flight');
CREATE INDEX dispatches_by_destination ON dispatches (workspace_id, destination_id, id);
CREATE INDEX dispatches_by_confirmation ON dispatches (workspace_id, confirmation, id)
    WHERE confirmation IN ('pending', 'partially_failed', 'failed');
CREATE INDEX dispatches_by_upload_request
    ON dispatches (workspace_id, destination_id, confirmation_request)
    WHERE confirmation_request IS NOT NULL;
-- A partitioned table takes no storage parameters: each partition gets V8's fillfactor.
SELECT pg_temp.partition_by_month('dispatches', 'WITH (fillfactor = 70)');

-- dispatch_attempts
ALTER TABLE dispatch_attempts RENAME TO dispatch_attempts_legacy;
ALTER TABLE dispatch_attempts_legacy RENAME CONSTRAINT dispatch_attempts_pkey
    TO dispatch_attempts_legacy_pkey;
CREATE TABLE dispatch_attempts (LIKE dispatch_attempts_legacy INCLUDING DEFAULTS INCLUDING CONSTRAINTS)
    PARTITION BY RANGE (dispatch_id);
ALTER TABLE dispatch_attempts ADD PRIMARY KEY (workspace_id, dispatch_id, attempt);
SELECT pg_temp.partition_by_month('dispatch_attempts', '');

-- dispatch_payloads
ALTER TABLE dispatch_payloads RENAME TO dispatch_payloads_legacy;
ALTER TABLE dispatch_payloads_legacy RENAME CONSTRAINT dispatch_payloads_pkey
    TO dispatch_payloads_legacy_pkey;
CREATE TABLE dispatch_payloads (LIKE dispatch_payloads_legacy INCLUDING DEFAULTS INCLUDING CONSTRAINTS)
    PARTITION BY RANGE (dispatch_id);
ALTER TABLE dispatch_payloads ADD PRIMARY KEY (workspace_id, dispatch_id);
SELECT pg_temp.partition_by_month('dispatch_payloads', '');

-- dispatch_requests
-- The requests V7 made of the attempts recorded before it got random ids (gen_random_uuid), which
-- may sort past any month: they are given ids that begin with the time they were made, as every
-- later one does (the rest of the old id kept), so that the legacy partition holds them; their
-- attempts follow.
CREATE TEMP TABLE request_rekeys AS
SELECT workspace_id, id AS old_id,
       (lpad(to_hex(floor(extract(epoch FROM at) * 1000)::bigint), 12, '0')
        || substr(replace(id::text, '-', ''), 13))::uuid AS new_id
FROM dispatch_requests
WHERE id >= pg_temp.time_bound(date_trunc('month', now(), 'UTC') + interval '1 month');
UPDATE dispatch_attempts a SET request_id = r.new_id
FROM request_rekeys r
WHERE a.workspace_id = r.workspace_id AND a.request_id = r.old_id;
UPDATE dispatch_requests q SET id = r.new_id
FROM request_rekeys r
WHERE q.workspace_id = r.workspace_id AND q.id = r.old_id;
DROP TABLE request_rekeys;

DROP INDEX dispatch_requests_by_last_event;
ALTER TABLE dispatch_requests DROP COLUMN last_event_id;
ALTER TABLE dispatch_requests RENAME TO dispatch_requests_legacy;
ALTER TABLE dispatch_requests_legacy RENAME CONSTRAINT dispatch_requests_pkey
    TO dispatch_requests_legacy_pkey;
CREATE TABLE dispatch_requests (LIKE dispatch_requests_legacy INCLUDING DEFAULTS INCLUDING CONSTRAINTS)
    PARTITION BY RANGE (id);
ALTER TABLE dispatch_requests ADD PRIMARY KEY (workspace_id, id);
SELECT pg_temp.partition_by_month('dispatch_requests', '');

-- Upload checks (one per upload request, not per conversion) stay one table; retention deletes
-- those made before the cutoff.
CREATE INDEX upload_checks_age ON upload_checks (workspace_id, created_at);
