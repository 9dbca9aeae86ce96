//! A workspace on a fresh database, a stand-in for the ingest journal, and the worker step
//! driven by hand with an explicit clock.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::HashMap;

use attribution_matcher::{Claim, Decided, Decision, MatchSettings, RegisteredClick};
use deadpool_postgres::Pool;
use events::Event;
use serde_json::Value;
use test_support::TestDb;
use time::macros::datetime;
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

/// The start of every test's story.
pub const T0: OffsetDateTime = datetime!(2026-04-10 12:00 UTC);

/// A fresh database with this crate's migrations.
pub async fn pool() -> Pool {
    // The template is rebuilt whenever a migration changes.
    let id = format!(
        "attribution-matcher:{:?}:{:?}",
        attribution_matcher::migrations(),
        journal::migrations()
    );
    let db = TestDb::new(&id, |client| {
        Box::pin(async move {
            journal::migrate(client).await.map_err(|e| e.to_string())?;
            attribution_matcher::migrate(client)
                .await
                .map_err(|e| e.to_string())
        })
    })
    .await;
    db.pool(8)
}

/// One workspace, its journal of events, and the matcher's settings.
pub struct Harness {
    pub pool: Pool,
    pub workspace: Uuid,
    pub journal: HashMap<Uuid, (OffsetDateTime, Event)>,
    pub settings: MatchSettings,
}

impl Harness {
    pub async fn new() -> Self {
        Self::on(pool().await).await
    }

    /// Another workspace on the same database.
    pub async fn on(pool: Pool) -> Self {
        Self {
            pool,
            workspace: Uuid::now_v7(),
            journal: HashMap::new(),
            settings: MatchSettings::default(),
        }
    }

    /// Accepts an event received at `received_at`, as the ingest transaction would: stored in the
    /// journal and queued for the matcher.
    pub async fn send(&mut self, body: Value, received_at: OffsetDateTime) -> Uuid {
        let event = events::parse_event(&body, received_at)
            .unwrap_or_else(|e| panic!("{body} was rejected: {e}"));
        let id = Uuid::now_v7();
        let client = self.pool.get().await.unwrap();
        let stored = journal::NewEvent {
            workspace_id: self.workspace,
            id,
            kind: event.kind().as_str(),
            occurred_at: event.timestamp,
            received_at,
            natural_key: event.natural_key().map(str::to_owned),
            customer_external_id: event.customer_external_id.clone(),
            mode: event.mode.as_str(),
            amount: None,
            currency: None,
            payload: serde_json::to_value(&event).unwrap(),
        };
        journal::insert_events(&client, &[&stored]).await.unwrap();
        attribution_matcher::enqueue(&client, &[(self.workspace, id)])
            .await
            .unwrap();
        self.journal.insert(id, (received_at, event));
        id
    }

    /// Registers one click received at `now`.
    pub async fn click(&self, body: Value, now: OffsetDateTime) -> RegisteredClick {
        let click =
            events::parse_click(&body, now).unwrap_or_else(|e| panic!("{body} was rejected: {e}"));
        let client = self.pool.get().await.unwrap();
        attribution_matcher::register_clicks(&client, self.workspace, &[click])
            .await
            .unwrap()
            .remove(0)
    }

    /// The events of a claim, from the journal.
    pub fn load(&self, claim: &Claim) -> Vec<(Uuid, OffsetDateTime, Event)> {
        claim
            .event_ids
            .iter()
            .filter_map(|id| {
                self.journal
                    .get(id)
                    .map(|(at, event)| (*id, *at, event.clone()))
            })
            .collect()
    }

    /// One worker step at `now`, in one transaction: claim, decide, commit. `None` when there
    /// is nothing to claim, or only another workspace's work.
    pub async fn step(&self, now: OffsetDateTime) -> Option<(Claim, Vec<Decided>)> {
        let mut client = self.pool.get().await.unwrap();
        let tx = client.transaction().await.unwrap();
        let claim = attribution_matcher::claim_at(&tx, 100, now)
            .await
            .unwrap()?;
        if claim.workspace_id != self.workspace {
            // Another workspace's work: leave it to that workspace's harness.
            tx.rollback().await.unwrap();
            return None;
        }
        let events = self.load(&claim);
        let decided = attribution_matcher::decide(&tx, &claim, &events, &self.settings, now)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        Some((claim, decided))
    }

    /// Worker steps at `now` until there is nothing left to claim; every decision, in order.
    pub async fn run(&self, now: OffsetDateTime) -> Vec<Decided> {
        let mut out = Vec::new();
        for _ in 0..100 {
            match self.step(now).await {
                Some((_, decided)) => out.extend(decided),
                None => return out,
            }
        }
        panic!("the matcher did not settle in 100 steps");
    }

    /// The only decision of a run, which must be about `event_id`.
    pub async fn run_one(&self, event_id: Uuid, now: OffsetDateTime) -> Decided {
        let mut decided = self.run(now).await;
        assert_eq!(decided.len(), 1, "{decided:#?}");
        let decided = decided.remove(0);
        assert_eq!(decided.event_id, event_id);
        decided
    }

    /// The recorded decision about `event_id`.
    pub async fn decision(&self, event_id: Uuid) -> Option<Decision> {
        let client = self.pool.get().await.unwrap();
        attribution_matcher::get_decision(&client, self.workspace, event_id, None)
            .await
            .unwrap()
    }

    /// The distinct persons of this workspace's graph (those not merged into another).
    pub async fn persons(&self) -> i64 {
        let client = self.pool.get().await.unwrap();
        client
            .query_one(
                "SELECT count(DISTINCT coalesce(p.merged_into, i.person_id))
                 FROM identities i
                 LEFT JOIN persons p
                   ON p.workspace_id = i.workspace_id AND p.person_id = i.person_id
                 WHERE i.workspace_id = $1 AND NOT i.too_common",
                &[&self.workspace],
            )
            .await
            .unwrap()
            .get(0)
    }
}

/// The destination types the routes dispatch to, in order.
pub fn dispatches(decided: &Decided) -> Vec<&'static str> {
    decided
        .routes
        .iter()
        .filter(|r| r.dispatch)
        .map(|r| r.destination_type.as_str())
        .collect()
}

/// The reason given for one destination type.
pub fn reason<'a>(decided: &'a Decided, destination: &str) -> &'a str {
    decided
        .routes
        .iter()
        .find(|r| r.destination_type.as_str() == destination)
        .map(|r| r.reason.as_ref())
        .unwrap()
}

/// `at` plus some days.
pub fn days(at: OffsetDateTime, days: i64) -> OffsetDateTime {
    at + Duration::days(days)
}
