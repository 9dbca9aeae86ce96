-- A conversion's credit is kept as its touches, on its report_conversions row, instead of one
-- credit_shares row per touch with its shares: a repeat customer's sale with forty touches of one
-- campaign took forty rows (about 11 KB); it now keeps a few hundred bytes. The shares are not
-- stored: the models' rules give them again from the touches' click times and the conversion's
-- time, in the credit stage, in a retraction or restatement, and in GET /v1/events/{id}/credit.
--
-- touched_at    the touches' click times, oldest first (NULL: no touch; a credited conversion
--               without a touch is direct)
-- groups        each distinct group of the touches as four values: channel, source, medium,
--               campaign (NULL without a touch)
-- touch_groups  the group (0-based) of each touch; NULL when every touch is of the first
-- last_touch    the index (0-based) in touched_at of the matcher's touchpoint (the last click)
-- first_touch   the index of its first touch
ALTER TABLE report_conversions
    ADD COLUMN last_touch   smallint,
    ADD COLUMN first_touch  smallint,
    ADD COLUMN touched_at   timestamptz[],
    ADD COLUMN groups       text[],
    ADD COLUMN touch_groups smallint[];

-- The touch rows of the old table, numbered by group in order of first appearance.
CREATE TEMPORARY TABLE old_touches AS
SELECT t.*,
       (dense_rank() OVER (PARTITION BY t.workspace_id, t.event_id ORDER BY t.first_n) - 1)::smallint
           AS g
FROM (
    SELECT workspace_id, event_id, n, clicked_at, channel, source, medium, campaign,
           last_click = 1 AS is_last, first_click = 1 AS is_first,
           min(n) OVER (PARTITION BY workspace_id, event_id, channel, source, medium, campaign)
               AS first_n
    FROM credit_shares
    WHERE clicked_at IS NOT NULL
) AS t;

UPDATE report_conversions AS r
SET last_touch = t.last_touch, first_touch = t.first_touch, touched_at = t.touched_at,
    groups = g.groups, touch_groups = CASE WHEN t.groups_used > 1 THEN t.touch_groups END
FROM (
    SELECT workspace_id, event_id,
           (array_position(array_agg(is_last ORDER BY n), true) - 1)::smallint AS last_touch,
           (array_position(array_agg(is_first ORDER BY n), true) - 1)::smallint AS first_touch,
           array_agg(clicked_at ORDER BY n) AS touched_at,
           array_agg(g ORDER BY n) AS touch_groups,
           count(DISTINCT g) AS groups_used
    FROM old_touches
    GROUP BY workspace_id, event_id
) AS t
JOIN (
    SELECT o.workspace_id, o.event_id, array_agg(v.value ORDER BY o.g, v.k) AS groups
    FROM old_touches o
    CROSS JOIN LATERAL unnest(ARRAY[o.channel, o.source, o.medium, o.campaign])
        WITH ORDINALITY AS v(value, k)
    WHERE o.n = o.first_n
    GROUP BY o.workspace_id, o.event_id
) AS g ON g.workspace_id = t.workspace_id AND g.event_id = t.event_id
WHERE r.workspace_id = t.workspace_id AND r.event_id = t.event_id;

-- A conversion is credited when it has credited_at (set with its shares before); one without
-- shares (a retraction that came first) stays uncredited.
UPDATE report_conversions AS r SET credited_at = NULL
WHERE r.credited_at IS NOT NULL
  AND NOT EXISTS (
      SELECT 1 FROM credit_shares s WHERE s.workspace_id = r.workspace_id AND s.event_id = r.event_id);

DROP TABLE old_touches;
DROP TABLE credit_shares;
