//! Administration is scoped and separated: agreements are written by the gateway operator
//! (`admin`) only, an ICB changes only the endpoints of its area, endpoints are `https`, and
//! pointing an existing endpoint elsewhere raises an alert (audited, counted).

use serde_json::{Value, json};

use crate::helpers::*;

/// The current version of agreement `id`, as an ICB reads it.
async fn current_agreement(app: &TestApp, id: &str) -> Value {
    let icb = app.token_for("icb").await;
    let (status, _, body) = status_and_json(
        app.get_as("icb", &icb, &format!("/admin/agreements/{id}"), &[])
            .await,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body["current"]["agreement"].clone()
}

/// PUTs `agreement` as `who`; status and body.
async fn put_agreement_as(app: &TestApp, who: &str, agreement: &Value) -> (u16, Value) {
    let token = app.token_for(who).await;
    let id = agreement["id"].as_str().unwrap();
    let response = app
        .send_as(
            reqwest::Method::PUT,
            who,
            Some(&token),
            &format!("/admin/agreements/{id}"),
            "application/json",
            agreement.to_string(),
        )
        .await;
    let (status, _, body) = status_and_json(response).await;
    (status, body)
}

/// PUTs an endpoint for `ods` as `who`; status and body.
async fn put_endpoint_as(app: &TestApp, who: &str, ods: &str, body: &Value) -> (u16, Value) {
    let token = app.token_for(who).await;
    let response = app
        .send_as(
            reqwest::Method::PUT,
            who,
            Some(&token),
            &format!("/admin/endpoints/{ods}"),
            "application/json",
            body.to_string(),
        )
        .await;
    let (status, _, body) = status_and_json(response).await;
    (status, body)
}

fn endpoint(url: &str) -> Value {
    json!({"url": url, "profile": "uk-core-r4"})
}

async fn endpoint_urls(app: &TestApp) -> Vec<(String, String)> {
    let admin = app.token_for("admin").await;
    let (status, _, body) =
        status_and_json(app.get_as("admin", &admin, "/admin/endpoints", &[]).await).await;
    assert_eq!(status, 200, "{body}");
    body["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["ods"].as_str().unwrap().to_string(),
                e["url"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn detail(entry: &throughcare::audit::AuditEntry) -> Value {
    serde_json::from_str(&entry.detail).expect("detail is JSON")
}

#[tokio::test]
async fn an_icb_may_read_agreements_but_not_write_or_retire_them() {
    let mut app = spawn_app().await;
    let mut widened = current_agreement(&app, "prison-to-icb").await;
    let version = widened["version"].as_i64().unwrap();
    widened["version"] = json!(version + 1);
    widened["sensitive_permitted"] = json!(["ETH", "PSY", "HIV"]);

    let (status, body) = put_agreement_as(&app, "icb", &widened).await;
    assert_eq!(status, 403, "{body}");
    assert_outcome_code(&body, "GW-AUTH-04");
    let icb = app.token_for("icb").await;
    let (status, _, body) = status_and_json(
        app.delete_as("icb", &icb, "/admin/agreements/prison-to-icb")
            .await,
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert_outcome_code(&body, "GW-AUTH-04");

    // Nothing changed.
    let current = current_agreement(&app, "prison-to-icb").await;
    assert_eq!(current["version"], version);
    assert_eq!(current["sensitive_permitted"], json!([]));

    app.stop().await;
    let entries = app.audit_entries().await;
    let denied: Vec<Value> = entries
        .iter()
        .filter(|e| e.action == "access-denied" && e.actor_client.as_deref() == Some("icb"))
        .map(detail)
        .collect();
    assert_eq!(denied.len(), 2, "{denied:?}");
    assert!(
        entries
            .iter()
            .filter(|e| e.action == "agreement-changed")
            .all(|e| e.actor_client.as_deref() == Some("agreement-file")),
        "no agreement was changed by the ICB"
    );
}

#[tokio::test]
async fn the_admin_writes_and_retires_agreements() {
    let mut app = spawn_app().await;
    let mut next = current_agreement(&app, "prison-to-icb").await;
    let version = next["version"].as_i64().unwrap();
    next["version"] = json!(version + 1);
    next["review_date"] = json!("2027-03-31");
    let (status, body) = put_agreement_as(&app, "admin", &next).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["versionAfter"], version + 1);

    let admin = app.token_for("admin").await;
    let (status, _, body) = status_and_json(
        app.delete_as("admin", &admin, "/admin/agreements/prison-to-drug-service")
            .await,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "retired");

    app.stop().await;
    let entries = app.audit_entries().await;
    let by_admin: Vec<Value> = entries
        .iter()
        .filter(|e| e.action == "agreement-changed" && e.actor_client.as_deref() == Some("admin"))
        .map(detail)
        .collect();
    assert_eq!(by_admin.len(), 2, "{by_admin:?}");
    assert_eq!(by_admin[0]["agreement"], "prison-to-icb");
    assert_eq!(by_admin[1]["status"], "retired");
}

#[tokio::test]
async fn an_icb_may_not_redirect_an_endpoint_outside_its_area() {
    let mut app = spawn_app().await;
    // B86001 is not in the sample ICB's area (A99*, X99001); X99002 is not either.
    for ods in ["B86001", "X99002"] {
        let (status, body) = put_endpoint_as(
            &app,
            "icb",
            ods,
            &endpoint("https://attacker.example.org/fhir"),
        )
        .await;
        assert_eq!(status, 403, "{ods}: {body}");
        assert_outcome_code(&body, "GW-ADMIN-05");
        assert!(diagnostics(&body).contains(ods), "{body}");
    }
    // Inside its area, and its own endpoint: accepted.
    for ods in ["A99001", "X99001", "Q99"] {
        let (status, body) = put_endpoint_as(
            &app,
            "icb",
            ods,
            &endpoint(&format!(
                "https://{}.example.nhs.uk/fhir",
                ods.to_lowercase()
            )),
        )
        .await;
        assert_eq!(status, 200, "{ods}: {body}");
    }
    // The gateway operator administers every organisation.
    let (status, body) = put_endpoint_as(
        &app,
        "admin",
        "B86001",
        &endpoint("https://b86001.example.nhs.uk/fhir"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    // Other roles may not change endpoints at all.
    let (status, body) = put_endpoint_as(
        &app,
        "gp",
        "A99001",
        &endpoint("https://attacker.example.org/fhir"),
    )
    .await;
    assert_eq!(status, 403, "{body}");

    let urls = endpoint_urls(&app).await;
    assert!(
        !urls.iter().any(|(_, u)| u.contains("attacker")),
        "no refused change was stored: {urls:?}"
    );
    assert!(urls.contains(&(
        "B86001".to_string(),
        "https://b86001.example.nhs.uk/fhir".to_string()
    )));

    app.stop().await;
    let entries = app.audit_entries().await;
    let refused = entries
        .iter()
        .filter(|e| e.action == "input-rejected" && e.actor_client.as_deref() == Some("icb"))
        .count();
    assert_eq!(refused, 2, "each refusal is audited");
}

#[tokio::test]
async fn an_endpoint_url_must_be_https() {
    let app = spawn_app().await;
    for url in [
        "http://gp.example.nhs.uk/fhir",
        "ftp://gp.example.nhs.uk/fhir",
        // Loopback http without the development flag (the test settings leave it off).
        "http://127.0.0.1:9/fhir",
        "not a url",
    ] {
        let (status, body) = put_endpoint_as(&app, "admin", "A99001", &endpoint(url)).await;
        assert_eq!(status, 422, "{url}: {body}");
        assert_outcome_code(&body, "GW-ADMIN-03");
        assert_expression(&body, "url");
    }
    let (status, body) = put_endpoint_as(
        &app,
        "admin",
        "A99001",
        &json!({"url": "https://gp.example.nhs.uk/fhir", "profile": "uk-core-r4",
                "auth": {"token_url": "http://gp.example.nhs.uk/token"}}),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert_expression(&body, "auth.token_url");
    assert!(endpoint_urls(&app).await.is_empty(), "nothing was stored");
    let (status, body) = put_endpoint_as(
        &app,
        "admin",
        "A99001",
        &endpoint("https://gp.example.nhs.uk/fhir"),
    )
    .await;
    assert_eq!(status, 200, "{body}");

    // With the development flag set explicitly, loopback http is accepted (and only loopback).
    let app = spawn_app_with(|s| s.delivery.allow_loopback_http = true).await;
    let (status, body) = put_endpoint_as(
        &app,
        "admin",
        "A99001",
        &endpoint("http://127.0.0.1:9/fhir"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = put_endpoint_as(
        &app,
        "admin",
        "A99001",
        &endpoint("http://gp.example.nhs.uk/fhir"),
    )
    .await;
    assert_eq!(status, 422, "{body}");
}

#[tokio::test]
async fn redirecting_an_endpoint_raises_an_audited_alert_and_a_metric() {
    let mut app = spawn_app().await;
    let first = "https://gp.example.nhs.uk/fhir";
    let second = "https://elsewhere.example.org/fhir";
    // A new endpoint is a change, not a redirect; the same URL again is not a redirect either.
    for url in [first, first, second] {
        let (status, body) = put_endpoint_as(&app, "icb", "A99001", &endpoint(url)).await;
        assert_eq!(status, 200, "{body}");
    }
    let metrics = app
        .client_for("icb")
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("throughcare_endpoint_redirects_total 1"),
        "{metrics}"
    );

    app.stop().await;
    let entries = app.audit_entries().await;
    let changed: Vec<Value> = entries
        .iter()
        .filter(|e| e.action == "endpoint-changed")
        .map(detail)
        .collect();
    assert_eq!(changed.len(), 3, "{changed:?}");
    assert_eq!(changed[0]["urlBefore"], Value::Null);
    assert_eq!(changed[2]["urlBefore"], first);
    assert_eq!(changed[2]["url"], second);
    let redirected: Vec<&throughcare::audit::AuditEntry> = entries
        .iter()
        .filter(|e| e.action == "endpoint-redirected")
        .collect();
    assert_eq!(redirected.len(), 1, "one alert, for the one redirect");
    let alert = detail(redirected[0]);
    assert_eq!(alert["alert"], true);
    assert_eq!(alert["urlBefore"], first);
    assert_eq!(alert["url"], second);
    assert_eq!(redirected[0].actor_client.as_deref(), Some("icb"));
    let entities: Vec<String> = serde_json::from_str(&redirected[0].entities).unwrap();
    assert_eq!(entities, vec!["Endpoint/A99001".to_string()]);
}
