-- Reports read rollups, never the events: each conversion's credit is shared among its touches
-- once, when the matcher decides (credit_shares), and added to per-day sums (report_rollups,
-- report_times) that retractions and restatements adjust. Every key starts with workspace_id.

-- One row per counted conversion: what its contribution to the rollups is made of. A retraction
-- that arrives before the conversion is credited leaves a row with `retracted` and no kind, so
-- that the late credit does not count it.
CREATE TABLE report_conversions (
    workspace_id uuid        NOT NULL,
    event_id     uuid        NOT NULL,
    kind         text        CHECK (kind IN ('lead', 'sale')),
    occurred_at  timestamptz,
    event_name   text,
    tier         text        CHECK (tier IN ('macro', 'micro')),
    amount       numeric,
    currency     text,
    retracted    boolean     NOT NULL DEFAULT false,
    credited_at  timestamptz,
    PRIMARY KEY (workspace_id, event_id)
);

-- The touches of a conversion and each one's share under every model; the shares of one model
-- sum to exactly 1 over a conversion's rows. A conversion without a touch has one row (n = 0,
-- owner NULL, channel 'direct') that takes everything.
CREATE TABLE credit_shares (
    workspace_id   uuid        NOT NULL,
    event_id       uuid        NOT NULL,
    n              smallint    NOT NULL,
    owner          bytea,
    clicked_at     timestamptz,
    channel        text        NOT NULL,
    source         text,
    medium         text,
    campaign       text,
    last_click     numeric     NOT NULL,
    first_click    numeric     NOT NULL,
    linear         numeric     NOT NULL,
    position_based numeric     NOT NULL,
    time_decay     numeric     NOT NULL,
    PRIMARY KEY (workspace_id, event_id, n)
);

-- Per UTC day, model, grouping (0 channel, 1 source, 2 medium, 3 campaign, 4 eventName) and its
-- key, tier and currency ('' for a conversion without a value): fractional leads and sales,
-- revenue (sales) and value (sales and valued leads).
CREATE TABLE report_rollups (
    workspace_id uuid     NOT NULL,
    model        smallint NOT NULL,
    dim          smallint NOT NULL,
    day          date     NOT NULL,
    key          text     NOT NULL,
    tier         text     NOT NULL,
    currency     text     NOT NULL,
    leads        numeric  NOT NULL,
    sales        numeric  NOT NULL,
    revenue      numeric  NOT NULL,
    value        numeric  NOT NULL,
    PRIMARY KEY (workspace_id, model, dim, day, key, tier, currency)
);

-- Time from touch to conversion as a histogram per day and group: bucket 0 holds waits under a
-- second, bucket b >= 1 waits in [1.5^(b-1), 1.5^b) seconds; the weight is the touch's share,
-- `seconds` the sum of share times wait, so that a percentile reads as the mean wait of its
-- bucket (exact when the bucket holds one wait, within 22 % otherwise). Floating point: a
-- percentile needs no exact sums, and reports sum hundreds of thousands of these rows.
CREATE TABLE report_times (
    workspace_id uuid     NOT NULL,
    model        smallint NOT NULL,
    dim          smallint NOT NULL,
    day          date     NOT NULL,
    key          text     NOT NULL,
    tier         text     NOT NULL,
    bucket       smallint NOT NULL,
    weight       float8   NOT NULL,
    seconds      float8   NOT NULL,
    -- Buckets before tiers: a daily series reads each group's buckets in order, without a sort.
    PRIMARY KEY (workspace_id, model, dim, day, key, bucket, tier)
);

-- Registered clicks per UTC day and group (dims 0-3 only: a click has no event name).
CREATE TABLE report_clicks (
    workspace_id uuid     NOT NULL,
    dim          smallint NOT NULL,
    day          date     NOT NULL,
    key          text     NOT NULL,
    clicks       bigint   NOT NULL,
    PRIMARY KEY (workspace_id, dim, day, key)
);
