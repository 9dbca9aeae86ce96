-- A worker keeps the part of a workspace's identity graph that names people (customer ids,
-- emails, phones, and their persons) between steps. Its copy is right only while nobody else
-- writes the graph, so each workspace names here the last writer that keeps a copy: a step whose
-- copy is not the one named drops it, and every other writer of the graph (a step without a
-- copy, an erasure, a retention round) clears the name in the transaction that writes.
CREATE TABLE graph_writers (
    workspace_id uuid PRIMARY KEY,
    writer uuid
);
