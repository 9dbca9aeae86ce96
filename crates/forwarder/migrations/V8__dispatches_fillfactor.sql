-- A dispatch row gets two new versions on its way out (claimed, then recorded). Room left on
-- each page lets them stay beside the row instead of dirtying another page each.
ALTER TABLE dispatches SET (fillfactor = 70);
