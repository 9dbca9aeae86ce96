//! Microsoft Advertising offline conversions against a strict fake of the REST API and the
//! identity platform's token endpoint.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use platforms::microsoft::{MicrosoftAds, APPLY_PATH};
use platforms::model::Outcome;
use platforms::RequestTarget;
use serde_json::{json, Value};
use support::*;
use time::OffsetDateTime;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const TIMEOUT: Duration = Duration::from_secs(5);

async fn mount_apply(server: &MockServer, response: ResponseTemplate) {
    Mock::given(method("POST"))
        .and(path(APPLY_PATH))
        .and(header(
            "authorization",
            format!("Bearer {MS_ACCESS_TOKEN}").as_str(),
        ))
        .and(Strict(check_microsoft))
        .respond_with(response)
        .named("apply offline conversions")
        .mount(server)
        .await;
}

fn accepted() -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({"PartialErrors": null}))
}

async fn send(
    server: &MockServer,
    batch: &[platforms::model::Conversion],
) -> platforms::SendReport {
    let now = OffsetDateTime::now_utc();
    platforms(server, TIMEOUT)
        .send_to(
            &MicrosoftAds,
            &microsoft_config(),
            &microsoft_creds(),
            batch,
            now,
        )
        .await
}

fn rows(body: &Value) -> Vec<Value> {
    body["OfflineConversions"].as_array().unwrap().clone()
}

#[tokio::test]
async fn offline_conversions_carry_the_goal_click_time_value_and_hashes() {
    let server = MockServer::start().await;
    mount_microsoft_oauth(&server, MS_ACCESS_TOKEN).await;
    mount_apply(&server, accepted()).await;
    let now = OffsetDateTime::now_utc();
    let sale = with_msclkid(sale("INV-1", now));
    let lead = with_msclkid(lead(Some("lead-7"), now));

    let report = send(&server, &[sale.clone(), lead]).await;

    assert_eq!(report.outcomes, [Outcome::Succeeded, Outcome::Succeeded]);
    assert_requests_strict(&server).await;
    let requests = server.received_requests().await.unwrap();
    let apply = requests
        .iter()
        .find(|r| r.url.path() == APPLY_PATH)
        .unwrap();
    assert_eq!(
        apply.headers.get("developertoken").unwrap(),
        MS_DEVELOPER_TOKEN
    );
    assert_eq!(apply.headers.get("customerid").unwrap(), MS_CUSTOMER_ID);
    assert_eq!(
        apply.headers.get("customeraccountid").unwrap(),
        MS_ACCOUNT_ID
    );
    let body: Value = serde_json::from_slice(&apply.body).unwrap();
    let rows = rows(&body);
    assert_eq!(rows[0]["ConversionName"], "Offline Purchase");
    assert_eq!(rows[0]["MicrosoftClickId"], MSCLKID);
    assert_eq!(rows[0]["ConversionValue"], json!(149.0));
    assert_eq!(rows[0]["ConversionCurrencyCode"], "EUR");
    assert_eq!(rows[0]["HashedEmailAddress"], MS_EMAIL_SHA256);
    assert_eq!(rows[0]["HashedPhoneNumber"], GOOGLE_PHONE_SHA256);
    assert_eq!(
        rows[0]["ConversionTime"],
        platforms::microsoft::conversion_time(sale.event.timestamp)
    );
    assert_eq!(rows[1]["ConversionName"], "CRM Lead");
    assert_eq!(report.requests[0].target, RequestTarget::MicrosoftOAuth);
    assert_eq!(
        report.requests[1].target,
        RequestTarget::MicrosoftOfflineConversions
    );
    assert_no_secrets(
        &report,
        &[MS_REFRESH_TOKEN, MS_DEVELOPER_TOKEN, MS_ACCESS_TOKEN],
    );
}

#[tokio::test]
async fn every_attempt_sends_the_same_click_and_time_so_microsoft_counts_it_once() {
    let server = MockServer::start().await;
    mount_microsoft_oauth(&server, MS_ACCESS_TOKEN).await;
    mount_apply(&server, ResponseTemplate::new(503)).await;
    let now = OffsetDateTime::now_utc();
    let sale = with_msclkid(sale("INV-2", now));

    let first = send(&server, std::slice::from_ref(&sale)).await;
    let second = send(&server, std::slice::from_ref(&sale)).await;

    assert!(matches!(first.outcomes[0], Outcome::Retry { .. }));
    assert!(matches!(second.outcomes[0], Outcome::Retry { .. }));
    let sent = bodies(&server, APPLY_PATH).await;
    assert_eq!(sent.len(), 2);
    assert_eq!(rows(&sent[0]), rows(&sent[1]));
}

#[tokio::test]
async fn partial_errors_fail_only_the_rows_they_name() {
    let server = MockServer::start().await;
    mount_microsoft_oauth(&server, MS_ACCESS_TOKEN).await;
    mount_apply(
        &server,
        ResponseTemplate::new(200).set_body_json(json!({"PartialErrors": [
            {"Code": 4806, "ErrorCode": "OfflineConversionMicrosoftClickIdInvalid",
             "Message": "The click ID is invalid.", "Index": 1, "FieldPath": null,
             "Details": null, "Type": "BatchError"}]})),
    )
    .await;
    let now = OffsetDateTime::now_utc();
    let batch = [
        with_msclkid(sale("INV-3", now)),
        with_msclkid(sale("INV-4", now)),
        with_msclkid(sale("INV-5", now)),
    ];

    let report = send(&server, &batch).await;

    assert_eq!(report.outcomes[0], Outcome::Succeeded);
    assert!(
        matches!(&report.outcomes[1], Outcome::Permanent { error } if error.contains("4806") && error.contains("ClickIdInvalid")),
        "{:?}",
        report.outcomes[1]
    );
    assert_eq!(report.outcomes[2], Outcome::Succeeded);
    assert_requests_strict(&server).await;
}

#[tokio::test]
async fn an_expired_token_is_refreshed_once_and_the_call_sent_again() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/ms-token"))
        .and(Strict(check_microsoft_oauth))
        .respond_with(TokenSequence {
            tokens: vec!["stale-token", MS_ACCESS_TOKEN],
            expires_in: 3599,
            served: std::sync::atomic::AtomicUsize::new(0),
        })
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(APPLY_PATH))
        .and(header("authorization", "Bearer stale-token"))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({
            "TrackingId": "t-1",
            "Errors": [{"Code": 109, "ErrorCode": "AuthenticationTokenExpired",
                        "Message": "The OAuth access token has expired."}]})))
        .mount(&server)
        .await;
    mount_apply(&server, accepted()).await;
    let now = OffsetDateTime::now_utc();

    let report = send(&server, &[with_msclkid(sale("INV-6", now))]).await;

    assert_eq!(report.outcomes, [Outcome::Succeeded]);
    assert_eq!(bodies(&server, APPLY_PATH).await.len(), 2);
    assert_eq!(
        server
            .received_requests()
            .await
            .unwrap()
            .iter()
            .filter(|r| r.url.path() == "/ms-token")
            .count(),
        2
    );
}

#[tokio::test]
async fn a_429_is_retried_after_retry_after_and_a_500_with_the_backoff() {
    let server = MockServer::start().await;
    mount_microsoft_oauth(&server, MS_ACCESS_TOKEN).await;
    mount_apply(
        &server,
        ResponseTemplate::new(429).insert_header("retry-after", "120"),
    )
    .await;
    let now = OffsetDateTime::now_utc();

    let report = send(&server, &[with_msclkid(sale("INV-7", now))]).await;

    assert!(
        matches!(&report.outcomes[0], Outcome::Retry { after: Some(after), .. } if *after == Duration::from_secs(120)),
        "{:?}",
        report.outcomes
    );

    let server = MockServer::start().await;
    mount_microsoft_oauth(&server, MS_ACCESS_TOKEN).await;
    mount_apply(&server, ResponseTemplate::new(500)).await;
    let report = send(&server, &[with_msclkid(sale("INV-8", now))]).await;
    assert!(matches!(
        &report.outcomes[0],
        Outcome::Retry { after: None, .. }
    ));
}

#[tokio::test]
async fn a_whole_call_refusal_is_permanent_with_microsofts_message() {
    let server = MockServer::start().await;
    mount_microsoft_oauth(&server, MS_ACCESS_TOKEN).await;
    mount_apply(
        &server,
        ResponseTemplate::new(400).set_body_json(json!({"Errors": [{"Code": 1102,
            "ErrorCode": "CampaignServiceInvalidAccountId", "Message": "The account ID is invalid."}]})),
    )
    .await;
    let now = OffsetDateTime::now_utc();

    let report = send(&server, &[with_msclkid(sale("INV-9", now))]).await;

    assert!(
        matches!(&report.outcomes[0], Outcome::Permanent { error } if error.contains("1102")),
        "{:?}",
        report.outcomes
    );
}

#[tokio::test]
async fn consent_denied_sends_the_click_without_user_data() {
    let server = MockServer::start().await;
    mount_microsoft_oauth(&server, MS_ACCESS_TOKEN).await;
    mount_apply(&server, accepted()).await;
    let now = OffsetDateTime::now_utc();

    let report = send(
        &server,
        &[deny_user_data(with_msclkid(sale("INV-10", now)))],
    )
    .await;

    assert_eq!(report.outcomes, [Outcome::Succeeded]);
    let row = rows(&bodies(&server, APPLY_PATH).await[0])[0].clone();
    assert!(row.get("HashedEmailAddress").is_none() && row.get("HashedPhoneNumber").is_none());
    assert_eq!(row["MicrosoftClickId"], MSCLKID);
}

#[tokio::test]
async fn a_conversion_without_an_msclkid_is_skipped_and_nothing_is_sent() {
    let server = MockServer::start().await;
    let now = OffsetDateTime::now_utc();

    let report = send(&server, &[sale("INV-11", now)]).await;

    assert!(
        matches!(&report.outcomes[0], Outcome::Skipped { reason } if reason.starts_with("no_click_id")),
        "{:?}",
        report.outcomes
    );
    assert!(server.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_click_older_than_90_days_is_too_old_and_never_sent() {
    let server = MockServer::start().await;
    let now = OffsetDateTime::now_utc();
    let mut old = with_msclkid(sale("INV-12", now));
    old.attribution.click.as_mut().unwrap().clicked_at = now - time::Duration::days(91);

    let report = send(&server, &[old]).await;

    assert_eq!(
        report.outcomes,
        [Outcome::Skipped {
            reason: platforms::TOO_OLD_FOR_PLATFORM.into()
        }]
    );
    assert!(server.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn batches_are_cut_into_calls_of_1000() {
    let server = MockServer::start().await;
    mount_microsoft_oauth(&server, MS_ACCESS_TOKEN).await;
    mount_apply(&server, accepted()).await;
    let now = OffsetDateTime::now_utc();
    let batch: Vec<_> = (0..1001)
        .map(|i| with_msclkid(sale(&format!("INV-B{i}"), now)))
        .collect();

    let report = send(&server, &batch).await;

    assert!(report.outcomes.iter().all(|o| *o == Outcome::Succeeded));
    let sizes: Vec<usize> = bodies(&server, APPLY_PATH)
        .await
        .iter()
        .map(|b| rows(b).len())
        .collect();
    assert_eq!(sizes, [1000, 1]);
    assert_requests_strict(&server).await;
}

#[test]
fn the_fake_refuses_what_microsoft_refuses() {
    use wiremock::http::{HeaderMap, HeaderName, HeaderValue, Method};
    let request = |headers: &[(&str, &str)], body: Value| wiremock::Request {
        url: format!("http://127.0.0.1{APPLY_PATH}").parse().unwrap(),
        method: Method::POST,
        headers: {
            let mut map = HeaderMap::new();
            for (name, value) in headers {
                map.insert(
                    HeaderName::from_bytes(name.as_bytes()).unwrap(),
                    HeaderValue::from_str(value).unwrap(),
                );
            }
            map
        },
        body: serde_json::to_vec(&body).unwrap(),
    };
    let good_headers = [
        ("authorization", "Bearer t"),
        ("developertoken", "d"),
        ("customerid", "1"),
        ("customeraccountid", "2"),
        ("content-type", "application/json"),
    ];
    let now = platforms::microsoft::conversion_time(OffsetDateTime::now_utc());
    let good = json!({"OfflineConversions": [{"ConversionName": "Lead", "ConversionTime": now,
        "MicrosoftClickId": MSCLKID}]});
    assert!(check_microsoft(&request(&good_headers, good.clone())).is_empty());
    assert!(!check_microsoft(&request(&good_headers[1..], good)).is_empty());
    for bad in [
        json!({"OfflineConversions": []}),
        json!({"OfflineConversions": [{"ConversionName": "Lead", "ConversionTime": "2026-11-20 11:32:45",
            "MicrosoftClickId": MSCLKID}]}),
        json!({"OfflineConversions": [{"conversionName": "Lead", "ConversionTime": now,
            "MicrosoftClickId": MSCLKID}]}),
        json!({"OfflineConversions": [{"ConversionName": "Lead", "ConversionTime": now,
            "MicrosoftClickId": MSCLKID, "HashedEmailAddress": "a@b.c"}]}),
        json!({"OfflineConversions": [{"ConversionName": "Lead", "ConversionTime": now,
            "MicrosoftClickId": MSCLKID, "ConversionCurrencyCode": "EUR"}]}),
        json!({"OfflineConversions": [{"ConversionName": "Lead",
            "ConversionTime": "2020-01-01T00:00:00Z", "MicrosoftClickId": MSCLKID}]}),
    ] {
        assert!(
            !check_microsoft(&request(&good_headers, bad.clone())).is_empty(),
            "{bad}"
        );
    }
}

#[tokio::test]
async fn a_rotated_refresh_token_comes_back_in_the_destinations_credentials_and_nowhere_else() {
    let server = MockServer::start().await;
    let rotated = "M.C107_BAY.rotated-refresh-token";
    Mock::given(method("POST"))
        .and(path("/ms-token"))
        .and(Strict(check_microsoft_oauth))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "token_type": "Bearer", "scope": "https://ads.microsoft.com/msads.manage",
            "expires_in": 3599, "access_token": MS_ACCESS_TOKEN, "refresh_token": rotated})))
        .mount(&server)
        .await;
    mount_apply(&server, accepted()).await;
    let now = OffsetDateTime::now_utc();

    let report = send(&server, &[with_msclkid(sale("INV-1", now))]).await;

    assert_eq!(report.outcomes, [Outcome::Succeeded]);
    let credentials = report
        .rotated
        .as_ref()
        .and_then(|r| r.credentials())
        .expect("the rotated credentials");
    assert_eq!(credentials["refreshToken"], rotated);
    assert_eq!(credentials["developerToken"], MS_DEVELOPER_TOKEN);
    assert_eq!(credentials["clientId"], MS_CLIENT_ID);
    let shown = format!("{report:?}");
    assert!(
        !shown.contains(rotated) && !shown.contains(MS_REFRESH_TOKEN),
        "{shown}"
    );
    assert_no_secrets(&report, &[rotated, MS_REFRESH_TOKEN, MS_ACCESS_TOKEN]);

    // A token endpoint that keeps the refresh token reports nothing.
    let server = MockServer::start().await;
    mount_microsoft_oauth(&server, MS_ACCESS_TOKEN).await;
    mount_apply(&server, accepted()).await;
    let report = send(&server, &[with_msclkid(sale("INV-2", now))]).await;
    assert_eq!(report.outcomes, [Outcome::Succeeded]);
    assert!(report.rotated.is_none());
}

async fn mount_adjust(server: &MockServer, response: ResponseTemplate) {
    Mock::given(method("POST"))
        .and(path(platforms::microsoft::ADJUST_PATH))
        .and(header(
            "authorization",
            format!("Bearer {MS_ACCESS_TOKEN}").as_str(),
        ))
        .and(Strict(check_microsoft_adjustments))
        .respond_with(response)
        .named("apply offline conversion adjustments")
        .mount(server)
        .await;
}

async fn adjustment_rows(server: &MockServer) -> Vec<Value> {
    let requests = server.received_requests().await.unwrap();
    let adjust = requests
        .iter()
        .find(|r| r.url.path() == platforms::microsoft::ADJUST_PATH)
        .unwrap();
    let body: Value = serde_json::from_slice(&adjust.body).unwrap();
    body["OfflineConversionAdjustments"]
        .as_array()
        .unwrap()
        .clone()
}

#[tokio::test]
async fn a_restatement_is_a_restate_adjustment_of_the_goal_click_and_time_with_the_new_total() {
    use platforms::Platform;
    let server = MockServer::start().await;
    mount_microsoft_oauth(&server, MS_ACCESS_TOKEN).await;
    mount_adjust(
        &server,
        ResponseTemplate::new(200).set_body_json(json!({"PartialErrors": [
            {"Code": 4832, "ErrorCode": "OfflineConversionAdjustmentValueNotExpected",
             "Message": "not expected", "Index": 1, "Type": "BatchError"}]})),
    )
    .await;
    let now = OffsetDateTime::now_utc();
    let mut first = with_msclkid(sale("INV-1", now));
    let mut second = with_msclkid(sale("INV-2", now));
    for (conversion, amount) in [(&mut first, "70.5"), (&mut second, "0")] {
        let currency = conversion.event.value.unwrap().currency();
        conversion.event.value =
            Some(events::Money::new(amount.parse().unwrap(), currency).unwrap());
    }
    assert!(MicrosoftAds.supports_restatement(&microsoft_config()));

    let report = MicrosoftAds
        .restate(
            &platforms(&server, TIMEOUT),
            &microsoft_config(),
            &microsoft_creds(),
            &[first.clone(), second],
            now,
        )
        .await;

    assert_eq!(report.outcomes[0], Outcome::Succeeded);
    assert!(
        matches!(&report.outcomes[1], Outcome::Permanent { error } if error.contains("4832")),
        "{:?}",
        report.outcomes[1]
    );
    assert_requests_strict(&server).await;
    let rows = adjustment_rows(&server).await;
    assert_eq!(rows[0]["AdjustmentType"], "Restate");
    assert_eq!(rows[0]["AdjustmentValue"], json!(70.5));
    assert_eq!(rows[0]["AdjustmentCurrencyCode"], "EUR");
    assert_eq!(rows[1]["AdjustmentValue"], json!(0.0));
    // The conversion it adjusts, as it was sent.
    assert_eq!(rows[0]["ConversionName"], "Offline Purchase");
    assert_eq!(rows[0]["MicrosoftClickId"], MSCLKID);
    assert_eq!(
        rows[0]["ConversionTime"],
        platforms::microsoft::conversion_time(first.event.timestamp)
    );
    assert_eq!(
        report.requests[1].target,
        RequestTarget::MicrosoftOfflineConversionAdjustments
    );
}

#[tokio::test]
async fn a_retraction_is_a_retract_adjustment_without_a_value() {
    use platforms::Platform;
    let server = MockServer::start().await;
    mount_microsoft_oauth(&server, MS_ACCESS_TOKEN).await;
    mount_adjust(&server, accepted()).await;
    let now = OffsetDateTime::now_utc();
    assert!(MicrosoftAds.supports_retraction(&microsoft_config()));

    let report = MicrosoftAds
        .retract(
            &platforms(&server, TIMEOUT),
            &microsoft_config(),
            &microsoft_creds(),
            &[with_msclkid(sale("INV-1", now))],
            now,
        )
        .await;

    assert_eq!(report.outcomes, [Outcome::Succeeded]);
    assert_requests_strict(&server).await;
    let rows = adjustment_rows(&server).await;
    assert_eq!(rows[0]["AdjustmentType"], "Retract");
    assert!(rows[0].get("AdjustmentValue").is_none());
}

#[tokio::test]
async fn a_restatement_without_an_msclkid_is_skipped_and_nothing_is_sent() {
    use platforms::Platform;
    let server = MockServer::start().await;
    let now = OffsetDateTime::now_utc();
    let report = MicrosoftAds
        .restate(
            &platforms(&server, TIMEOUT),
            &microsoft_config(),
            &microsoft_creds(),
            &[sale("INV-1", now)],
            now,
        )
        .await;
    assert!(
        matches!(&report.outcomes[0], Outcome::Skipped { reason } if reason.starts_with("no_click_id")),
        "{:?}",
        report.outcomes[0]
    );
    assert!(server.received_requests().await.unwrap().is_empty());
}
