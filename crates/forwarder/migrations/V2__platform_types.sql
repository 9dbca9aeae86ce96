-- Every destination type of the API contract: the platforms' adapters decide which of them are
-- served, the tables only keep out what no version of the API has.
ALTER TABLE destinations DROP CONSTRAINT destinations_type_check;
ALTER TABLE destinations ADD CONSTRAINT destinations_type_check CHECK (type IN (
    'google_ads', 'meta', 'tiktok', 'microsoft_ads', 'linkedin', 'reddit', 'snapchat', 'pinterest',
    'webhook'));

ALTER TABLE dispatches DROP CONSTRAINT dispatches_destination_type_check;
ALTER TABLE dispatches ADD CONSTRAINT dispatches_destination_type_check CHECK (destination_type IN (
    'google_ads', 'meta', 'tiktok', 'microsoft_ads', 'linkedin', 'reddit', 'snapchat', 'pinterest',
    'webhook'));
