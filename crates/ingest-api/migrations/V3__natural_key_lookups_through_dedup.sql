-- Look-ups by invoiceId / leadId go through the dedup crate's natural keys, which already hold
-- a unique index on them: a second index here only cost every insert.
DROP INDEX IF EXISTS events_natural_key;
