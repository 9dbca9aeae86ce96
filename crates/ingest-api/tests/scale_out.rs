//! Scale-out readiness, read from the catalog of a fully migrated database: every
//! workspace-scoped table can be distributed by `workspace_id` (Citus needs the distribution
//! column in the primary key and in every unique constraint), the global tables are the few
//! listed here, and `deploy/citus.sql` names exactly the tables the catalog has.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};

/// The global tables: small, looked up before a workspace is known (an API key by its prefix),
/// shared by workspaces (a platform's request quota, counted per Cloud project), or written only
/// by migrations. Citus keeps them as reference tables (a copy on every node); every other table
/// is distributed by `workspace_id`.
const REFERENCE_TABLES: [&str; 3] = ["workspaces", "api_keys", "quota_buckets"];

/// The migration history tables, one per crate.
fn history_tables() -> Vec<&'static str> {
    ingest_api::db::expected_versions()
        .into_iter()
        .map(|(table, _)| table)
        .collect()
}

fn reference_tables() -> BTreeSet<String> {
    REFERENCE_TABLES
        .into_iter()
        .chain(history_tables())
        .map(str::to_owned)
        .collect()
}

/// Every table of the schema, partitions included, and whether it is a partition.
const TABLES: &str = "
    SELECT c.relname::text, c.relispartition
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p')
    ORDER BY 1";

/// Every unique index (primary keys, unique constraints, unique indexes, exclusion constraints)
/// of the schema's tables, with its key columns in order (`NULL` for an expression) and its
/// definition for the message.
const UNIQUE_INDEXES: &str = "
    SELECT t.relname::text, i.indisprimary, pg_get_indexdef(i.indexrelid),
           array(SELECT a.attname::text
                 FROM unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
                 LEFT JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum
                 WHERE k.ord <= i.indnkeyatts
                 ORDER BY k.ord)
    FROM pg_index i
    JOIN pg_class t ON t.oid = i.indrelid
    JOIN pg_namespace n ON n.oid = t.relnamespace
    WHERE n.nspname = current_schema() AND (i.indisunique OR i.indisexclusion)
    ORDER BY 1, 3";

#[derive(Debug, Default)]
struct Table {
    partition: bool,
    /// Key columns of the primary key, if any.
    primary_key: Option<Vec<Option<String>>>,
    /// (definition, key columns) of every other unique index.
    unique: Vec<(String, Vec<Option<String>>)>,
}

async fn catalog() -> BTreeMap<String, Table> {
    let db = common::test_db().await;
    let client = db.client().await;
    let mut tables: BTreeMap<String, Table> = BTreeMap::new();
    for row in client.query(TABLES, &[]).await.unwrap() {
        tables.insert(
            row.get(0),
            Table {
                partition: row.get(1),
                ..Table::default()
            },
        );
    }
    for row in client.query(UNIQUE_INDEXES, &[]).await.unwrap() {
        let table: String = row.get(0);
        let columns: Vec<Option<String>> = row.get(3);
        let entry = tables.get_mut(&table).unwrap();
        if row.get(1) {
            entry.primary_key = Some(columns);
        } else {
            entry.unique.push((row.get(2), columns));
        }
    }
    tables
}

fn names(columns: &[Option<String>]) -> String {
    columns
        .iter()
        .map(|c| c.as_deref().unwrap_or("<expression>"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[tokio::test]
async fn every_workspace_table_is_keyed_by_workspace_id_and_the_rest_are_the_listed_reference_tables(
) {
    let tables = catalog().await;
    let reference = reference_tables();
    let mut broken = Vec::new();
    for name in &reference {
        if !tables.contains_key(name) {
            broken.push(format!(
                "{name}: listed as a reference table but not in the catalog"
            ));
        }
    }
    let ws = Some("workspace_id".to_owned());
    for (name, table) in &tables {
        if reference.contains(name) {
            continue;
        }
        match &table.primary_key {
            None => broken.push(format!("{name}: no primary key")),
            Some(columns) if columns.first() != Some(&ws) => broken.push(format!(
                "{name}: primary key ({}) does not start with workspace_id",
                names(columns)
            )),
            Some(_) => {}
        }
        for (definition, columns) in &table.unique {
            if !columns.contains(&ws) {
                broken.push(format!(
                    "{name}: unique index without workspace_id: {definition}"
                ));
            }
        }
        let _ = table.partition;
    }
    assert!(
        broken.is_empty(),
        "tables that cannot be distributed by workspace_id (fix the table, or list it as a \
         reference table if it is global):\n{}",
        broken.join("\n")
    );
}

/// The tables `deploy/citus.sql` hands to `function(`, in order, comments left out.
fn named_in_script(script: &str, function: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for line in script.lines() {
        let code = line.split("--").next().unwrap_or_default();
        let mut rest = code;
        while let Some(at) = rest.find(function) {
            let args = &rest[at + function.len()..];
            let args = args.strip_prefix("('").unwrap_or_else(|| {
                panic!("deploy/citus.sql: {function} without a quoted table name: {line}")
            });
            let (table, after) = args.split_once('\'').unwrap();
            out.push((table.to_owned(), after.to_owned()));
            rest = after;
        }
    }
    out
}

#[tokio::test]
async fn the_citus_script_distributes_exactly_the_tables_of_the_catalog() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/citus.sql");
    let script = std::fs::read_to_string(path).unwrap();
    let tables = catalog().await;
    // Partitions follow their parent: the script names parents only.
    let catalog: BTreeSet<String> = tables
        .iter()
        .filter(|(_, t)| !t.partition)
        .map(|(name, _)| name.clone())
        .collect();
    let reference = reference_tables();

    let referenced = named_in_script(&script, "create_reference_table");
    let distributed = named_in_script(&script, "create_distributed_table");
    for (table, args) in &distributed {
        assert!(
            args.starts_with(", 'workspace_id'"),
            "deploy/citus.sql distributes {table} by something else than workspace_id"
        );
    }
    let referenced_set: BTreeSet<String> = referenced.iter().map(|(t, _)| t.clone()).collect();
    let distributed_set: BTreeSet<String> = distributed.iter().map(|(t, _)| t.clone()).collect();
    assert_eq!(
        referenced.len(),
        referenced_set.len(),
        "a table named twice"
    );
    assert_eq!(
        distributed.len(),
        distributed_set.len(),
        "a table named twice"
    );

    assert_eq!(
        referenced_set, reference,
        "deploy/citus.sql: create_reference_table names exactly the reference tables"
    );
    let expected: BTreeSet<String> = catalog.difference(&reference).cloned().collect();
    let missing: Vec<&String> = expected.difference(&distributed_set).collect();
    let unknown: Vec<&String> = distributed_set.difference(&expected).collect();
    assert!(
        missing.is_empty() && unknown.is_empty(),
        "deploy/citus.sql is out of step with the migrations: not distributed: {missing:?}; \
         distributed but not a workspace table of the catalog: {unknown:?}"
    );
    // Reference tables first: a distributed table may refer to one.
    let first_distributed = script.find("create_distributed_table(").unwrap();
    let last_reference = script.rfind("create_reference_table(").unwrap();
    assert!(last_reference < first_distributed);
}
