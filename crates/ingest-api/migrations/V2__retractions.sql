-- A retracted event (a refund, a re-opened deal) leaves reports; the row stays as the record.
ALTER TABLE events ADD COLUMN retracted_at timestamptz, ADD COLUMN retract_reason text;
