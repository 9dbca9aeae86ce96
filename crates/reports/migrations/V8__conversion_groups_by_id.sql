-- A conversion's row names its touches' groups by their ids in click_groups (group_ids, in the
-- order the touches' group indexes count) instead of keeping their four values (groups): a
-- conversion with touches of one campaign kept about 77 bytes of names, it keeps about 29.
-- click_groups rows are never deleted, and the report stage writes the groups it meets that the
-- matcher had not filed.
--
-- Rows credited before keep their values in groups (group_ids NULL) and read as before; a row
-- credited again moves to ids.
ALTER TABLE report_conversions ADD COLUMN group_ids bigint[];
