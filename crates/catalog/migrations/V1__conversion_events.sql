-- The conversion-events catalog: one definition per eventName a workspace sends. `tier` and
-- `event_name` are also read by the reports crate (macro / micro conversions). `destinations`
-- maps destination ids (wire form, dst_…) to {enabled, conversionAction?, eventName?}, each
-- checked against its destination's platform when written.
CREATE TABLE conversion_events (
    workspace_id   uuid        NOT NULL,
    event_name     text        NOT NULL,
    kind           text        NOT NULL CHECK (kind IN ('lead', 'sale')),
    tier           text        NOT NULL CHECK (tier IN ('macro', 'micro')),
    description    text,
    owner          text,
    value_amount   numeric,
    value_currency text,
    value_estimate text        CHECK (value_estimate IN ('close_rate')),
    destinations   jsonb       NOT NULL DEFAULT '{}'::jsonb,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace_id, event_name),
    CHECK ((value_amount IS NULL) = (value_currency IS NULL)),
    CHECK (value_amount IS NULL OR value_estimate IS NULL)
);

-- A workspace's latest close-rate estimate of a lead's value: its sales / leads over the
-- trailing window times its median sale amount, per currency (`currencies`: [{currency,
-- sales, medianSale}]); `amount`/`currency` is the estimate of the currency with the most
-- sales, null when the data is too thin (`reason` says why).
CREATE TABLE conversion_value_estimates (
    workspace_id uuid        NOT NULL,
    computed_at  timestamptz NOT NULL,
    window_start timestamptz NOT NULL,
    window_end   timestamptz NOT NULL,
    window_days  integer     NOT NULL,
    leads        bigint      NOT NULL,
    capped       boolean     NOT NULL,
    currencies   jsonb       NOT NULL,
    amount       numeric,
    currency     text,
    reason       text,
    PRIMARY KEY (workspace_id)
);

-- The value a lead without an amount took from its definition, frozen when attribution first
-- decided it, so that its dispatches and the reports count the same value even after the
-- definition or the estimate changes.
CREATE TABLE conversion_lead_values (
    workspace_id uuid        NOT NULL,
    event_id     uuid        NOT NULL,
    event_name   text        NOT NULL,
    amount       numeric     NOT NULL,
    currency     text        NOT NULL,
    source       text        NOT NULL CHECK (source IN ('fixed', 'close_rate')),
    applied_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace_id, event_id)
);
