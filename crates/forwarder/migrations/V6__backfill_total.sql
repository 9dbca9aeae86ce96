-- A backfill's total: the events of its window, counted when it starts, so that its progress
-- (`considered` of `total`) is known from the first moment. Null for backfills started before.
ALTER TABLE backfills ADD COLUMN total bigint;
