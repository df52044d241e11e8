//! The edge under hostile clients: slow bodies are cut off with 408, one address cannot hold
//! more requests in progress than the cap, and a request with two Authorization headers is
//! refused before either is read.

use std::time::Duration;

use serde_json::Value;

use crate::helpers::*;

/// A body that sends a few bytes, then nothing for `stall`.
fn stalling_body(stall: Duration) -> reqwest::Body {
    let chunks = futures_util::stream::unfold(0u8, move |step| async move {
        match step {
            0 => Some((Ok::<_, std::io::Error>(b"{\"resourceType\":".to_vec()), 1)),
            1 => {
                tokio::time::sleep(stall).await;
                Some((Ok(b"\"Bundle\"}".to_vec()), 2))
            }
            _ => None,
        }
    });
    reqwest::Body::wrap_stream(chunks)
}

#[tokio::test]
async fn a_body_that_does_not_arrive_in_time_gets_408_with_an_operation_outcome() {
    let app = spawn_app_with(|s| s.server.body_timeout_secs = 1).await;
    let token = app.token_for("prison").await;
    let response = app
        .client_for("prison")
        .post(app.url("/fhir/$validate"))
        .bearer_auth(&token)
        .header("Content-Type", FHIR_JSON)
        .body(stalling_body(Duration::from_secs(4)))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 408);
    let outcome: Value = response.json().await.unwrap();
    assert_outcome_code(&outcome, "GW-REQ-07");
}

#[tokio::test]
async fn one_address_cannot_hold_more_requests_in_progress_than_the_cap() {
    let app = spawn_app_with(|s| {
        s.server.max_in_flight_per_ip = 1;
        s.server.body_timeout_secs = 10;
    })
    .await;
    let token = app.token_for("prison").await;
    let slow = {
        let client = app.client_for("prison");
        let url = app.url("/fhir/$validate");
        let token = token.clone();
        tokio::spawn(async move {
            client
                .post(url)
                .bearer_auth(&token)
                .header("Content-Type", FHIR_JSON)
                .body(stalling_body(Duration::from_secs(2)))
                .send()
                .await
                .map(|r| r.status().as_u16())
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let response = app
        .client_for("prison")
        .get(app.url("/fhir/metadata"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 429);
    assert!(response.headers().get("Retry-After").is_some());
    let outcome: Value = response.json().await.unwrap();
    assert_outcome_code(&outcome, "GW-RATE-02");
    // Once the slow request is answered, the address is served again.
    assert_eq!(slow.await.unwrap().unwrap(), 200);
    let response = app
        .client_for("prison")
        .get(app.url("/fhir/metadata"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
}

#[tokio::test]
async fn two_authorization_headers_are_refused_with_400() {
    let app = spawn_app().await;
    let token = app.token_for("prison").await;
    let response = app
        .client_for("prison")
        .get(app.url("/fhir/Task"))
        .header("Authorization", format!("Bearer {token}"))
        .header("Authorization", "Bearer garbage")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    let outcome: Value = response.json().await.unwrap();
    assert_outcome_code(&outcome, "GW-REQ-06");
}

/// The gateway carries its own FHIR packages and fails closed: a configured package that is
/// missing stops start-up (it would otherwise accept documents it cannot check), unless the
/// development flag is given, and `/readyz` says what was loaded.
#[tokio::test]
async fn the_gateway_refuses_to_start_without_its_fhir_packages_unless_told_to() {
    use throughcare::startup::{Application, BuildOptions};
    let dir = tempfile::tempdir().unwrap();
    let mut settings = test_settings(&dir.path().join("data"));
    settings
        .fhir
        .packages
        .push(dir.path().join("no-such-package"));
    let options = BuildOptions {
        disable_signals: true,
        ..BuildOptions::default()
    };
    let refused = Application::build_with(settings.clone(), options.clone()).await;
    let message = format!("{:#}", refused.err().expect("start-up is refused"));
    assert!(
        message.contains("FHIR package folder is missing"),
        "{message}"
    );
    settings.fhir.allow_missing_packages = true;
    let app = Application::build_with(settings, options)
        .await
        .expect("the development flag lets it start");
    let url = format!("{}/readyz", app.public_url());
    let handle = app.handle();
    let server = tokio::spawn(app.run_until_stopped());
    let ready: Value = throughcare::client::http_client(&ca_pem(), None)
        .unwrap()
        .get(url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        ready["fhir"]["packages"].as_array().unwrap().len(),
        4,
        "{ready}"
    );
    assert!(
        ready["fhir"]["missingPackages"][0]
            .as_str()
            .unwrap()
            .ends_with("no-such-package"),
        "{ready}"
    );
    assert!(ready["fhir"]["profiles"].as_u64().unwrap() > 500, "{ready}");
    // Invariants this evaluator cannot compile are counted, not hidden.
    assert!(
        ready["fhir"]["invariantsNotEvaluated"].as_u64().is_some(),
        "{ready}"
    );
    handle.stop(true).await;
    let _ = server.await;
}
