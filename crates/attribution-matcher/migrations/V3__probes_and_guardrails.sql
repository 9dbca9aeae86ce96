-- Attribution at scale. A decision finds a person's last and first click by index probes bounded
-- by the attribution window instead of loading the person's clicks; merging persons writes the
-- merge (who joined whom), not the persons' pasts; an identifier shared by too many people stops
-- linking; and a decision references its clicks instead of copying them.

-- Persons. A person that was merged into another keeps its id and rows; `merged_into` names the
-- person it now belongs to (always one that was not merged itself), whose `members` list every
-- person merged into it. The counts are the identifiers of each guarded kind the person holds,
-- which the guardrail compares with CONVRELAY_IDENTITY_MAX_LINKS.
CREATE TABLE persons (
    workspace_id uuid    NOT NULL,
    person_id    uuid    NOT NULL,
    merged_into  uuid,
    members      uuid[]  NOT NULL DEFAULT '{}',
    customer_ids integer NOT NULL DEFAULT 0,
    emails       integer NOT NULL DEFAULT 0,
    phones       integer NOT NULL DEFAULT 0,
    PRIMARY KEY (workspace_id, person_id)
);

INSERT INTO persons (workspace_id, person_id, customer_ids, emails, phones)
SELECT workspace_id, person_id,
       count(*) FILTER (WHERE kind = 'customerExternalId'),
       count(*) FILTER (WHERE kind = 'email'),
       count(*) FILTER (WHERE kind = 'phone')
FROM identities
GROUP BY workspace_id, person_id;

-- A click of a person is the identity row of the identifier that owns it: the first ad-platform
-- click id of the event that brought it (source_event: the journal holds the click as the event
-- carried it), or the registered click an event named (the clicks row holds it). Clicks filed
-- before keep a copy (touchpoint).
ALTER TABLE identities
    ADD COLUMN clicked_at timestamptz,
    ADD COLUMN source_event uuid,
    ADD COLUMN touchpoint jsonb,
    ADD COLUMN too_common boolean NOT NULL DEFAULT false;

UPDATE identities i SET clicked_at = t.clicked_at, touchpoint = t.touchpoint
FROM touches t
WHERE t.workspace_id = i.workspace_id AND t.identifier = i.identifier;

INSERT INTO identities (workspace_id, identifier, kind, person_id, clicked_at, touchpoint)
SELECT t.workspace_id, t.identifier, CASE WHEN t.click_id IS NULL THEN 'gclid' ELSE 'clickId' END,
       t.person_id, t.clicked_at, t.touchpoint
FROM touches t
ON CONFLICT DO NOTHING;

DROP TABLE touches;

-- Merges no longer re-point identities, so nothing looks them up by person except the probes for
-- a person's clicks in a window.
DROP INDEX identities_person;
-- The identifier is part of the key so that "the last click" (latest time, then highest
-- identifier) is the first entry of a backward scan, however many clicks share a millisecond.
CREATE INDEX identities_touches ON identities (workspace_id, person_id, clicked_at, identifier)
    WHERE clicked_at IS NOT NULL;

-- Decisions reference their clicks (the identifier that owns each) and keep the routing stage;
-- the attribution and routes shown are rebuilt from them. Rows decided before keep their copies.
ALTER TABLE attributions
    ALTER COLUMN attribution DROP NOT NULL,
    ALTER COLUMN routes DROP NOT NULL,
    ALTER COLUMN occurred_at DROP NOT NULL,
    ADD COLUMN stage text,
    ADD COLUMN matched_by text,
    ADD COLUMN touch bytea,
    ADD COLUMN first_touch bytea,
    ADD COLUMN ignored text,
    DROP COLUMN received_at,
    DROP COLUMN updated_at;
