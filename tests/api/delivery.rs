//! Push delivery: outbox rows written with the document, workers with retries, dead letter,
//! replay, restart safety by idempotency key, and deadlines. Recipients are small actix apps.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use serde_json::{Value, json};

use crate::helpers::*;

/// What the recipient does with the next request.
#[derive(Clone, Debug)]
pub(crate) enum Answer {
    Status(u16),
    StatusRetryAfter(u16, u64),
    /// Wait this long, then answer 200.
    Slow(Duration),
}

#[derive(Clone, Debug)]
pub(crate) struct Received {
    at: Instant,
    idempotency_key: String,
    correlation_id: String,
    request_id: String,
    authorization: String,
    pub(crate) body: String,
}

#[derive(Clone, Default)]
pub(crate) struct Recipient {
    script: Arc<Mutex<VecDeque<Answer>>>,
    pub(crate) received: Arc<Mutex<Vec<Received>>>,
}

async fn receive(req: HttpRequest, body: web::Bytes, r: web::Data<Recipient>) -> HttpResponse {
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    r.received.lock().unwrap().push(Received {
        at: Instant::now(),
        idempotency_key: header("Idempotency-Key"),
        correlation_id: header("X-Correlation-ID"),
        request_id: header("X-Request-ID"),
        authorization: header("Authorization"),
        body: String::from_utf8_lossy(&body).to_string(),
    });
    let next = r
        .script
        .lock()
        .unwrap()
        .pop_front()
        .unwrap_or(Answer::Status(200));
    match next {
        Answer::Status(code) => {
            HttpResponse::build(actix_web::http::StatusCode::from_u16(code).unwrap()).finish()
        }
        Answer::StatusRetryAfter(code, secs) => {
            HttpResponse::build(actix_web::http::StatusCode::from_u16(code).unwrap())
                .insert_header(("Retry-After", secs.to_string()))
                .finish()
        }
        Answer::Slow(d) => {
            tokio::time::sleep(d).await;
            HttpResponse::Ok().finish()
        }
    }
}

/// The recipient's token endpoint: checks the gateway's form and answers a fixed token.
async fn issue_token(form: web::Form<std::collections::HashMap<String, String>>) -> HttpResponse {
    let ok = form.get("grant_type").map(String::as_str) == Some("client_credentials")
        && form
            .get("client_assertion")
            .is_some_and(|a| a.split('.').count() == 3);
    if ok {
        HttpResponse::Ok()
            .json(json!({"access_token": "tok-123", "token_type": "bearer", "expires_in": 300}))
    } else {
        HttpResponse::BadRequest().finish()
    }
}

/// Starts a recipient answering `script` in order (then 200), returning its URL.
pub(crate) async fn recipient(script: Vec<Answer>) -> (String, Recipient) {
    let state = Recipient {
        script: Arc::new(Mutex::new(script.into())),
        ..Default::default()
    };
    let data = web::Data::new(state.clone());
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .route("/fhir/Bundle", web::post().to(receive))
            .route("/token", web::post().to(issue_token))
    })
    .workers(1)
    .disable_signals()
    .bind(("127.0.0.1", 0))
    .unwrap();
    let port = server.addrs()[0].port();
    tokio::spawn(server.run());
    (format!("http://127.0.0.1:{port}/fhir/Bundle"), state)
}

pub(crate) fn fast(settings: &mut throughcare::config::Settings) {
    settings.delivery.allow_loopback_http = true;
    settings.delivery.poll_interval_ms = 50;
    settings.delivery.backoff_base_ms = 20;
    settings.delivery.backoff_cap_secs = 2;
    settings.delivery.max_attempts = 4;
    settings.delivery.timeout_secs = 1;
}

async fn register(app: &TestApp, ods: &str, url: &str) {
    register_as(app, ods, url, "uk-core-r4").await;
}

pub(crate) async fn register_as(app: &TestApp, ods: &str, url: &str, profile: &str) {
    // The gateway operator may register an endpoint for any organisation.
    let admin = app.token_for("admin").await;
    let response = app
        .put_json(
            "admin",
            &admin,
            &format!("/admin/endpoints/{ods}"),
            &json!({"url": url, "profile": profile}),
        )
        .await;
    assert_eq!(
        response.status().as_u16(),
        200,
        "{}",
        response.text().await.unwrap()
    );
}

async fn submit_release(app: &TestApp) -> String {
    let (release, _) = unique_release();
    submit_document(app, release).await
}

/// Submits a prison document; its stored id.
pub(crate) async fn submit_document(app: &TestApp, document: String) -> String {
    let token = app.token_for("prison").await;
    let (status, headers, outcome) =
        status_and_json(app.post_bundle(&token, FHIR_JSON, document).await).await;
    assert_eq!(status, 201, "{outcome}");
    headers
        .get("location")
        .unwrap()
        .to_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_string()
}

async fn tasks(app: &TestApp, who: &str, document: &str) -> Vec<Value> {
    let token = app.token_for(who).await;
    let response = app
        .get_as(who, &token, "/fhir/Task", &[("focus", document)])
        .await;
    assert_eq!(response.status().as_u16(), 200);
    let bundle: Value = response.json().await.unwrap();
    bundle["entry"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|e| e["resource"].clone())
        .collect()
}

/// Waits until the recipient's Task for `document` reaches `status` (or panics after 20 s).
pub(crate) async fn wait_for(app: &TestApp, document: &str, owner: &str, status: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let all = tasks(app, "prison", document).await;
        if let Some(t) = all
            .iter()
            .find(|t| t["owner"]["identifier"]["value"] == owner && t["status"] == status)
        {
            return t.clone();
        }
        assert!(
            Instant::now() < deadline,
            "Task for {owner} never reached {status}: {all:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_release_is_pushed_to_the_gp_with_stable_ids_and_no_custody_data() {
    let (url, gp) = recipient(vec![]).await;
    let app = spawn_app_with(fast).await;
    register(&app, "A99001", &url).await;
    let document = submit_release(&app).await;
    let task = wait_for(&app, &document, "A99001", "completed").await;
    let received = gp.received.lock().unwrap().clone();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].idempotency_key, task["id"].as_str().unwrap());
    assert_eq!(received[0].correlation_id, document);
    assert!(!received[0].request_id.is_empty());
    for secret in ["A1234BC", "HB2-3-014", "not to share cell", "322696004"] {
        assert!(
            !received[0].body.contains(secret),
            "{secret} reached the GP"
        );
    }
    assert!(received[0].body.contains("2.50"));
    // The drug service has no endpoint: its Task waits for a pull.
    let all = tasks(&app, "prison", &document).await;
    let drug = all
        .iter()
        .find(|t| t["owner"]["identifier"]["value"] == "X99001")
        .unwrap();
    assert_eq!(drug["status"], "requested");
    assert_eq!(drug["businessStatus"]["coding"][0]["code"], "awaiting-pull");
    // The recipient sees its own Task too.
    let own = tasks(&app, "gp", &document).await;
    assert_eq!(own.len(), 1, "the GP sees only its Task: {own:?}");
}

#[tokio::test]
async fn two_503s_then_200_is_three_attempts_and_one_delivery() {
    let (url, gp) = recipient(vec![Answer::Status(503), Answer::Status(503)]).await;
    let mut app = spawn_app_with(fast).await;
    register(&app, "A99001", &url).await;
    let document = submit_release(&app).await;
    let task = wait_for(&app, &document, "A99001", "completed").await;
    let received = gp.received.lock().unwrap().clone();
    assert_eq!(received.len(), 3);
    assert!(
        received
            .iter()
            .all(|r| r.idempotency_key == task["id"].as_str().unwrap())
    );
    let ids: std::collections::BTreeSet<_> =
        received.iter().map(|r| r.request_id.clone()).collect();
    assert_eq!(ids.len(), 3, "each attempt has its own request id");
    app.stop().await;
    let entries = app.audit_entries().await;
    let count = |a: &str| entries.iter().filter(|e| e.action == a).count();
    assert_eq!(count("delivery-completed"), 1);
    assert_eq!(count("delivery-attempted"), 2);
}

#[tokio::test]
async fn a_400_fails_the_delivery_without_retry() {
    let (url, gp) = recipient(vec![Answer::Status(400)]).await;
    let app = spawn_app_with(fast).await;
    register(&app, "A99001", &url).await;
    let document = submit_release(&app).await;
    let task = wait_for(&app, &document, "A99001", "failed").await;
    assert_eq!(
        task["businessStatus"]["coding"][0]["code"],
        "permanent-error"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(gp.received.lock().unwrap().len(), 1, "no retry after a 400");
}

#[tokio::test]
async fn a_timeout_is_retried() {
    let (url, gp) = recipient(vec![Answer::Slow(Duration::from_millis(2500))]).await;
    let app = spawn_app_with(fast).await;
    register(&app, "A99001", &url).await;
    let document = submit_release(&app).await;
    wait_for(&app, &document, "A99001", "completed").await;
    assert!(gp.received.lock().unwrap().len() >= 2);
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let (url, gp) = recipient(vec![Answer::StatusRetryAfter(429, 1)]).await;
    let app = spawn_app_with(fast).await;
    register(&app, "A99001", &url).await;
    let document = submit_release(&app).await;
    wait_for(&app, &document, "A99001", "completed").await;
    let received = gp.received.lock().unwrap().clone();
    assert_eq!(received.len(), 2);
    // Backoff alone would wait at most 20 ms here; the recipient asked for a second.
    assert!(received[1].at.duration_since(received[0].at) >= Duration::from_millis(950));
}

#[tokio::test]
async fn exhausted_attempts_go_to_the_dead_letter_and_a_replay_succeeds() {
    let (url, gp) = recipient(vec![Answer::Status(500); 4]).await;
    let app = spawn_app_with(fast).await;
    register(&app, "A99001", &url).await;
    let document = submit_release(&app).await;
    let task = wait_for(&app, &document, "A99001", "failed").await;
    assert_eq!(task["businessStatus"]["coding"][0]["code"], "dead-letter");
    assert_eq!(gp.received.lock().unwrap().len(), 4);
    let icb = app.token_for("icb").await;
    let listed: Value = app
        .get_as(
            "icb",
            &icb,
            "/admin/deliveries",
            &[("business-status", "dead-letter")],
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        listed["deliveries"].as_array().unwrap().len(),
        1,
        "{listed}"
    );
    let id = task["id"].as_str().unwrap();
    let response = app
        .send_as(
            reqwest::Method::POST,
            "icb",
            Some(&icb),
            &format!("/admin/deliveries/{id}/retry"),
            "application/json",
            "",
        )
        .await;
    assert_eq!(response.status().as_u16(), 202);
    wait_for(&app, &document, "A99001", "completed").await;
    assert_eq!(gp.received.lock().unwrap().len(), 5);
    // Replaying a completed delivery is refused.
    let response = app
        .send_as(
            reqwest::Method::POST,
            "icb",
            Some(&icb),
            &format!("/admin/deliveries/{id}/retry"),
            "application/json",
            "",
        )
        .await;
    assert_eq!(response.status().as_u16(), 409);
}

#[tokio::test]
async fn a_restart_mid_delivery_delivers_exactly_once_by_idempotency_key() {
    // The first push hangs past the gateway's shutdown; the recipient keeps what it saw.
    let (url, gp) = recipient(vec![Answer::Slow(Duration::from_secs(3))]).await;
    let app = spawn_app_with(|s| {
        fast(s);
        s.delivery.timeout_secs = 10;
    })
    .await;
    register(&app, "A99001", &url).await;
    let document = submit_release(&app).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while gp.received.lock().unwrap().is_empty() {
        assert!(Instant::now() < deadline, "the first push never arrived");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The process dies with the push in flight: its outcome is never recorded.
    let app = app.restart().await;
    wait_for(&app, &document, "A99001", "completed").await;
    let received = gp.received.lock().unwrap().clone();
    let keys: std::collections::BTreeSet<_> =
        received.iter().map(|r| r.idempotency_key.clone()).collect();
    assert!(
        received.len() >= 2,
        "the in-flight delivery was retried after the restart"
    );
    assert_eq!(
        keys.len(),
        1,
        "every attempt carried the same idempotency key: {keys:?}"
    );
}

#[tokio::test]
async fn a_delivery_near_the_release_date_is_flagged_at_risk() {
    let clock = Arc::new(ShiftedClock::default());
    let app = spawn_app_full(fast, Some(clock.clone())).await;
    let document = submit_release(&app).await;
    // Nobody has an endpoint: both copies wait. Release is 2026-12-04; move to within 48 h.
    let now = time::OffsetDateTime::now_utc();
    let target = time::macros::datetime!(2026-12-03 09:00 UTC);
    clock.set_offset((target - now).whole_seconds());
    // A token by the gateway's (shifted) clock.
    let mut claims = app.assertion_claims("icb");
    claims["iat"] = json!(clock.unix_now());
    claims["exp"] = json!(clock.unix_now() + 240);
    let (status, body) = app.exchange(&app.sign(&claims, "icb")).await;
    assert_eq!(status, 200, "{body}");
    let icb = body["access_token"].as_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let listed: Value = app
            .get_as("icb", &icb, "/admin/deliveries", &[("at-risk", "true")])
            .await
            .json()
            .await
            .unwrap();
        let rows = listed["deliveries"].as_array().unwrap().clone();
        if rows
            .iter()
            .filter(|d| d["document"] == document.as_str())
            .count()
            == 2
        {
            break;
        }
        assert!(Instant::now() < deadline, "not flagged: {listed}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let response = app
        .get_as("icb", &icb, "/fhir/Task", &[("focus", document.as_str())])
        .await;
    let bundle: Value = response.json().await.unwrap();
    assert_eq!(
        bundle["total"], 0,
        "the ICB is neither sender nor recipient of these Tasks"
    );
    let store = app.open_store().await;
    let filter = throughcare::store::DeliveryFilter {
        document_id: Some(document.clone()),
        limit: 10,
        ..Default::default()
    };
    let rows = throughcare::store::Store::deliveries(&store, &filter)
        .await
        .unwrap();
    assert_eq!(rows.len(), 2);
    assert!(rows.iter().all(|d| d.at_risk), "{rows:?}");
    let all: Vec<Value> = rows
        .iter()
        .map(|d| throughcare::delivery::task::render(d, "https://x"))
        .collect();
    assert!(
        all.iter().all(|t| t["note"][0]["text"]
            .as_str()
            .unwrap_or_default()
            .starts_with("AT RISK")),
        "{all:?}"
    );
    assert!(
        all.iter()
            .all(|t| t["restriction"]["period"]["end"] == "2026-12-04")
    );
}

#[tokio::test]
async fn metrics_count_intake_deliveries_by_state_and_attempts() {
    let (url, _gp) = recipient(vec![Answer::Status(503)]).await;
    let app = spawn_app_with(fast).await;
    register(&app, "A99001", &url).await;
    // Released three months from now: nothing is at risk yet, whatever today's date.
    let release_date = (time::OffsetDateTime::now_utc() + time::Duration::days(90)).date();
    let document = submit_document(
        &app,
        release_tree(|b| {
            b["entry"][0]["resource"]["event"][0]["period"]["start"] =
                json!(release_date.to_string());
        }),
    )
    .await;
    wait_for(&app, &document, "A99001", "completed").await;
    let text = app
        .client_for("icb")
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains(r#"throughcare_intake_documents_total{outcome="created"} 1"#),
        "{text}"
    );
    assert!(
        text.contains("throughcare_intake_duration_seconds_count 1"),
        "{text}"
    );
    assert!(
        text.contains(r#"throughcare_delivery_attempts_total{outcome="delivered"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"throughcare_delivery_attempts_total{outcome="retryable-error"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(
            r#"throughcare_deliveries{status="completed",business_status="delivered"} 1"#
        ),
        "{text}"
    );
    assert!(
        text.contains(
            r#"throughcare_deliveries{status="requested",business_status="awaiting-pull"} 1"#
        ),
        "{text}"
    );
    assert!(text.contains("throughcare_deliveries_at_risk 0"), "{text}");
    assert!(!text.contains("9990000018"), "no patient data in metrics");
}

#[tokio::test]
async fn pull_returns_content_filtered_for_each_caller() {
    let app = spawn_app_with(fast).await;
    let document = submit_release(&app).await;
    let everything = |who: &'static str| {
        let app = &app;
        async move {
            let token = app.token_for(who).await;
            let response = app
                .get_as(who, &token, "/fhir/Patient/9990000018/$everything", &[])
                .await;
            let status = response.status().as_u16();
            (status, response.text().await.unwrap())
        }
    };
    let (status, gp) = everything("gp").await;
    assert_eq!(status, 200, "{gp}");
    assert!(
        gp.contains("128302006"),
        "the GP sees the hepatitis C diagnosis"
    );
    let (status, drug) = everything("drug-service").await;
    assert_eq!(status, 200, "{drug}");
    assert!(
        !drug.contains("128302006"),
        "the drug service gets no diagnoses"
    );
    for (who, text) in [("gp", &gp), ("drug-service", &drug)] {
        for secret in ["A1234BC", "HB2-3-014", "not to share cell", "322696004"] {
            assert!(!text.contains(secret), "{secret} reached {who}");
        }
    }
    // Search by NHS number: the Patient as the GP may see it, with the NHS number as its id.
    let token = app.token_for("gp").await;
    let response = app
        .get_as(
            "gp",
            &token,
            "/fhir/Patient",
            &[("identifier", "https://fhir.nhs.uk/Id/nhs-number|9990000018")],
        )
        .await;
    let bundle: Value = response.json().await.unwrap();
    assert_eq!(bundle["total"], 1, "{bundle}");
    assert_eq!(bundle["entry"][0]["resource"]["id"], "9990000018");
    assert!(!bundle.to_string().contains("A1234BC"));

    // $everything in the caller's profile: UK Core by default for a GP, GP Connect STU3 when
    // asked for (`_profile`), with the STU3 media type and the structured-record Lists.
    let uk_core: Value = serde_json::from_str(&gp).unwrap();
    let profiles = uk_core.to_string();
    assert!(
        profiles.contains("https://fhir.hl7.org.uk/StructureDefinition/UKCore-"),
        "{profiles}"
    );
    let response = app
        .get_as(
            "gp",
            &token,
            "/fhir/Patient/9990000018/$everything",
            &[("_profile", "gp-connect-stu3")],
        )
        .await;
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "application/fhir+json;fhirVersion=3.0"
    );
    assert_eq!(
        response.headers()["x-throughcare-profile"],
        "gp-connect-stu3"
    );
    let stu3: Value = response.json().await.unwrap();
    assert_eq!(stu3["type"], "searchset");
    let resources: Vec<&Value> = stu3["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["resource"])
        .collect();
    assert!(
        resources.iter().any(|r| r["resourceType"] == "List"
            && r["meta"]["profile"][0]
                == "https://fhir.nhs.uk/STU3/StructureDefinition/CareConnect-GPC-List-1"),
        "{stu3}"
    );
    let ramipril = resources
        .iter()
        .find(|r| r["resourceType"] == "MedicationRequest")
        .expect("the GP's medication");
    assert!(
        ramipril["requester"]["agent"].is_object(),
        "STU3 shape: {ramipril}"
    );
    assert!(!stu3.to_string().contains("A1234BC"));
    assert!(!stu3.to_string().contains("322696004"));
    // An organisation with no agreement sees nothing, and is not told the patient exists.
    let second = app.token_for("auditor").await;
    let response = app
        .get_as(
            "auditor",
            &second,
            "/fhir/Patient/9990000018/$everything",
            &[],
        )
        .await;
    assert_eq!(
        response.status().as_u16(),
        403,
        "the auditor is not a recipient"
    );
    let _ = document;
}

#[tokio::test]
async fn a_recipient_with_no_agreement_gets_a_rejected_task_with_its_reason() {
    let mut app = spawn_app_with(fast).await;
    let admin = app.token_for("admin").await;
    let response = app
        .delete_as("admin", &admin, "/admin/agreements/prison-to-drug-service")
        .await;
    assert_eq!(response.status().as_u16(), 200);
    let document = submit_release(&app).await;
    let all = tasks(&app, "prison", &document).await;
    let drug = all
        .iter()
        .find(|t| t["owner"]["identifier"]["value"] == "X99001")
        .expect("the drug service still gets a Task");
    assert_eq!(drug["status"], "rejected");
    assert_eq!(drug["businessStatus"]["coding"][0]["code"], "no-agreement");
    assert!(
        drug["statusReason"]["text"]
            .as_str()
            .unwrap()
            .contains("no active agreement"),
        "{drug}"
    );
    app.stop().await;
    let entries = app.audit_entries().await;
    assert!(entries.iter().any(|e| e.action == "delivery-rejected"));
}

#[tokio::test]
async fn a_recipient_reads_its_copy_in_its_own_profile() {
    let app = spawn_app_with(fast).await;
    let document = submit_release(&app).await;
    let gp = app.token_for("gp").await;
    let path = format!("/fhir/Bundle/{document}");
    // Default for a GP: UK Core R4.
    let response = app.get_as("gp", &gp, &path, &[]).await;
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(
        response.headers().get("X-Throughcare-Profile").unwrap(),
        "uk-core-r4"
    );
    let text = response.text().await.unwrap();
    assert!(text.contains("2.50") && !text.contains("A1234BC"));
    // GP Connect, by _profile or by Accept.
    let response = app
        .get_as("gp", &gp, &path, &[("_profile", "gp-connect-stu3")])
        .await;
    assert_eq!(
        response.headers().get("X-Throughcare-Profile").unwrap(),
        "gp-connect-stu3"
    );
    let text = response.text().await.unwrap();
    fhir_io::check_stu3_bundle(text.as_bytes()).unwrap();
    let response = app
        .client_for("gp")
        .get(app.url(&path))
        .bearer_auth(&gp)
        .header("Accept", "application/fhir+json; fhirVersion=3.0")
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.headers().get("X-Throughcare-Profile").unwrap(),
        "gp-connect-stu3"
    );
    // A community reader cannot ask for the prison profile.
    let response = app
        .get_as("gp", &gp, &path, &[("_profile", "prison")])
        .await;
    assert_eq!(response.status().as_u16(), 400);
}

#[tokio::test]
async fn a_recipient_token_url_supplies_the_bearer_token_for_pushes() {
    let (url, gp) = recipient(vec![]).await;
    let token_url = url.replace("/fhir/Bundle", "/token");
    let app = spawn_app_with(fast).await;
    let icb = app.token_for("icb").await;
    let response = app
        .put_json(
            "icb",
            &icb,
            "/admin/endpoints/A99001",
            &json!({"url": url, "profile": "uk-core-r4",
                    "auth": {"token_url": token_url, "client_id": "throughcare-gateway"}}),
        )
        .await;
    assert_eq!(response.status().as_u16(), 200);
    let document = submit_release(&app).await;
    wait_for(&app, &document, "A99001", "completed").await;
    let received = gp.received.lock().unwrap().clone();
    assert_eq!(received[0].authorization, "Bearer tok-123");
}

#[tokio::test]
async fn the_sample_goes_to_a_gp_connect_endpoint_as_a_structured_record() {
    let (url, gp) = recipient(vec![Answer::Status(200); 2]).await;
    let app = spawn_app_with(fast).await;
    register_as(&app, "A99001", &url, "gp-connect-stu3").await;
    // The sample converts to a GP Connect structured record that validates: it is sent. (A copy
    // that does not validate is held or sent with warnings: tests/api/holds.rs.)
    let good = submit_release(&app).await;
    let task = wait_for(&app, &good, "A99001", "completed").await;
    let body: Value = serde_json::from_str(&gp.received.lock().unwrap()[0].body).unwrap();
    assert_eq!(body["type"], "collection");
    assert!(
        !task.to_string().contains("administrative-warning"),
        "the sample copy conforms: {task}"
    );
}

/// Faults a [`FlakyStore`] injects, shared with the test that arms them.
#[derive(Default)]
pub(crate) struct Faults {
    /// The next `document()` read fails.
    pub(crate) fail_next_document_read: std::sync::atomic::AtomicBool,
    /// How many reads have failed.
    pub(crate) failed_reads: std::sync::atomic::AtomicUsize,
    /// While set, no delivery is claimed (set by the failure, so the Task can be read in the
    /// state the failure left it in; cleared by the test).
    pub(crate) hold_claims: std::sync::atomic::AtomicBool,
    /// The next send MESH accepts is not recorded, as if the gateway had died between the
    /// send and recording it: `mesh_message_sent` fails while this is set, and the
    /// `finish_delivery` that would mark the delivery awaiting acknowledgement fails once and
    /// clears it. The delivery keeps its lease until the lease expires.
    pub(crate) crash_after_next_mesh_send: std::sync::atomic::AtomicBool,
    /// How many sends were left unrecorded so.
    pub(crate) crashed_mesh_sends: std::sync::atomic::AtomicUsize,
}

/// The gateway's store, failing on cue: every method is the real store's, except that
/// `document()` fails once when armed, claims are held while `hold_claims` is set, and the
/// recording of a MESH send fails when `crash_after_next_mesh_send` is set.
pub(crate) struct FlakyStore {
    pub(crate) inner: Arc<dyn throughcare::store::Store>,
    pub(crate) faults: Arc<Faults>,
}

impl FlakyStore {
    /// A store wrapper for `spawn_app_wrapping_store` injecting `faults`.
    pub(crate) fn wrapper(faults: &Arc<Faults>) -> throughcare::startup::StoreWrapper {
        let faults = faults.clone();
        throughcare::startup::StoreWrapper(Arc::new(move |inner| {
            Arc::new(FlakyStore {
                inner,
                faults: faults.clone(),
            }) as Arc<dyn throughcare::store::Store>
        }))
    }
}

mod flaky {
    use async_trait::async_trait;
    use std::sync::atomic::Ordering::SeqCst;
    use throughcare::audit::AuditEntry;
    use throughcare::chain::AuditDraft;
    use throughcare::store::*;

    #[async_trait]
    impl Store for super::FlakyStore {
        async fn accept_document(
            &self,
            doc: NewDocument,
            deliveries: Vec<NewDelivery>,
            audit: Vec<AuditDraft>,
        ) -> Result<Acceptance, StoreError> {
            self.inner.accept_document(doc, deliveries, audit).await
        }

        async fn claim_due(
            &self,
            now: &str,
            lease_until: &str,
            limit: i64,
        ) -> Result<Vec<DeliveryRecord>, StoreError> {
            if self.faults.hold_claims.load(SeqCst) {
                return Ok(Vec::new());
            }
            self.inner.claim_due(now, lease_until, limit).await
        }

        async fn finish_delivery(
            &self,
            id: &str,
            update: DeliveryUpdate,
            audit: Vec<AuditDraft>,
        ) -> Result<(), StoreError> {
            if update.business_status
                == throughcare::domain::BusinessStatus::AwaitingAcknowledgement
                && self.faults.crash_after_next_mesh_send.swap(false, SeqCst)
            {
                self.faults.crashed_mesh_sends.fetch_add(1, SeqCst);
                return Err(StoreError::Io(std::io::Error::other(
                    "injected crash after a MESH send",
                )));
            }
            self.inner.finish_delivery(id, update, audit).await
        }

        async fn delivery(&self, id: &str) -> Result<Option<DeliveryRecord>, StoreError> {
            self.inner.delivery(id).await
        }

        async fn deliveries(
            &self,
            filter: &DeliveryFilter,
        ) -> Result<Vec<DeliveryRecord>, StoreError> {
            self.inner.deliveries(filter).await
        }

        async fn requeue_delivery(
            &self,
            id: &str,
            now: &str,
            audit: Vec<AuditDraft>,
        ) -> Result<bool, StoreError> {
            self.inner.requeue_delivery(id, now, audit).await
        }

        async fn mark_at_risk(
            &self,
            cutoff: &str,
            now: &str,
        ) -> Result<Vec<DeliveryRecord>, StoreError> {
            self.inner.mark_at_risk(cutoff, now).await
        }

        async fn escalations(
            &self,
            now: &str,
            default_lead_days: i64,
        ) -> Result<Vec<(DeliveryRecord, Option<String>)>, StoreError> {
            self.inner.escalations(now, default_lead_days).await
        }

        async fn change_alerts(
            &self,
            changes: Vec<AlertChange>,
            now: &str,
        ) -> Result<Vec<AlertChange>, StoreError> {
            self.inner.change_alerts(changes, now).await
        }

        async fn communications(
            &self,
            filter: &CommunicationFilter,
        ) -> Result<Vec<CommunicationRecord>, StoreError> {
            self.inner.communications(filter).await
        }

        async fn escalation_counts(&self) -> Result<Vec<(String, i64)>, StoreError> {
            self.inner.escalation_counts().await
        }

        async fn claim_webhooks(
            &self,
            now: &str,
            lease_until: &str,
            limit: i64,
        ) -> Result<Vec<WebhookRecord>, StoreError> {
            self.inner.claim_webhooks(now, lease_until, limit).await
        }

        async fn finish_webhook(&self, id: &str, update: WebhookUpdate) -> Result<(), StoreError> {
            self.inner.finish_webhook(id, update).await
        }

        async fn mesh_message(
            &self,
            delivery_id: &str,
        ) -> Result<Option<MeshMessageRecord>, StoreError> {
            self.inner.mesh_message(delivery_id).await
        }

        async fn start_mesh_message(
            &self,
            record: MeshMessageRecord,
        ) -> Result<MeshMessageRecord, StoreError> {
            self.inner.start_mesh_message(record).await
        }

        async fn mesh_message_sent(
            &self,
            delivery_id: &str,
            mesh_message_id: &str,
            sent_at: &str,
            infrastructure_due: &str,
            business_due: &str,
        ) -> Result<(), StoreError> {
            if self.faults.crash_after_next_mesh_send.load(SeqCst) {
                return Err(StoreError::Io(std::io::Error::other(
                    "injected crash after a MESH send",
                )));
            }
            self.inner
                .mesh_message_sent(
                    delivery_id,
                    mesh_message_id,
                    sent_at,
                    infrastructure_due,
                    business_due,
                )
                .await
        }

        async fn mesh_message_answered(
            &self,
            message_id: Option<&str>,
            sender_reference: Option<&str>,
        ) -> Result<Option<MeshMessageRecord>, StoreError> {
            self.inner
                .mesh_message_answered(message_id, sender_reference)
                .await
        }

        async fn mesh_overdue(&self, now: &str) -> Result<Vec<MeshMessageRecord>, StoreError> {
            self.inner.mesh_overdue(now).await
        }

        async fn mesh_inbox_handled(&self, mesh_message_id: &str) -> Result<bool, StoreError> {
            self.inner.mesh_inbox_handled(mesh_message_id).await
        }

        async fn handle_mesh_inbox(
            &self,
            entry: MeshInboxEntry,
            effect: MeshInboxEffect,
        ) -> Result<bool, StoreError> {
            self.inner.handle_mesh_inbox(entry, effect).await
        }

        async fn due_mesh_answers(
            &self,
            now: &str,
            limit: i64,
        ) -> Result<Vec<MeshAnswer>, StoreError> {
            self.inner.due_mesh_answers(now, limit).await
        }

        async fn finish_mesh_answer(
            &self,
            id: &str,
            sent: bool,
            next_attempt_at: Option<&str>,
            error: Option<&str>,
            now: &str,
        ) -> Result<(), StoreError> {
            self.inner
                .finish_mesh_answer(id, sent, next_attempt_at, error, now)
                .await
        }

        async fn try_lease(
            &self,
            name: &str,
            holder: &str,
            now: &str,
            until: &str,
        ) -> Result<bool, StoreError> {
            self.inner.try_lease(name, holder, now, until).await
        }

        async fn delivery_counts(&self) -> Result<(Vec<(String, String, i64)>, i64), StoreError> {
            self.inner.delivery_counts().await
        }

        async fn release_claims(&self) -> Result<u64, StoreError> {
            self.inner.release_claims().await
        }

        async fn renew_claims(&self, ids: &[String], until: &str) -> Result<u64, StoreError> {
            self.inner.renew_claims(ids, until).await
        }

        async fn document_by_identifier(
            &self,
            sender_ods: &str,
            system: &str,
            value: &str,
        ) -> Result<Option<throughcare::store::StoredDocument>, StoreError> {
            self.inner
                .document_by_identifier(sender_ods, system, value)
                .await
        }

        async fn cancel_deliveries(
            &self,
            document_id: &str,
            reason: &str,
            reason_code: &str,
            now: &str,
        ) -> Result<Vec<DeliveryRecord>, StoreError> {
            self.inner
                .cancel_deliveries(document_id, reason, reason_code, now)
                .await
        }

        async fn custody_records(
            &self,
            nhs_number: &str,
        ) -> Result<Vec<throughcare::store::CustodyRecord>, StoreError> {
            self.inner.custody_records(nhs_number).await
        }

        async fn put_endpoint(
            &self,
            endpoint: EndpointRecord,
            audit: Vec<AuditDraft>,
        ) -> Result<(), StoreError> {
            self.inner.put_endpoint(endpoint, audit).await
        }

        async fn endpoint(&self, ods: &str) -> Result<Option<EndpointRecord>, StoreError> {
            self.inner.endpoint(ods).await
        }

        async fn endpoints(&self) -> Result<Vec<EndpointRecord>, StoreError> {
            self.inner.endpoints().await
        }

        async fn document(&self, id: &str) -> Result<Option<StoredDocument>, StoreError> {
            if self.faults.fail_next_document_read.swap(false, SeqCst) {
                self.faults.hold_claims.store(true, SeqCst);
                self.faults.failed_reads.fetch_add(1, SeqCst);
                return Err(StoreError::Io(std::io::Error::other(
                    "injected document read failure",
                )));
            }
            self.inner.document(id).await
        }

        async fn documents_for(&self, nhs_number: &str) -> Result<Vec<StoredDocument>, StoreError> {
            self.inner.documents_for(nhs_number).await
        }

        async fn append_audit(&self, drafts: Vec<AuditDraft>) -> Result<(), StoreError> {
            self.inner.append_audit(drafts).await
        }

        async fn audit_page(&self, after: i64, limit: i64) -> Result<Vec<AuditEntry>, StoreError> {
            self.inner.audit_page(after, limit).await
        }

        async fn audit_search(&self, filter: &AuditFilter) -> Result<Vec<AuditEntry>, StoreError> {
            self.inner.audit_search(filter).await
        }

        async fn remember_assertion(
            &self,
            client_id: &str,
            jti: &str,
            expires_at: i64,
            now: i64,
        ) -> Result<bool, StoreError> {
            self.inner
                .remember_assertion(client_id, jti, expires_at, now)
                .await
        }

        async fn put_agreement(
            &self,
            record: AgreementRecord,
            audit: Vec<AuditDraft>,
        ) -> Result<VersionOutcome, StoreError> {
            self.inner.put_agreement(record, audit).await
        }

        async fn agreement_versions(
            &self,
            id: Option<&str>,
        ) -> Result<Vec<AgreementRecord>, StoreError> {
            self.inner.agreement_versions(id).await
        }

        async fn put_consent(
            &self,
            consent: ConsentWrite<'_>,
            render: &(dyn Fn(i64) -> String + Send + Sync),
            audit: &(dyn Fn(i64) -> Vec<AuditDraft> + Send + Sync),
        ) -> Result<i64, StoreError> {
            self.inner.put_consent(consent, render, audit).await
        }

        async fn consent(&self, id: &str) -> Result<Option<ConsentRecord>, StoreError> {
            self.inner.consent(id).await
        }

        async fn consents_for(&self, nhs_number: &str) -> Result<Vec<ConsentRecord>, StoreError> {
            self.inner.consents_for(nhs_number).await
        }

        async fn audit_head(&self) -> Result<Option<(i64, String)>, StoreError> {
            self.inner.audit_head().await
        }

        async fn add_checkpoint(&self, checkpoint: Checkpoint) -> Result<(), StoreError> {
            self.inner.add_checkpoint(checkpoint).await
        }

        async fn checkpoints(&self) -> Result<Vec<Checkpoint>, StoreError> {
            self.inner.checkpoints().await
        }

        async fn ping(&self) -> Result<(), StoreError> {
            self.inner.ping().await
        }

        async fn close(&self) {
            self.inner.close().await
        }
    }
}

/// Waits until the recipient's Task for `document` satisfies `done`, failing at once if it
/// ends (`completed`, `failed`, `rejected`) in another way, or after 20 s.
async fn wait_until(
    app: &TestApp,
    document: &str,
    owner: &str,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let all = tasks(app, "prison", document).await;
        if let Some(t) = all
            .iter()
            .find(|t| t["owner"]["identifier"]["value"] == owner)
        {
            if done(t) {
                return t.clone();
            }
            assert!(
                !["completed", "failed", "rejected"].contains(&t["status"].as_str().unwrap_or("")),
                "the Task for {owner} ended before it was {what}: {t}"
            );
        }
        assert!(
            Instant::now() < deadline,
            "the Task for {owner} was never {what}: {all:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A store error while a delivery is attempted (here, reading the document) may pass: the
/// delivery is retried (requested, retrying, GW-DELIVERY-04, the error in the audit log), not
/// failed, and the next attempt delivers exactly one copy.
#[tokio::test]
async fn a_store_error_while_attempting_is_retried_not_failed() {
    use std::sync::atomic::Ordering::SeqCst;
    let (url, gp) = recipient(vec![]).await;
    let faults = Arc::new(Faults::default());
    let mut app = spawn_app_wrapping_store(fast, FlakyStore::wrapper(&faults)).await;
    register(&app, "A99001", &url).await;
    // Intake reads no stored document, so the first read after arming is the delivery
    // worker's, for the GP (the only recipient with an endpoint). Arming before submitting
    // leaves no window for the worker to read the document first.
    faults.fail_next_document_read.store(true, SeqCst);
    let document = submit_release(&app).await;

    let retrying = wait_until(&app, &document, "A99001", "retrying", |t| {
        t["businessStatus"]["coding"][0]["code"] == "retrying"
    })
    .await;
    assert_eq!(faults.failed_reads.load(SeqCst), 1);
    assert_eq!(retrying["status"], "requested", "{retrying}");
    assert_eq!(
        retrying["statusReason"]["coding"][0]["code"], "GW-DELIVERY-04",
        "{retrying}"
    );
    assert!(
        retrying["statusReason"]["text"]
            .as_str()
            .is_some_and(|r| r.contains("injected document read failure")),
        "{retrying}"
    );
    assert!(gp.received.lock().unwrap().is_empty(), "nothing was sent");

    // The store recovers: the next attempt delivers.
    faults.hold_claims.store(false, SeqCst);
    let task = wait_for(&app, &document, "A99001", "completed").await;
    assert_eq!(task["businessStatus"]["coding"][0]["code"], "delivered");
    assert_eq!(gp.received.lock().unwrap().len(), 1, "one copy arrived");
    assert_eq!(faults.failed_reads.load(SeqCst), 1);

    app.stop().await;
    let entries = app.audit_entries().await;
    let attempted: Vec<_> = entries
        .iter()
        .filter(|e| e.action == "delivery-attempted")
        .collect();
    assert!(
        attempted
            .iter()
            .any(|e| e.detail.contains("injected document read failure")),
        "{attempted:?}"
    );
    let count = |a: &str| entries.iter().filter(|e| e.action == a).count();
    assert_eq!(count("delivery-completed"), 1);
    assert_eq!(count("delivery-failed"), 0);
}

/// The delivered Task carries the loss report of the copy that was sent: a `loss-count` output
/// equal to the number of `loss` outputs, each of which the intake receipt also warned the
/// sender about for that recipient (same element, same reason).
#[tokio::test]
async fn the_task_shows_the_loss_report_of_the_copy_it_delivered() {
    let (url, gp) = recipient(vec![]).await;
    let app = spawn_app_with(fast).await;
    register_as(&app, "A99001", &url, "gp-connect-stu3").await;
    let token = app.token_for("prison").await;
    let (release, _) = unique_release();
    let (status, headers, receipt) =
        status_and_json(app.post_bundle(&token, FHIR_JSON, release).await).await;
    assert_eq!(status, 201, "{receipt}");
    let document = location_of(&headers)
        .rsplit('/')
        .next()
        .unwrap()
        .to_string();
    let done = wait_for(&app, &document, "A99001", "completed").await;
    assert_eq!(gp.received.lock().unwrap().len(), 1);

    // Read the Task itself.
    let response = app
        .get_as(
            "prison",
            &token,
            &format!("/fhir/Task/{}", done["id"].as_str().unwrap()),
            &[],
        )
        .await;
    assert_eq!(response.status().as_u16(), 200);
    let task: Value = response.json().await.unwrap();
    let outputs = task["output"].as_array().cloned().unwrap_or_default();
    let of_type = |code: &str| -> Vec<Value> {
        outputs
            .iter()
            .filter(|o| o["type"]["coding"][0]["code"] == code)
            .cloned()
            .collect()
    };
    let count = of_type("loss-count");
    let losses = of_type("loss");
    assert_eq!(count.len(), 1, "{task}");
    assert!(
        !losses.is_empty(),
        "the GP Connect copy loses something: {task}"
    );
    assert_eq!(
        count[0]["valueInteger"].as_u64(),
        Some(losses.len() as u64),
        "{task}"
    );

    // Every loss on the Task was reported at intake for this recipient and profile.
    let warned: Vec<(String, String)> = issues(&receipt)
        .iter()
        .filter(|i| i["code"] == "incomplete")
        .filter_map(|i| {
            let text = i["diagnostics"].as_str()?;
            let rest =
                text.strip_prefix("Not carried in the copy for A99001 (gp-connect-stu3): ")?;
            let path = i["expression"][0].as_str()?;
            Some((
                path.to_string(),
                rest.strip_suffix('.').unwrap_or(rest).to_string(),
            ))
        })
        .collect();
    assert_eq!(warned.len(), losses.len(), "{warned:?} {task}");
    for loss in &losses {
        let text = loss["valueString"].as_str().unwrap();
        let (path, reason) = text.split_once(": ").unwrap();
        assert!(
            warned.iter().any(|(p, r)| p == path && r == reason),
            "the Task's loss {text:?} was not in the receipt's warnings for A99001: {warned:?}"
        );
    }
}

/// A push that takes longer than the lease keeps its lease while its worker is alive (renewed
/// in flight), so a short lease, which lets another worker retry within seconds after a crash,
/// never hands a slow push to a second worker.
#[tokio::test]
async fn a_push_slower_than_the_lease_keeps_its_lease_while_in_flight() {
    use throughcare::store::Store as _;
    let (url, gp) = recipient(vec![Answer::Slow(Duration::from_millis(4000))]).await;
    let app = spawn_app_with(|s| {
        fast(s);
        s.delivery.lease_secs = 1;
        s.delivery.timeout_secs = 10;
    })
    .await;
    register(&app, "A99001", &url).await;
    let document = submit_release(&app).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while gp.received.lock().unwrap().is_empty() {
        assert!(Instant::now() < deadline, "the push never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Well past the one-second lease, the push is still in flight.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let store = app.open_store().await;
    let rows = store
        .deliveries(&throughcare::store::DeliveryFilter {
            document_id: Some(document.clone()),
            recipient_ods: Some("A99001".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    let until = rows[0].claimed_until.clone().expect("still claimed");
    let until = time::OffsetDateTime::parse(&until, &time::format_description::well_known::Rfc3339)
        .unwrap();
    assert!(
        until > time::OffsetDateTime::now_utc(),
        "the lease of a push in flight lapsed at {until}"
    );
    wait_for(&app, &document, "A99001", "completed").await;
    assert_eq!(gp.received.lock().unwrap().len(), 1);
}
