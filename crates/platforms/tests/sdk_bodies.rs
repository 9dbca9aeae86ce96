//! Representative conversions through every adapter to its strict fake, in every shape the
//! settings allow: a sale with a value and products, a lead, a sale whose person denied ad user
//! data, one without click ids (user data only, where the destination opts in), test modes.
//!
//! Besides what the fakes check, these are the requests `scripts/sdk-check.sh` records
//! (`CONVRELAY_RECORD_REQUESTS`) and checks with each platform's official client library.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use platforms::google::GoogleApi;
use platforms::model::{Conversion, Outcome};
use platforms::SendReport;
use serde_json::{json, Value};
use support::*;
use time::OffsetDateTime;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const TIMEOUT: Duration = Duration::from_secs(10);

/// Every platform's success answer, for as many rows as the request carried.
struct Accepts;

fn rows(request: &Request, pointer: &str) -> usize {
    serde_json::from_slice::<Value>(&request.body)
        .ok()
        .and_then(|body| {
            body.pointer(pointer)
                .and_then(Value::as_array)
                .map(Vec::len)
        })
        .unwrap_or(0)
}

impl Respond for Accepts {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let ok = ResponseTemplate::new(200);
        let Some((kind, _)) = kind_of(request.url.path()) else {
            return ResponseTemplate::new(404);
        };
        match kind {
            "tiktok_events" => ok.set_body_json(
                json!({"code": 0, "message": "OK", "request_id": "r-1", "data": {}}),
            ),
            "linkedin_conversion_events" => ok.set_body_json(
                json!({"elements": vec![json!({"status": 201}); rows(request, "/elements")]}),
            ),
            "reddit_conversion_events" => {
                ok.set_body_json(json!({"data": {"message": "Successfully processed."}}))
            }
            "snapchat_events" => ok.set_body_json(json!({"status": "VALID"})),
            "pinterest_events" => {
                let count = rows(request, "/data");
                ok.set_body_json(json!({"num_events_received": count,
                    "num_events_processed": count,
                    "events": vec![json!({"status": "processed", "error_message": null,
                        "warning_message": null}); count]}))
            }
            "microsoft_offline_conversions" | "microsoft_offline_conversion_adjustments" => {
                ok.set_body_json(json!({"PartialErrors": null}))
            }
            "meta_events" => ok.set_body_json(json!({"events_received": rows(request, "/data"),
                "messages": [], "fbtrace_id": "trace"})),
            "google_data_manager_ingest" => ok.set_body_json(json!({"requestId": "dm-1"})),
            "google_ads_upload_click_conversions" => {
                ok.set_body_json(json!({"results": vec![json!({}); rows(request, "/conversions")]}))
            }
            "google_ads_upload_conversion_adjustments" => ok.set_body_json(
                json!({"results": vec![json!({}); rows(request, "/conversionAdjustments")]}),
            ),
            _ => ResponseTemplate::new(404),
        }
    }
}

/// A sale, a lead, a sale whose person denied ad user data, and a sale without click ids, each
/// given the platform's click id by `with`.
fn mix(now: OffsetDateTime, with: fn(Conversion) -> Conversion) -> Vec<Conversion> {
    vec![
        with(sale("INV-1", now)),
        with(lead(Some("lead-1"), now)),
        with(deny_user_data(sale("INV-2", now))),
        without_clicks(sale("INV-3", now)),
    ]
}

fn same(conversion: Conversion) -> Conversion {
    conversion
}

/// Nothing failed: every conversion was delivered, or skipped for a reason of its own.
fn assert_delivered(what: &str, report: &SendReport) {
    assert!(
        report.outcomes.iter().all(|outcome| matches!(
            outcome,
            Outcome::Succeeded | Outcome::AlreadyDelivered | Outcome::Skipped { .. }
        )),
        "{what}: {:?}\n{:#?}",
        report.outcomes,
        report.requests
    );
    assert!(
        report.outcomes.contains(&Outcome::Succeeded),
        "{what}: nothing was sent"
    );
}

#[tokio::test]
async fn every_platform_takes_every_shape_of_conversion() {
    let server = MockServer::start().await;
    mount_oauth(&server, "ya29.token-1").await;
    mount_microsoft_oauth(&server, MS_ACCESS_TOKEN).await;
    Mock::given(method("POST"))
        .and(Strict(check_any))
        .respond_with(Accepts)
        .mount(&server)
        .await;
    // What the strict checks refuse is answered with their reasons, for the failure message.
    Mock::given(method("POST"))
        .respond_with(|request: &Request| {
            ResponseTemplate::new(400).set_body_json(json!({"problems": check_any(request)}))
        })
        .with_priority(10)
        .mount(&server)
        .await;
    let http = platforms(&server, TIMEOUT);
    let now = OffsetDateTime::now_utc();

    for api in [GoogleApi::DataManager, GoogleApi::GoogleAdsApi] {
        for validate_only in [false, true] {
            let mut config = google_config(api);
            config.validate_only = validate_only;
            let report = http
                .send_google(&config, &google_creds(), &mix(now, same), now)
                .await;
            assert_delivered("google", &report);
        }
    }
    let report = http
        .retract_google(
            &google_config(GoogleApi::GoogleAdsApi),
            &google_creds(),
            &[sale("INV-1", now)],
            now,
        )
        .await;
    assert_delivered("google retraction", &report);

    for (test_code, everyone) in [(None, false), (Some("TEST123"), true)] {
        let mut config = meta_config();
        config.test_event_code = test_code.map(str::to_owned);
        config.match_without_click_id = everyone;
        let report = http
            .send_meta(&config, &meta_creds(), &mix(now, same), now)
            .await;
        assert_delivered("meta", &report);
    }

    let report = http
        .send_to(
            &platforms::microsoft::MicrosoftAds,
            &microsoft_config(),
            &microsoft_creds(),
            &mix(now, with_msclkid),
            now,
        )
        .await;
    assert_delivered("microsoft", &report);
    {
        use platforms::Platform;
        let mut restated = with_msclkid(sale("INV-1", now));
        let currency = restated.event.value.unwrap().currency();
        restated.event.value = Some(events::Money::new("70.5".parse().unwrap(), currency).unwrap());
        let adapter = platforms::microsoft::MicrosoftAds;
        let report = adapter
            .restate(
                &http,
                &microsoft_config(),
                &microsoft_creds(),
                &[restated],
                now,
            )
            .await;
        assert_delivered("microsoft restatement", &report);
        let report = adapter
            .retract(
                &http,
                &microsoft_config(),
                &microsoft_creds(),
                &[with_msclkid(sale("INV-2", now))],
                now,
            )
            .await;
        assert_delivered("microsoft retraction", &report);
    }

    for everyone in [false, true] {
        let mut config = linkedin_config();
        config.match_without_click_id = everyone;
        let report = http
            .send_to(
                &platforms::linkedin::LinkedIn,
                &config,
                &linkedin_creds(),
                &mix(now, with_li_fat_id),
                now,
            )
            .await;
        assert_delivered("linkedin", &report);
    }

    for (test_id, everyone) in [(None, false), (Some("t2_test"), true)] {
        let mut config = reddit_config();
        config.test_id = test_id.map(str::to_owned);
        config.match_without_click_id = everyone;
        let report = http
            .send_to(
                &platforms::reddit::Reddit,
                &config,
                &reddit_creds(),
                &mix(now, with_rdt_cid),
                now,
            )
            .await;
        assert_delivered("reddit", &report);
    }

    for (test_code, everyone) in [(None, false), (Some("TEST123"), true)] {
        let mut config = tiktok_config();
        config.test_event_code = test_code.map(str::to_owned);
        config.match_without_click_id = everyone;
        let report = http
            .send_to(
                &platforms::tiktok::TikTok,
                &config,
                &tiktok_creds(),
                &mix(now, with_ttclid),
                now,
            )
            .await;
        assert_delivered("tiktok", &report);
    }

    for (test_mode, everyone) in [(false, false), (true, true)] {
        let mut config = snapchat_config();
        config.test_mode = test_mode;
        config.match_without_click_id = everyone;
        let report = http
            .send_to(
                &platforms::snapchat::Snapchat,
                &config,
                &snapchat_creds(),
                &mix(now, with_sc_cid),
                now,
            )
            .await;
        assert_delivered("snapchat", &report);

        let mut config = pinterest_config();
        config.test_mode = test_mode;
        config.match_without_click_id = everyone;
        let report = http
            .send_to(
                &platforms::pinterest::Pinterest,
                &config,
                &pinterest_creds(),
                &mix(now, with_epik),
                now,
            )
            .await;
        assert_delivered("pinterest", &report);
    }

    assert_requests_strict(&server).await;
    let kinds: BTreeSet<&str> = server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter_map(|request| kind_of(request.url.path()).map(|(kind, _)| kind))
        .collect();
    for kind in [
        "google_data_manager_ingest",
        "google_ads_upload_click_conversions",
        "google_ads_upload_conversion_adjustments",
        "meta_events",
        "microsoft_offline_conversions",
        "microsoft_offline_conversion_adjustments",
        "linkedin_conversion_events",
        "reddit_conversion_events",
        "tiktok_events",
        "snapchat_events",
        "pinterest_events",
    ] {
        assert!(kinds.contains(kind), "no request to {kind}: {kinds:?}");
    }
}
