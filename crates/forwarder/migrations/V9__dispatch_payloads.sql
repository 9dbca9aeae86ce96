-- A dispatch's conversion as routed (`payload`) and its routing decision are written once, when
-- it is queued, but a dispatch row is rewritten whole on every transition (claimed, recorded),
-- and with them it was about 960 bytes a version. They move to a table of their own, keyed like
-- the dispatch, so that a transition writes a row of its status and times only. A row here is
-- rewritten only when a conversion not sent yet is restated (its new value goes out), deleted
-- with its dispatch by retention, and deleted when its person is erased (the dispatch stays).
CREATE TABLE dispatch_payloads (
    workspace_id uuid  NOT NULL,
    dispatch_id  uuid  NOT NULL,
    payload      jsonb NOT NULL,
    routing      jsonb,
    PRIMARY KEY (workspace_id, dispatch_id)
);

-- Dispatches of erased persons kept `{}` and no routing: they get no row, as they will from now on.
INSERT INTO dispatch_payloads (workspace_id, dispatch_id, payload, routing)
SELECT workspace_id, id, payload, routing FROM dispatches
WHERE payload <> '{}'::jsonb OR routing IS NOT NULL;

ALTER TABLE dispatches DROP COLUMN payload, DROP COLUMN routing;
