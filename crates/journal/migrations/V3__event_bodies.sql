-- An event's body is kept compressed (`body bytea`: a format byte, then a zstd frame made
-- against a dictionary of the wire format's field names; see the journal's body module) instead
-- of as jsonb: a 450-byte sale took about 630 bytes, it takes about 250.
--
-- Events stored before keep their `payload jsonb` (their body is NULL) and read as before; they
-- are not rewritten here, which on a large journal would hold the table for as long as it takes,
-- and they leave with their partitions as retention drops them. New events have a body and no
-- payload.
ALTER TABLE events ADD COLUMN body bytea;
ALTER TABLE events ALTER COLUMN payload DROP NOT NULL;
