-- Retention forgets persons idle past the cutoff. It used to find them by reading every identity
-- of a workspace (a cost that grew with the graph); now each person keeps the day it was last
-- used (an event named it, or an identifier was filed under it), and the idle ones are a range
-- of an index. Attribution steps keep the day up to date (a write per person per day at most).
ALTER TABLE persons ADD COLUMN used_on date;

-- Every person that holds identifiers has a row (steps have written one for each new person
-- since the first release; this covers any that lack one).
INSERT INTO persons (workspace_id, person_id)
SELECT DISTINCT i.workspace_id, i.person_id FROM identities i
ON CONFLICT (workspace_id, person_id) DO NOTHING;

-- The day each person (with the persons merged into it) last filed an identifier or had a click,
-- as retention judged it so far.
UPDATE persons p SET used_on = u.used_on
FROM (
    SELECT i.workspace_id, coalesce(m.merged_into, i.person_id) AS root,
           (max(greatest(i.created_at, coalesce(i.clicked_at, i.created_at)))
                AT TIME ZONE 'UTC')::date AS used_on
    FROM identities i
    LEFT JOIN persons m ON m.workspace_id = i.workspace_id AND m.person_id = i.person_id
    GROUP BY 1, 2
) AS u
WHERE p.workspace_id = u.workspace_id AND p.person_id = u.root AND p.merged_into IS NULL;

-- A person without identities is idle from the first round on.
UPDATE persons SET used_on = DATE '2000-01-01' WHERE used_on IS NULL AND merged_into IS NULL;

CREATE INDEX persons_idle ON persons (workspace_id, used_on) WHERE merged_into IS NULL;

-- An idle person's identifiers without a click (its customer ids, e-mails, phones); its clicks
-- are found through `identities_touches`.
CREATE INDEX identities_unclicked ON identities (workspace_id, person_id) WHERE clicked_at IS NULL;

-- Registered clicks past retention, oldest first.
CREATE INDEX clicks_age ON clicks (workspace_id, created_at);
