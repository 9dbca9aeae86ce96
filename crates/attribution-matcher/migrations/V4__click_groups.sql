-- A click an event carried is filed with the id of its groups (channel, utm source, medium,
-- campaign), kept once per workspace in click_groups: the report stage reads a touch's groups
-- from here instead of reading the event that carried the click from the journal, which was
-- most of what crediting a repeat customer's conversion cost. Clicks filed before keep
-- click_group NULL and are read from the journal as before.
ALTER TABLE identities ADD COLUMN click_group bigint;

CREATE TABLE click_groups (
    workspace_id uuid   NOT NULL,
    id           bigint NOT NULL,
    channel      text   NOT NULL,
    source       text,
    medium       text,
    campaign     text,
    PRIMARY KEY (workspace_id, id)
);
