-- The report stage reads every click of a person in a conversion's window (up to 100 of them, in
-- `clicked_at` order) and needs of each only its owner, its time and the id of its groups: with
-- the groups' id in the index, that read is an index-only scan instead of one heap fetch per
-- click (twice as fast, measured on a repeat-customer load). Clicks filed without a group id
-- (before groups existed, or registered ones) are still read from the heap, one by one.
CREATE INDEX identities_touches_grouped ON identities (workspace_id, person_id, clicked_at, identifier)
    INCLUDE (click_group) WHERE clicked_at IS NOT NULL;
DROP INDEX identities_touches;
ALTER INDEX identities_touches_grouped RENAME TO identities_touches;
