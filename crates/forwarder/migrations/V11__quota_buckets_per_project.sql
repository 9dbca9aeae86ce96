-- A platform counts its request quota against what the requests are made with (Data Manager:
-- 300 requests a minute per Google Cloud project, the OAuth client's), whichever workspaces send
-- through it. The token buckets were one per workspace, so two workspaces on one Cloud project
-- could together exceed it; now there is one per quota, shared by every workspace and every
-- worker process. A bucket holds no more than a tenth of a minute's tokens: starting over full
-- loses nothing.
CREATE TABLE quota_buckets (
    bucket     text        PRIMARY KEY,
    tokens     float8      NOT NULL,
    updated_at timestamptz NOT NULL
);

DROP TABLE pacing_buckets;
