-- Convrelay on Citus: every table distributed by workspace_id, the few global ones as reference
-- tables. Run it on the coordinator after `convrelay migrate`, and again after every upgrade
-- that adds a table: each line does its work only once (a table Citus already holds is
-- skipped), so the script can be re-run at any time.
--
--   convrelay migrate && psql "$DATABASE_URL" -v ON_ERROR_STOP=1 -f deploy/citus.sql
--
-- The table list is checked against the catalog of a fully migrated database by
-- crates/ingest-api/tests/scale_out.rs: a table added without a line here fails `make test`.

CREATE EXTENSION IF NOT EXISTS citus;

-- Reference tables: small, global, read before a workspace is known (an API key is looked up by
-- its prefix) or written only by migrations. Citus keeps a full copy on every node.
SELECT create_reference_table('workspaces')
WHERE NOT EXISTS (SELECT 1 FROM pg_dist_partition WHERE logicalrelid = 'workspaces'::regclass);
SELECT create_reference_table('api_keys')
WHERE NOT EXISTS (SELECT 1 FROM pg_dist_partition WHERE logicalrelid = 'api_keys'::regclass);
-- A platform's request quota, shared by the workspaces that send through one Cloud project:
-- a row per quota, a few writes a second.
SELECT create_reference_table('quota_buckets')
WHERE NOT EXISTS (SELECT 1 FROM pg_dist_partition WHERE logicalrelid = 'quota_buckets'::regclass);
SELECT create_reference_table('events_schema_history')
WHERE NOT EXISTS (SELECT 1 FROM pg_dist_partition WHERE logicalrelid = 'events_schema_history'::regclass);
SELECT create_reference_table('journal_schema_history')
WHERE NOT EXISTS (SELECT 1 FROM pg_dist_partition WHERE logicalrelid = 'journal_schema_history'::regclass);
SELECT create_reference_table('dedup_schema_history')
WHERE NOT EXISTS (SELECT 1 FROM pg_dist_partition WHERE logicalrelid = 'dedup_schema_history'::regclass);
SELECT create_reference_table('matcher_schema_history')
WHERE NOT EXISTS (SELECT 1 FROM pg_dist_partition WHERE logicalrelid = 'matcher_schema_history'::regclass);
SELECT create_reference_table('forwarder_schema_history')
WHERE NOT EXISTS (SELECT 1 FROM pg_dist_partition WHERE logicalrelid = 'forwarder_schema_history'::regclass);
SELECT create_reference_table('reports_schema_history')
WHERE NOT EXISTS (SELECT 1 FROM pg_dist_partition WHERE logicalrelid = 'reports_schema_history'::regclass);
SELECT create_reference_table('catalog_schema_history')
WHERE NOT EXISTS (SELECT 1 FROM pg_dist_partition WHERE logicalrelid = 'catalog_schema_history'::regclass);

-- Distributed tables, all by workspace_id and co-located with events: a workspace's rows of
-- every table live on one node, so its joins and transactions stay there. A partitioned table's
-- partitions follow their parent, those attached later included.
--
-- `events` is range-partitioned by time (its id, a UUIDv7): one partition per calendar month,
-- events_default for what no month covers, and events_legacy for rows stored before
-- partitioning. The workers create the months ahead (CREATE TABLE … then ATTACH PARTITION) and
-- drop those past CONVRELAY_RETENTION_DAYS; on Citus each new month is distributed and
-- co-located with its parent as it is attached, so nothing is named here but `events`. The
-- same holds for the other tables partitioned by month (attributions, report_conversions,
-- conversion_lead_values, dispatches, dispatch_attempts, dispatch_payloads, dispatch_requests).
SELECT create_distributed_table('events', 'workspace_id')
WHERE NOT EXISTS (SELECT 1 FROM pg_dist_partition WHERE logicalrelid = 'events'::regclass);
SELECT create_distributed_table('natural_keys', 'workspace_id', colocate_with => 'events')
WHERE NOT EXISTS (SELECT 1 FROM pg_dist_partition WHERE logicalrelid = 'natural_keys'::regclass);
SELECT create_distributed_table('idempotency_keys', 'workspace_id', colocate_with => 'events')
WHERE NOT EXISTS (SELECT 1 FROM pg_dist_partition WHERE logicalrelid = 'idempotency_keys'::regclass);
SELECT create_distributed_table('matcher_settings', 'workspace_id', colocate_with => 'events')
WHERE NOT EXISTS (SELECT 1 FROM pg_dist_partition WHERE logicalrelid = 'matcher_settings'::regclass);
SELECT create_distributed_table('clicks', 'workspace_id', colocate_with => 'events')
WHERE NOT EXISTS (SELECT 1 FROM pg_dist_partition WHERE logicalrelid = 'clicks'::regclass);
SELECT create_distributed_table('identities', 'workspace_id', colocate_with => 'events')
WHERE NOT EXISTS (SELECT 1 FROM pg_dist_partition WHERE logicalrelid = 'identities'::regclass);
SELECT create_distributed_table('click_groups', 'workspace_id', colocate_with => 'events')
WHERE NOT EXISTS (SELECT 1 FROM pg_dist_partition WHERE logicalrelid = 'click_groups'::regclass);
SELECT create_distributed_table('persons', 'workspace_id', colocate_with => 'events')
WHERE NOT EXISTS (SELECT 1 FROM pg_dist_partition WHERE logicalrelid = 'persons'::regclass);
SELECT create_distributed_table('graph_writers', 'workspace_id', colocate_with => 'events')
WHERE NOT EXISTS (SELECT 1 FROM pg_dist_partition WHERE logicalrelid = 'graph_writers'::regclass);
SELECT create_distributed_table('match_queue', 'workspace_id', colocate_with => 'events')
WHERE NOT EXISTS (SELECT 1 FROM pg_dist_partition WHERE logicalrelid = 'match_queue'::regclass);
SELECT create_distributed_table('attributions', 'workspace_id', colocate_with => 'events')
WHERE NOT EXISTS (SELECT 1 FROM pg_dist_partition WHERE logicalrelid = 'attributions'::regclass);
SELECT create_distributed_table('destinations', 'workspace_id', colocate_with => 'events')
WHERE NOT EXISTS (SELECT 1 FROM pg_dist_partition WHERE logicalrelid = 'destinations'::regclass);
SELECT create_distributed_table('dispatches', 'workspace_id', colocate_with => 'events')
WHERE NOT EXISTS (SELECT 1 FROM pg_dist_partition WHERE logicalrelid = 'dispatches'::regclass);
SELECT create_distributed_table('dispatch_payloads', 'workspace_id', colocate_with => 'events')
WHERE NOT EXISTS (SELECT 1 FROM pg_dist_partition WHERE logicalrelid = 'dispatch_payloads'::regclass);
SELECT create_distributed_table('dispatch_attempts', 'workspace_id', colocate_with => 'events')
WHERE NOT EXISTS (SELECT 1 FROM pg_dist_partition WHERE logicalrelid = 'dispatch_attempts'::regclass);
SELECT create_distributed_table('dispatch_requests', 'workspace_id', colocate_with => 'events')
WHERE NOT EXISTS (SELECT 1 FROM pg_dist_partition WHERE logicalrelid = 'dispatch_requests'::regclass);
SELECT create_distributed_table('upload_checks', 'workspace_id', colocate_with => 'events')
WHERE NOT EXISTS (SELECT 1 FROM pg_dist_partition WHERE logicalrelid = 'upload_checks'::regclass);
SELECT create_distributed_table('destination_parks', 'workspace_id', colocate_with => 'events')
WHERE NOT EXISTS (SELECT 1 FROM pg_dist_partition WHERE logicalrelid = 'destination_parks'::regclass);
SELECT create_distributed_table('event_values', 'workspace_id', colocate_with => 'events')
WHERE NOT EXISTS (SELECT 1 FROM pg_dist_partition WHERE logicalrelid = 'event_values'::regclass);
SELECT create_distributed_table('backfills', 'workspace_id', colocate_with => 'events')
WHERE NOT EXISTS (SELECT 1 FROM pg_dist_partition WHERE logicalrelid = 'backfills'::regclass);
SELECT create_distributed_table('report_conversions', 'workspace_id', colocate_with => 'events')
WHERE NOT EXISTS (SELECT 1 FROM pg_dist_partition WHERE logicalrelid = 'report_conversions'::regclass);
SELECT create_distributed_table('report_rollups', 'workspace_id', colocate_with => 'events')
WHERE NOT EXISTS (SELECT 1 FROM pg_dist_partition WHERE logicalrelid = 'report_rollups'::regclass);
SELECT create_distributed_table('report_histograms', 'workspace_id', colocate_with => 'events')
WHERE NOT EXISTS (SELECT 1 FROM pg_dist_partition WHERE logicalrelid = 'report_histograms'::regclass);
SELECT create_distributed_table('report_clicks', 'workspace_id', colocate_with => 'events')
WHERE NOT EXISTS (SELECT 1 FROM pg_dist_partition WHERE logicalrelid = 'report_clicks'::regclass);
SELECT create_distributed_table('credit_batches', 'workspace_id', colocate_with => 'events')
WHERE NOT EXISTS (SELECT 1 FROM pg_dist_partition WHERE logicalrelid = 'credit_batches'::regclass);
SELECT create_distributed_table('conversion_events', 'workspace_id', colocate_with => 'events')
WHERE NOT EXISTS (SELECT 1 FROM pg_dist_partition WHERE logicalrelid = 'conversion_events'::regclass);
SELECT create_distributed_table('conversion_value_estimates', 'workspace_id', colocate_with => 'events')
WHERE NOT EXISTS (SELECT 1 FROM pg_dist_partition WHERE logicalrelid = 'conversion_value_estimates'::regclass);
SELECT create_distributed_table('conversion_lead_values', 'workspace_id', colocate_with => 'events')
WHERE NOT EXISTS (SELECT 1 FROM pg_dist_partition WHERE logicalrelid = 'conversion_lead_values'::regclass);
