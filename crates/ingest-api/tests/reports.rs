//! Reports end to end: clicks and conversions go in through the API, the matcher decides, the
//! report stage credits, and `/v1/reports/conversions` answers from the rollups.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::{create_key, TestApp};
use ingest_api::keys::Scope;
use serde_json::{json, Value};

async fn credited(app: &TestApp, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let credit: Value = app
            .get(&format!("/v1/events/{id}/credit"))
            .await
            .json()
            .await
            .unwrap();
        if credit["credited"] == true {
            return credit;
        }
        assert!(Instant::now() < deadline, "never credited: {credit:#}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn report(app: &TestApp, query: &str) -> Value {
    let res = app.get(&format!("/v1/reports/conversions?{query}")).await;
    assert_eq!(res.status(), 200, "{query}");
    res.json().await.unwrap()
}

fn row<'a>(report: &'a Value, key: &str) -> &'a Value {
    report["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["key"] == key)
        .unwrap_or_else(|| panic!("no row {key}: {report:#}"))
}

async fn post_id(app: &TestApp, path: &str, body: Value) -> String {
    let res = app.post(path, &body).await;
    assert!(res.status().is_success(), "{}", res.status());
    let answer: Value = res.json().await.unwrap();
    answer["id"].as_str().unwrap_or_default().to_owned()
}

/// A person clicks a Google ad, a Meta ad and a newsletter link, then buys through the
/// newsletter link: 100 USD. Another buys through Google only: 50 USD.
async fn journey(app: &TestApp) -> (String, String) {
    let clicks = json!({"clicks": [
        {"clickId": "c-google", "gclid": "g-1", "timestamp": "2026-04-01T10:00:00.000Z",
         "utm": {"source": "google", "medium": "cpc", "campaign": "spring"}},
        {"clickId": "c-meta", "fbclid": "f-1", "timestamp": "2026-04-08T10:00:00.000Z",
         "utm": {"source": "facebook", "medium": "paid_social", "campaign": "spring"}},
        {"clickId": "c-news", "timestamp": "2026-04-15T10:00:00.000Z",
         "utm": {"source": "newsletter", "medium": "email", "campaign": "april"}},
        {"clickId": "c-google-2", "gclid": "g-2", "timestamp": "2026-04-14T10:00:00.000Z",
         "utm": {"source": "google", "medium": "cpc", "campaign": "spring"}},
        {"clickId": "c-unused", "gclid": "g-3", "timestamp": "2026-04-14T11:00:00.000Z",
         "utm": {"source": "google", "medium": "cpc", "campaign": "spring"}}
    ]});
    assert_eq!(app.post("/v1/clicks/batch", &clicks).await.status(), 200);
    // Leads link the clicks to the person.
    for (click, at) in [
        ("c-google", "2026-04-01T10:05:00.000Z"),
        ("c-meta", "2026-04-08T10:05:00.000Z"),
    ] {
        let id = post_id(
            app,
            "/v1/events",
            json!({"event": "lead", "timestamp": at, "clickId": click,
                   "customerExternalId": "ann", "eventName": "signup"}),
        )
        .await;
        credited(app, &id).await;
    }
    let sale = post_id(
        app,
        "/v1/events",
        json!({"event": "sale", "timestamp": "2026-04-15T10:00:00.000Z", "clickId": "c-news",
               "customerExternalId": "ann", "invoiceId": "inv-1", "amount": 100,
               "currency": "USD"}),
    )
    .await;
    let other = post_id(
        app,
        "/v1/events",
        json!({"event": "sale", "timestamp": "2026-04-15T10:00:00.000Z",
               "clickId": "c-google-2", "customerExternalId": "bob", "invoiceId": "inv-2",
               "amount": 50, "currency": "USD"}),
    )
    .await;
    credited(app, &sale).await;
    credited(app, &other).await;
    (sale, other)
}

const APRIL: &str = "from=2026-04-01&to=2026-05-01";

#[tokio::test]
async fn every_model_shares_a_conversion_among_the_touches_of_its_window() {
    let app = TestApp::spawn().await;
    let (sale, _) = journey(&app).await;

    // The sale's three touches, oldest first, with shares that sum to exactly 1 per model.
    let credit = credited(&app, &sale).await;
    let touches = credit["touches"].as_array().unwrap();
    let channels: Vec<&str> = touches
        .iter()
        .map(|t| t["channel"].as_str().unwrap())
        .collect();
    assert_eq!(channels, ["google_ads", "meta", "newsletter"], "{credit:#}");
    for model in [
        "last_click",
        "first_click",
        "linear",
        "position_based",
        "time_decay",
    ] {
        let total: rust_decimal::Decimal = touches
            .iter()
            .map(|t| {
                t["shares"][model]
                    .to_string()
                    .parse::<rust_decimal::Decimal>()
                    .unwrap()
            })
            .sum();
        assert_eq!(total, rust_decimal::Decimal::ONE, "{model}: {credit:#}");
    }
    let shares = |model: &str| -> Vec<String> {
        touches
            .iter()
            .map(|t| t["shares"][model].to_string())
            .collect()
    };
    assert_eq!(shares("last_click"), ["0", "0", "1"]);
    assert_eq!(shares("first_click"), ["1", "0", "0"]);
    assert_eq!(
        shares("linear"),
        ["0.333333333333", "0.333333333333", "0.333333333334"]
    );
    assert_eq!(shares("position_based"), ["0.4", "0.2", "0.4"]);
    // Touches 14 and 7 days before: weights 1/4, 1/2, 1 of 7/4.
    assert_eq!(
        shares("time_decay"),
        ["0.142857142857", "0.285714285714", "0.571428571429"]
    );

    // The reports move the 100 USD between channels; Bob's 50 USD stay with Google.
    let revenue = |r: &Value, key: &str| row(r, key)["revenue"]["USD"].clone();
    let last = report(&app, &format!("{APRIL}&model=last_click")).await;
    assert_eq!(revenue(&last, "newsletter"), json!(100));
    assert_eq!(revenue(&last, "google_ads"), json!(50));
    let first = report(&app, &format!("{APRIL}&model=first_click")).await;
    assert_eq!(revenue(&first, "google_ads"), json!(150));
    let position = report(&app, &format!("{APRIL}&model=position_based")).await;
    assert_eq!(revenue(&position, "google_ads"), json!(90));
    assert_eq!(revenue(&position, "meta"), json!(20));
    assert_eq!(revenue(&position, "newsletter"), json!(40));
    assert_eq!(row(&position, "meta")["sales"], json!(0.2));
    let linear = report(&app, &format!("{APRIL}&model=linear")).await;
    assert_eq!(revenue(&linear, "meta"), json!(33.33));
    assert_eq!(row(&linear, "google_ads")["sales"], json!(1.333333));
    let decay = report(&app, &format!("{APRIL}&model=time_decay")).await;
    assert_eq!(revenue(&decay, "newsletter"), json!(57.14));

    // Clicks are the registered ones; rates divide what the group got.
    let google = row(&last, "google_ads");
    assert_eq!(google["clicks"], 3, "{last:#}");
    assert_eq!(google["leads"], 1);
    assert_eq!(google["clickToLeadRate"], json!(0.333333));
    // Bob's sale came 1 day after his click, Ann's lead 5 minutes after hers.
    assert_eq!(google["medianTimeToConversionSeconds"], 300);
    assert_eq!(google["p90TimeToConversionSeconds"], 86400);

    // By event name: the two leads were signups; sales have the default name.
    let names = report(&app, &format!("{APRIL}&groupBy=eventName")).await;
    assert_eq!(row(&names, "signup")["leads"], 2, "{names:#}");
    assert_eq!(row(&names, "signup")["clicks"], Value::Null);
    let campaign = report(&app, &format!("{APRIL}&groupBy=campaign&model=linear")).await;
    assert_eq!(row(&campaign, "april")["revenue"]["USD"], json!(33.33));
    // Everything is macro until the catalog says otherwise.
    let micro = report(&app, &format!("{APRIL}&tier=micro")).await;
    assert!(micro["data"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["leads"] == 0 && r["sales"] == 0));
}

#[tokio::test]
async fn a_time_series_lists_every_period_and_csv_has_the_same_rows() {
    let app = TestApp::spawn().await;
    journey(&app).await;
    let daily = report(&app, "from=2026-04-13&to=2026-04-17&interval=day").await;
    let google: Vec<&Value> = daily["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["key"] == "google_ads")
        .collect();
    let periods: Vec<&str> = google
        .iter()
        .map(|r| r["period"].as_str().unwrap())
        .collect();
    assert_eq!(
        periods,
        [
            "2026-04-13T00:00:00.000Z",
            "2026-04-14T00:00:00.000Z",
            "2026-04-15T00:00:00.000Z",
            "2026-04-16T00:00:00.000Z"
        ]
    );
    assert_eq!(google[0]["sales"], 0);
    assert_eq!(google[1]["clicks"], 2);
    assert_eq!(google[2]["sales"], 1);
    let weekly = report(&app, &format!("{APRIL}&interval=week")).await;
    // 2026-04-01 is a Wednesday: weeks start on Mondays 03-30, 04-06, 04-13, 04-20, 04-27.
    let weeks = weekly["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["key"] == "newsletter")
        .count();
    assert_eq!(weeks, 5, "{weekly:#}");
    let monthly = report(
        &app,
        "from=2026-03-01&to=2026-06-01&interval=month&model=linear",
    )
    .await;
    let meta: Vec<&Value> = monthly["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["key"] == "meta")
        .collect();
    assert_eq!(meta.len(), 3);
    assert_eq!(meta[1]["revenue"]["USD"], json!(33.33));

    let csv = app
        .http
        .get(app.url(&format!("/v1/reports/conversions?{APRIL}&model=linear")))
        .bearer_auth(&app.key)
        .header("Accept", "text/csv")
        .send()
        .await
        .unwrap();
    assert_eq!(csv.status(), 200);
    assert!(csv.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    let body = csv.text().await.unwrap();
    let lines: Vec<&str> = body.lines().collect();
    assert!(
        lines[0].starts_with("key,clicks,leads,sales,revenue_USD,value_USD,"),
        "{body}"
    );
    let json = report(&app, &format!("{APRIL}&model=linear")).await;
    assert_eq!(lines.len() - 1, json["data"].as_array().unwrap().len());
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("meta,1,0.5,0.333333,33.33,33.33,")),
        "{body}"
    );
}

#[tokio::test]
async fn retractions_and_value_changes_move_the_rollups_as_a_rebuild_would() {
    let app = TestApp::spawn().await;
    let (sale, other) = journey(&app).await;
    let before = report(&app, &format!("{APRIL}&model=position_based")).await;
    assert_eq!(row(&before, "google_ads")["revenue"]["USD"], json!(90));

    let res = app
        .post(
            &format!("/v1/events/{other}/retract"),
            &json!({"reason": "refund"}),
        )
        .await;
    assert_eq!(res.status(), 200);
    // Twice is once.
    let res = app
        .post(
            &format!("/v1/events/{other}/retract"),
            &json!({"reason": "refund"}),
        )
        .await;
    assert_eq!(res.status(), 200);
    let after = report(&app, &format!("{APRIL}&model=position_based")).await;
    assert_eq!(row(&after, "google_ads")["revenue"]["USD"], json!(40));
    assert_eq!(row(&after, "google_ads")["sales"], json!(0.4));

    // A restatement, as the forwarder will apply it: 100 -> 60 USD, in the caller's transaction.
    let workspace: uuid::Uuid = {
        let client = app.db.client().await;
        client
            .query_one("SELECT workspace_id FROM report_conversions LIMIT 1", &[])
            .await
            .unwrap()
            .get(0)
    };
    // Each row names its touches' groups by id (registered clicks' groups included, which the
    // report stage writes to click_groups itself), never by their values.
    let by_name: i64 = app
        .db
        .client()
        .await
        .query_one(
            "SELECT count(*) FILTER (WHERE groups IS NOT NULL OR touches IS NOT NULL AND group_ids IS NULL)
             FROM report_conversions",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(by_name, 0);
    let id = uuid::Uuid::parse_str(sale.trim_start_matches("evt_")).unwrap();
    let pool = ingest_api::db::pool(&app.db.url, 1, Duration::from_secs(5)).unwrap();
    {
        let mut client = pool.get().await.unwrap();
        let tx = client.transaction().await.unwrap();
        let amount = rust_decimal::Decimal::from(60);
        assert!(
            reports::apply_value_change(&tx, workspace, id, amount, "USD")
                .await
                .unwrap()
        );
        assert!(
            !reports::apply_value_change(&tx, workspace, id, amount, "USD")
                .await
                .unwrap()
        );
        assert_eq!(
            reports::conversion_tier(&tx, workspace, id).await.unwrap(),
            Some(reports::Tier::Macro)
        );
        tx.commit().await.unwrap();
    }
    let restated = report(&app, &format!("{APRIL}&model=position_based")).await;
    assert_eq!(row(&restated, "google_ads")["revenue"]["USD"], json!(24));
    assert_eq!(row(&restated, "newsletter")["revenue"]["USD"], json!(24));
    assert_eq!(row(&restated, "meta")["revenue"]["USD"], json!(12));

    // The incremental rollups equal a rebuild from the stored shares, for every model.
    let mut reports_before = Vec::new();
    for model in [
        "last_click",
        "first_click",
        "linear",
        "position_based",
        "time_decay",
    ] {
        for group in ["channel", "campaign", "eventName"] {
            reports_before
                .push(report(&app, &format!("{APRIL}&model={model}&groupBy={group}")).await);
        }
    }
    {
        let client = pool.get().await.unwrap();
        reports::refresh(&client, workspace).await.unwrap();
    }
    let mut i = 0;
    for model in [
        "last_click",
        "first_click",
        "linear",
        "position_based",
        "time_decay",
    ] {
        for group in ["channel", "campaign", "eventName"] {
            let rebuilt = report(&app, &format!("{APRIL}&model={model}&groupBy={group}")).await;
            assert_eq!(rebuilt, reports_before[i], "{model} by {group}");
            i += 1;
        }
    }

    // Erasing the person takes the sale out of every report, and its touches with it.
    {
        let mut client = pool.get().await.unwrap();
        let tx = client.transaction().await.unwrap();
        assert_eq!(reports::erase(&tx, workspace, &[id, id]).await.unwrap(), 1);
        tx.commit().await.unwrap();
    }
    let erased = report(&app, &format!("{APRIL}&model=position_based")).await;
    assert!(
        erased["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["revenue"].as_object().unwrap().is_empty()),
        "{erased:#}"
    );
    let credit: Value = app
        .get(&format!("/v1/events/{sale}/credit"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(credit["credited"], false);
    let left: i64 = app
        .db
        .client()
        .await
        .query_one(
            "SELECT count(*) FROM report_conversions WHERE event_id = $1",
            &[&id],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 0);
}

#[tokio::test]
async fn a_pending_sale_moves_from_direct_to_its_channel_when_its_click_arrives() {
    let app = TestApp::spawn().await;
    let sale = post_id(
        &app,
        "/v1/events",
        json!({"event": "sale", "timestamp": "2026-04-15T10:00:00.000Z", "clickId": "c-late",
               "customerExternalId": "cat", "invoiceId": "inv-9", "amount": 70,
               "currency": "EUR"}),
    )
    .await;
    credited(&app, &sale).await;
    let pending = report(&app, APRIL).await;
    assert_eq!(row(&pending, "direct")["revenue"]["EUR"], json!(70));
    let click = json!({"clickId": "c-late", "msclkid": "m-1",
                       "timestamp": "2026-04-15T09:00:00.000Z"});
    assert_eq!(app.post("/v1/clicks", &click).await.status(), 201);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let credit = credited(&app, &sale).await;
        if credit["touches"][0]["channel"] == "microsoft" {
            break;
        }
        assert!(Instant::now() < deadline, "never moved: {credit:#}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let matched = report(&app, APRIL).await;
    assert_eq!(row(&matched, "microsoft")["revenue"]["EUR"], json!(70));
    assert_eq!(
        row(&matched, "microsoft")["medianTimeToConversionSeconds"],
        3600
    );
    assert!(
        matched["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["key"] != "direct"),
        "{matched:#}"
    );
}

#[tokio::test]
async fn bad_parameters_are_each_named_and_other_workspaces_see_nothing() {
    let app = TestApp::spawn().await;
    let (sale, _) = journey(&app).await;
    let res = app
        .get("/v1/reports/conversions?from=2026-04-01T10:00:00Z&to=x&groupBy=colour&model=u&interval=year&tier=gold&limit=3")
        .await;
    assert_eq!(res.status(), 422);
    let problem: Value = res.json().await.unwrap();
    let fields: Vec<&str> = problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["limit"], "unknown parameters first: {problem:#}");
    let res = app
        .get("/v1/reports/conversions?from=2026-04-01T10:00:00Z&to=x&groupBy=colour&model=u&interval=year&tier=gold")
        .await;
    let problem: Value = res.json().await.unwrap();
    let fields: Vec<&str> = problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(
        fields,
        ["from", "to", "groupBy", "model", "interval", "tier"]
    );

    let other = create_key(&app.db, "globex", &[Scope::Read]).await;
    let res = app
        .get_as(&other, &format!("/v1/events/{sale}/credit"))
        .await;
    assert_eq!(res.status(), 404);
    let theirs: Value = app
        .get_as(&other, &format!("/v1/reports/conversions?{APRIL}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(theirs["data"], json!([]));
    let ingest_only = create_key(&app.db, "acme", &[Scope::Ingest]).await;
    let res = app
        .get_as(&ingest_only, &format!("/v1/reports/conversions?{APRIL}"))
        .await;
    assert_eq!(res.status(), 403);
}
