//! The report stage's queue on a real PostgreSQL: one row per matcher step, taken in order, in
//! batches that may cut a row, without repeats.
#![allow(clippy::unwrap_used)]

use deadpool_postgres::Pool;
use test_support::TestDb;
use uuid::Uuid;

async fn db() -> Pool {
    let db = TestDb::new(
        &format!("reports-only:{:?}", reports::migrations()),
        |client| Box::pin(async move { reports::migrate(client).await.map_err(|e| e.to_string()) }),
    )
    .await;
    db.pool(4)
}

fn ids(n: usize) -> Vec<Uuid> {
    (0..n).map(|_| Uuid::now_v7()).collect()
}

#[tokio::test]
async fn batches_are_taken_oldest_first_cutting_a_step_where_the_limit_falls() {
    let db = db().await;
    let mut client = db.get().await.unwrap();
    let ws = Uuid::now_v7();
    let (a, b, c) = (ids(3), ids(5), ids(2));
    for step in [&a, &b, &c] {
        reports::queue::queue(&client, ws, step).await.unwrap();
    }
    reports::queue::queue(&client, ws, &[]).await.unwrap();

    let tx = client.transaction().await.unwrap();
    let (workspace, first) = reports::queue::claim(&tx, 6).await.unwrap().unwrap();
    tx.commit().await.unwrap();
    assert_eq!(workspace, ws);
    let mut expected: Vec<Uuid> = a.iter().chain(&b[..3]).copied().collect();
    expected.sort_unstable();
    assert_eq!(first, expected);

    let tx = client.transaction().await.unwrap();
    let (_, second) = reports::queue::claim(&tx, 100).await.unwrap().unwrap();
    tx.commit().await.unwrap();
    let mut expected: Vec<Uuid> = b[3..].iter().chain(&c).copied().collect();
    expected.sort_unstable();
    assert_eq!(second, expected);

    let tx = client.transaction().await.unwrap();
    assert!(reports::queue::claim(&tx, 100).await.unwrap().is_none());
}

#[tokio::test]
async fn a_failed_batch_stays_queued_and_a_conversion_queued_twice_is_taken_once() {
    let db = db().await;
    let mut client = db.get().await.unwrap();
    let ws = Uuid::now_v7();
    let step = ids(4);
    reports::queue::queue(&client, ws, &step).await.unwrap();
    reports::queue::queue(&client, ws, &step[..1])
        .await
        .unwrap();

    let tx = client.transaction().await.unwrap();
    let (_, taken) = reports::queue::claim(&tx, 2).await.unwrap().unwrap();
    assert_eq!(taken.len(), 2);
    tx.rollback().await.unwrap();

    let tx = client.transaction().await.unwrap();
    let (_, all) = reports::queue::claim(&tx, 10).await.unwrap().unwrap();
    tx.commit().await.unwrap();
    let mut expected = step.clone();
    expected.sort_unstable();
    assert_eq!(all, expected);
}

#[tokio::test]
async fn a_batch_another_stage_holds_is_skipped_for_another_workspaces() {
    let db = db().await;
    let mut one = db.get().await.unwrap();
    let mut two = db.get().await.unwrap();
    let (ws1, ws2) = (Uuid::now_v7(), Uuid::now_v7());
    let (first, second) = (ids(2), ids(2));
    reports::queue::queue(&one, ws1, &first).await.unwrap();
    reports::queue::queue(&one, ws2, &second).await.unwrap();

    let held = one.transaction().await.unwrap();
    let (w1, _) = reports::queue::claim(&held, 10).await.unwrap().unwrap();
    let other = two.transaction().await.unwrap();
    let (w2, taken) = reports::queue::claim(&other, 10).await.unwrap().unwrap();
    assert_eq!((w1, w2), (ws1, ws2));
    let mut expected = second.clone();
    expected.sort_unstable();
    assert_eq!(taken, expected);
}

#[tokio::test]
async fn a_step_takes_as_many_small_batches_as_its_limit_holds() {
    let db = db().await;
    let mut client = db.get().await.unwrap();
    let ws = Uuid::now_v7();
    let singles: Vec<Vec<Uuid>> = (0..10).map(|_| ids(1)).collect();
    for step in &singles {
        reports::queue::queue(&client, ws, step).await.unwrap();
    }
    let tx = client.transaction().await.unwrap();
    let (_, first) = reports::queue::claim(&tx, 7).await.unwrap().unwrap();
    tx.commit().await.unwrap();
    let mut expected: Vec<Uuid> = singles[..7].iter().flatten().copied().collect();
    expected.sort_unstable();
    assert_eq!(first, expected);

    let tx = client.transaction().await.unwrap();
    let (_, rest) = reports::queue::claim(&tx, 100).await.unwrap().unwrap();
    tx.commit().await.unwrap();
    let mut expected: Vec<Uuid> = singles[7..].iter().flatten().copied().collect();
    expected.sort_unstable();
    assert_eq!(rest, expected);
}
