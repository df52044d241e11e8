//! Abuse resistance: rate limits per client and per source address, failed authentications
//! sampled into the audit log, and no NHS number in any log line.

use serde_json::Value;

use crate::helpers::*;

/// Small limits: a burst of `burst`, then one request a second.
fn tight(burst: u32) -> impl FnOnce(&mut throughcare::config::Settings) {
    move |s| {
        let r = &mut s.rate_limits;
        r.per_client_per_second = 1;
        r.per_client_burst = burst;
        r.per_ip_per_second = 1;
        r.per_ip_burst = burst;
    }
}

fn retry_after(headers: &reqwest::header::HeaderMap) -> u64 {
    headers
        .get("Retry-After")
        .expect("a Retry-After header")
        .to_str()
        .unwrap()
        .parse()
        .expect("Retry-After in seconds")
}

#[tokio::test]
async fn fhir_requests_past_the_client_burst_get_429_with_retry_after() {
    let app = spawn_app_with(|s| {
        tight(5)(s);
        // Token requests are counted by address: leave room for two.
        s.rate_limits.per_ip_burst = 10;
    })
    .await;
    let token = app.token_for("prison").await;
    for _ in 0..5 {
        let response = app.get_bundle(&token, "unknown").await;
        assert_eq!(response.status().as_u16(), 404, "within the burst");
    }
    let response = app.get_bundle(&token, "unknown").await;
    let (status, headers, outcome) = status_and_json(response).await;
    assert_eq!(status, 429, "{outcome}");
    assert!(retry_after(&headers) >= 1);
    assert_outcome_code(&outcome, "GW-RATE-01");
    assert_eq!(issues(&outcome)[0]["code"], "throttled");

    // Another client behind the same address has its own bucket.
    let gp = app.token_for("gp").await;
    let response = app.get_as("gp", &gp, "/admin/endpoints", &[]).await;
    assert_ne!(response.status().as_u16(), 429);
}

#[tokio::test]
async fn token_requests_past_the_address_burst_get_429_in_rfc6749_json() {
    let app = spawn_app_with(tight(3)).await;
    for _ in 0..3 {
        let assertion = app.sign(&app.assertion_claims("prison"), "prison");
        let (status, body) = app.exchange(&assertion).await;
        assert_eq!(status, 200, "within the burst: {body}");
    }
    let assertion = app.sign(&app.assertion_claims("prison"), "prison");
    let response = app
        .client_for("prison")
        .post(app.token_url())
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_assertion_type", ASSERTION_TYPE),
            ("client_assertion", &assertion),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 429);
    assert!(retry_after(response.headers()) >= 1);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    let body: Value = response.json().await.unwrap();
    assert_oauth_error(&body, "temporarily_unavailable", "too many requests");
}

#[tokio::test]
async fn failed_authentications_count_against_the_address_but_valid_clients_go_on() {
    let app = spawn_app_with(tight(3)).await;
    // One token request (counted against the address), then bad tokens until the burst is
    // spent.
    let token = app.token_for("prison").await;
    let http = app.client_for("prison");
    let bad = |http: &reqwest::Client| {
        http.get(app.url("/fhir/Bundle/unknown"))
            .bearer_auth("not-a-token")
            .send()
    };
    for _ in 0..2 {
        assert_eq!(bad(&http).await.unwrap().status().as_u16(), 401);
    }
    let response = bad(&http).await.unwrap();
    let (status, headers, outcome) = status_and_json(response).await;
    assert_eq!(status, 429, "{outcome}");
    assert!(retry_after(&headers) >= 1);
    assert_outcome_code(&outcome, "GW-RATE-01");
    // An authenticated client is counted by client, not by the address it shares.
    let response = app.get_bundle(&token, "unknown").await;
    assert_eq!(response.status().as_u16(), 404);
}

#[tokio::test]
async fn a_flood_of_bad_token_requests_is_audited_as_a_few_sampled_entries() {
    let mut app = spawn_app().await;
    let http = app.client_for("prison");
    // Half name the prison but are signed with another key; half name a made-up client with a
    // very long id.
    let wrong_key = app.sign(&app.assertion_claims("prison"), "gp");
    let long_id = "x".repeat(5000);
    let unknown = app.sign(&app.assertion_claims(&long_id), "prison");
    for i in 0..200 {
        let assertion = if i % 2 == 0 { &wrong_key } else { &unknown };
        let (status, body) = app
            .token_request(
                &http,
                &[
                    ("grant_type", "client_credentials"),
                    ("client_assertion_type", ASSERTION_TYPE),
                    ("client_assertion", assertion),
                ],
            )
            .await;
        assert_eq!(status, 401, "{body}");
    }
    app.stop().await;
    let entries = app.audit_entries().await;
    let failed: Vec<_> = entries
        .iter()
        .filter(|e| e.action == "authentication-failed")
        .collect();
    // Per key (the registered client, the address for the unknown one): the first failure at
    // once, the rest folded into one entry written when the gateway stopped.
    assert!(
        (2..=4).contains(&failed.len()),
        "{} authentication-failed entries for 200 failures",
        failed.len()
    );
    let mut total = 0;
    for entry in &failed {
        let detail: Value = serde_json::from_str(&entry.detail).unwrap();
        total += detail["failures"].as_u64().expect("a count of failures");
        assert!(entry.detail.len() < 1000, "{}", entry.detail);
        if let Some(client) = &entry.actor_client {
            assert!(client.chars().count() <= 64, "{client}");
        }
    }
    assert_eq!(total, 200, "every failure is counted");
}

#[tokio::test]
async fn no_nhs_number_reaches_the_log_for_a_patient_read() {
    let app = spawn_app().await;
    let prison = app.token_for("prison").await;
    let (release, _) = unique_release();
    let (status, _, outcome) =
        status_and_json(app.post_bundle(&prison, FHIR_JSON, release).await).await;
    assert_eq!(status, 201, "{outcome}");
    let gp = app.token_for("gp").await;
    for path in [
        format!("/fhir/Patient/{SAMPLE_NHS_NUMBER}"),
        format!("/fhir/Patient/{SAMPLE_NHS_NUMBER}/$everything"),
    ] {
        let response = app.get_as("gp", &gp, &path, &[]).await;
        assert_eq!(response.status().as_u16(), 200, "{path}");
    }
    let identifier = format!("https://fhir.nhs.uk/Id/nhs-number|{SAMPLE_NHS_NUMBER}");
    let response = app
        .get_as("gp", &gp, "/fhir/Patient", &[("identifier", &identifier)])
        .await;
    assert_eq!(response.status().as_u16(), 200);
    // A failed authentication on a patient's path is logged and audited without it too.
    let response = app
        .client_for("gp")
        .get(app.url(&format!("/fhir/Patient/{SAMPLE_NHS_NUMBER}")))
        .bearer_auth("not-a-token")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 401);

    let log = captured_log();
    assert!(
        log.contains("GET /fhir/Patient/********** 200"),
        "the read is in the access log, masked"
    );
    assert!(log.contains("GET /fhir/Patient/**********/$everything 200"));
    assert!(
        !log.contains(SAMPLE_NHS_NUMBER),
        "an NHS number reached the log: {}",
        log.lines()
            .filter(|l| l.contains(SAMPLE_NHS_NUMBER))
            .collect::<Vec<_>>()
            .join("\n")
    );
}
