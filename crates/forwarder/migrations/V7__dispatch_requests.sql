-- One row per platform request that decided attempts: its answer's excerpt is stored once for
-- the whole batch the request carried, not once per conversion. An attempt names the request
-- that decided it (`request_id`); attempts decided without a request (refused before sending,
-- a lost lease) name none. `last_event_id` is the greatest event id among the conversions the
-- request carried: retention deletes a request with the dispatches of its last event.
CREATE TABLE dispatch_requests (
    workspace_id     uuid        NOT NULL,
    id               uuid        NOT NULL,
    destination_id   uuid        NOT NULL,
    at               timestamptz NOT NULL,
    duration_ms      integer     NOT NULL,
    http_status      smallint,
    response_excerpt text,
    last_event_id    uuid        NOT NULL,
    PRIMARY KEY (workspace_id, id)
);
CREATE INDEX dispatch_requests_by_last_event ON dispatch_requests (workspace_id, last_event_id);

ALTER TABLE dispatch_attempts ADD COLUMN request_id uuid;

-- Attempts recorded before: one request per distinct answer of a destination at one time (the
-- attempts of one request share its start, duration, status and excerpt).
INSERT INTO dispatch_requests
    (workspace_id, id, destination_id, at, duration_ms, http_status, response_excerpt, last_event_id)
SELECT a.workspace_id, gen_random_uuid(), d.destination_id, a.at, a.duration_ms, a.http_status,
       a.response_excerpt, (array_agg(d.event_id ORDER BY d.event_id DESC))[1]
FROM dispatch_attempts a
JOIN dispatches d ON d.workspace_id = a.workspace_id AND d.id = a.dispatch_id
WHERE a.response_excerpt IS NOT NULL
GROUP BY a.workspace_id, d.destination_id, a.at, a.duration_ms, a.http_status, a.response_excerpt;

UPDATE dispatch_attempts a SET request_id = q.id
FROM dispatches d, dispatch_requests q
WHERE a.response_excerpt IS NOT NULL
  AND d.workspace_id = a.workspace_id AND d.id = a.dispatch_id
  AND q.workspace_id = a.workspace_id AND q.destination_id = d.destination_id
  AND q.at = a.at AND q.duration_ms = a.duration_ms
  AND q.http_status IS NOT DISTINCT FROM a.http_status
  AND q.response_excerpt = a.response_excerpt;

ALTER TABLE dispatch_attempts DROP COLUMN response_excerpt;
