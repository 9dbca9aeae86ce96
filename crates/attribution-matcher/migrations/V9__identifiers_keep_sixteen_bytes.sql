-- The identity graph keeps an identifier as the first 16 bytes of SHA-256("<kind>:<value>")
-- instead of all 32 (a collision would need some 2^64 identifiers in one workspace). Every click
-- is a row of identities, a key of its primary key and an entry of identities_touches, and a
-- decision names its clicks: a repeat customer's sale kept about 100 bytes less, and the indexes
-- that every step writes are a fifth smaller.
--
-- The head of a stored digest is the digest as now computed, so the rows are cut in place.
UPDATE identities SET identifier = substring(identifier FROM 1 FOR 16)
WHERE length(identifier) > 16;

UPDATE clicks SET identifier = substring(identifier FROM 1 FOR 16)
WHERE length(identifier) > 16;

UPDATE match_queue SET click_identifier = substring(click_identifier FROM 1 FOR 16)
WHERE length(click_identifier) > 16;

UPDATE attributions
SET named_click = substring(named_click FROM 1 FOR 16),
    touch = substring(touch FROM 1 FOR 16),
    first_touch = substring(first_touch FROM 1 FOR 16)
WHERE length(named_click) > 16 OR length(touch) > 16 OR length(first_touch) > 16;
