//! `throughcare demo`: a release flowing end to end on the embedded defaults, printed step by
//! step. It generates a development PKI and a data directory in a temporary folder, starts the
//! gateway, and acts as the sample prison through the real token endpoint.
//!
//! `throughcare demo --mesh` ([`mesh`]): the GP practice receives over MESH instead, as GP systems
//! do (an ITK3 Transfer of Care message, acknowledged by the practice system), against NHS
//! Digital's MESH sandbox, whose folder `--sandbox` names.

pub mod mesh;

use std::net::SocketAddr;
use std::path::Path;

use anyhow::Context;
use serde_json::Value;

use crate::certs::SAMPLE_CLIENTS;
use crate::client::{GatewayClient, http_client};
use crate::config::{ClientRegistration, Settings};
use crate::startup::{Application, BuildOptions};

/// The synthetic release document the demo pushes.
pub const SAMPLE_RELEASE: &str = include_str!("../../samples/release-bundle.json");

/// The release date the sample document carries.
const SAMPLE_RELEASE_DATE: &str = "2026-12-04";

/// The sample release, moved to a release two weeks after `today` (the day of release and of
/// the last dose given in custody), so that the demo shows a delivery made in good time rather
/// than one escalated for a release date already past.
pub fn release_in_two_weeks(today: time::Date) -> String {
    let release = today + time::Duration::days(14);
    SAMPLE_RELEASE.replace(SAMPLE_RELEASE_DATE, &release.to_string())
}

/// Registrations of the sample clients, with certificates under `certs_dir/clients`.
pub fn sample_registrations(certs_dir: &Path) -> Vec<ClientRegistration> {
    SAMPLE_CLIENTS
        .iter()
        .map(|c| {
            let (role, scopes): (&str, &[&str]) = match c.id {
                "prison" => (
                    "prison",
                    &[
                        "system/Bundle.crs",
                        "system/Consent.crus",
                        "system/Task.rs",
                        "system/Communication.rs",
                        "system/Patient.rs",
                    ],
                ),
                "gp" => ("gp", &["system/*.rs"]),
                // An ICB reads agreements and administers the endpoints of its area; only the
                // gateway operator (`admin`) writes agreements.
                "icb" => (
                    "icb",
                    &["system/*.rs", "system/Endpoint.u", "system/Task.u"],
                ),
                "admin" => (
                    "admin",
                    &[
                        "system/*.rs",
                        "system/Agreement.ud",
                        "system/Endpoint.u",
                        "system/Task.u",
                    ],
                ),
                "drug-service" => ("service", &["system/*.rs"]),
                // IG: the audit log, and `$sharing-decision` in full.
                _ => ("auditor", &["system/AuditEvent.rs", "system/Bundle.r"]),
            };
            ClientRegistration {
                id: c.id.to_string(),
                ods: crate::domain::OdsCode::parse(c.ods).unwrap_or_else(|_| unreachable_ods()),
                role: role.parse().unwrap_or(crate::domain::Role::Auditor),
                scopes: scopes.iter().map(|s| s.to_string()).collect(),
                certificate: certs_dir.join("clients").join(format!("{}.crt", c.id)),
                name: Some(c.organisation.to_string()),
                // The sample GP may use emergency access (ETREAT) on pulls.
                break_glass: c.id == "gp",
                profile: None,
            }
        })
        .collect()
}

/// The sample ICB's area, as `throughcare.toml` configures it: the sample GP practices
/// (`A99*`) and the sample drug service (`X99001`).
pub fn sample_icb_areas() -> std::collections::BTreeMap<crate::domain::OdsCode, Vec<String>> {
    crate::domain::OdsCode::parse("Q99")
        .map(|icb| (icb, vec!["A99*".to_string(), "X99001".to_string()]))
        .into_iter()
        .collect()
}

fn unreachable_ods() -> crate::domain::OdsCode {
    // SAMPLE_CLIENTS holds valid codes; a unit test guards this.
    crate::domain::OdsCode::parse("X00000").unwrap_or_else(|_| std::process::abort())
}

/// Settings for a gateway living entirely inside `dir`.
pub fn settings_in(dir: &Path) -> Settings {
    let certs = dir.join("certs");
    let mut settings = Settings::default();
    settings.server.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    settings.server.data_dir = dir.join("data");
    settings.server.workers = 2;
    settings.tls.cert = certs.join("server.crt");
    settings.tls.key = certs.join("server.key");
    settings.tls.client_ca = certs.join("ca.crt");
    settings.clients = sample_registrations(&certs);
    // Every client presents its certificate; tokens are bound to it.
    settings.tls.require_client_cert_for_api = true;
    settings.policy.icb_areas = sample_icb_areas();
    // The sample recipients listen on loopback without TLS (development only).
    settings.delivery.allow_loopback_http = true;
    settings.delivery.poll_interval_ms = 200;
    settings
}

fn step(n: u32, text: &str) {
    println!("\n[{n}] {text}");
}

/// The prison pushes `document` (`POST /fhir/Bundle`); prints the answer and its
/// OperationOutcome; the document's Location and id (an error unless 201).
async fn push_document(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    document: String,
) -> anyhow::Result<(String, String)> {
    let response = http
        .post(format!("{base}/fhir/Bundle"))
        .bearer_auth(token)
        .header("Content-Type", "application/fhir+json")
        .body(document)
        .send()
        .await?;
    let status = response.status();
    let location = response
        .headers()
        .get("Location")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body: Value = response.json().await?;
    println!(
        "      {status}; Location: {}",
        location.as_deref().unwrap_or("(none)")
    );
    show_outcome(&body);
    if status.as_u16() != 201 {
        anyhow::bail!("the document was not accepted");
    }
    let location = location.context("no Location header")?;
    let document_id = location.rsplit('/').next().unwrap_or_default().to_string();
    Ok((location, document_id))
}

fn show_outcome(body: &Value) {
    for issue in body
        .get("issue")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let severity = issue.get("severity").and_then(Value::as_str).unwrap_or("?");
        let text = issue
            .get("diagnostics")
            .and_then(Value::as_str)
            .unwrap_or("");
        println!("      {severity}: {text}");
    }
}

/// Runs the demo and returns an error if any step does not behave as it should.
pub async fn run() -> anyhow::Result<()> {
    let dir = tempfile::tempdir().context("creating a temporary folder")?;
    println!(
        "Throughcare demo: a release summary from HMP Bristol healthcare (Y02307) to the community."
    );
    println!(
        "Working folder (deleted afterwards): {}",
        dir.path().display()
    );

    step(
        1,
        "Generating a development PKI (CA, gateway certificate, sample client certificates).",
    );
    crate::certs::generate(&dir.path().join("certs"))?;

    step(
        2,
        "Starting the gateway on the embedded defaults (SQLite, TLS with client certificates required).",
    );
    let settings = settings_in(dir.path());
    let gateway = Gateway::start(settings.clone()).await?;
    println!("      listening at {}", gateway.base);

    let result = exercise(dir.path(), &gateway.base).await;
    gateway.stop().await?;

    if result.is_ok() {
        verify_audit(12, &settings).await?;
        println!("\nDemo complete.");
    }
    result
}

/// The gateway the demo runs in process.
struct Gateway {
    base: String,
    handle: actix_web::dev::ServerHandle,
    server: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Gateway {
    async fn start(settings: Settings) -> anyhow::Result<Gateway> {
        let app = Application::build_with(
            settings,
            BuildOptions {
                disable_signals: true,
                ..BuildOptions::default()
            },
        )
        .await?;
        let base = app.public_url().to_string();
        let handle = app.handle();
        let server = tokio::spawn(app.run_until_stopped());
        Ok(Gateway {
            base,
            handle,
            server,
        })
    }

    async fn stop(self) -> anyhow::Result<()> {
        self.handle.stop(true).await;
        self.server.await.context("joining the server")?
    }
}

/// Step `n`: the audit chain of the stopped gateway verified, with its signed checkpoint.
async fn verify_audit(n: u32, settings: &Settings) -> anyhow::Result<()> {
    step(n, "Verifying the audit chain after shutdown.");
    let store = crate::store::SqliteStore::open(
        &settings.server.data_dir,
        std::sync::Arc::new(crate::clock::SystemClock),
    )
    .await?;
    let keys = crate::audit::checkpoint::CheckpointKeys::load(settings, &settings.server.data_dir)?;
    let report = crate::audit::verify_all(
        &store,
        &settings.server.data_dir,
        &keys,
        settings.audit.checkpoint_interval_secs,
    )
    .await?;
    crate::store::Store::close(&store).await;
    match (&report.broken, &report.head) {
        (None, Some((seq, hash))) => {
            println!(
                "      {} entries, chain intact; head #{seq} {}; signed checkpoint at #{}",
                report.entries,
                &hash[..16],
                report.last_checkpoint.unwrap_or(0)
            );
            Ok(())
        }
        (Some(b), _) => {
            anyhow::bail!("the audit chain is broken at entry {}: {}", b.seq, b.reason)
        }
        (None, None) => anyhow::bail!("the audit log is empty"),
    }
}

/// A sample client's HTTP client (its certificate and key from `dir/certs/clients`) and its
/// gateway client.
fn sample_client(
    dir: &Path,
    base: &str,
    name: &str,
) -> anyhow::Result<(reqwest::Client, GatewayClient)> {
    let certs = dir.join("certs");
    let ca = std::fs::read(certs.join("ca.crt"))?;
    let mut identity = std::fs::read(certs.join(format!("clients/{name}.crt")))?;
    let key = std::fs::read(certs.join(format!("clients/{name}.key")))?;
    identity.extend_from_slice(&key);
    let http = http_client(&ca, Some(&identity))?;
    Ok((http.clone(), GatewayClient::new(base, name, key, http)))
}

/// The delivery Tasks of a document, as its sender reads them.
async fn tasks_of(
    http: &reqwest::Client,
    token: &str,
    base: &str,
    document_id: &str,
) -> anyhow::Result<Vec<Value>> {
    let tasks: Value = http
        .get(format!("{base}/fhir/Task"))
        .query(&[("focus", document_id)])
        .bearer_auth(token)
        .send()
        .await?
        .json()
        .await?;
    Ok(tasks
        .get("entry")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|e| e["resource"].clone())
        .collect())
}

/// One line about a Task: its id, owner, status, business status and attempts.
fn print_task(t: &Value) {
    println!(
        "      Task/{} to {}: {} ({}), attempts {}",
        t["id"].as_str().unwrap_or_default(),
        t.pointer("/owner/identifier/value")
            .and_then(Value::as_str)
            .unwrap_or_default(),
        t["status"].as_str().unwrap_or_default(),
        t.pointer("/businessStatus/coding/0/code")
            .and_then(Value::as_str)
            .unwrap_or_default(),
        t.pointer("/input/0/valueInteger")
            .and_then(Value::as_i64)
            .unwrap_or_default(),
    );
}

async fn exercise(dir: &Path, base: &str) -> anyhow::Result<()> {
    let certs = dir.join("certs");
    let ca = std::fs::read(certs.join("ca.crt"))?;
    let mut identity = std::fs::read(certs.join("clients/prison.crt"))?;
    let key = std::fs::read(certs.join("clients/prison.key"))?;
    identity.extend_from_slice(&key);
    let http = http_client(&ca, Some(&identity))?;
    let prison = GatewayClient::new(base, "prison", key, http.clone());
    let mut n = 2;
    let next = |n: &mut u32| {
        *n += 1;
        *n
    };

    step(
        next(&mut n),
        "The prison gets an access token: a signed ES384 assertion, over mutual TLS.",
    );
    let token = prison.token().await?;
    println!(
        "      token issued ({} characters, valid 5 minutes)",
        token.len()
    );

    step(
        next(&mut n),
        "Two in-process sample recipients start, and the ICB registers them as push endpoints.",
    );
    let (gp_url, gp_inbox) = sample_recipient().await?;
    let (drug_url, drug_inbox) = sample_recipient().await?;
    let mut icb_identity = std::fs::read(certs.join("clients/icb.crt"))?;
    let icb_key = std::fs::read(certs.join("clients/icb.key"))?;
    icb_identity.extend_from_slice(&icb_key);
    let icb_http = http_client(&ca, Some(&icb_identity))?;
    let icb_token = GatewayClient::new(base, "icb", icb_key, icb_http.clone())
        .token()
        .await?;
    for (ods, url) in [("A99001", &gp_url), ("X99001", &drug_url)] {
        let response = icb_http
            .put(format!("{base}/admin/endpoints/{ods}"))
            .bearer_auth(&icb_token)
            .json(&serde_json::json!({"url": url, "profile": "uk-core-r4"}))
            .send()
            .await?;
        println!("      {ods} -> {url}: {}", response.status());
        if !response.status().is_success() {
            anyhow::bail!("the endpoint was not registered");
        }
    }

    step(
        next(&mut n),
        "The prison pushes the release summary (POST /fhir/Bundle).",
    );
    let document = release_in_two_weeks(time::OffsetDateTime::now_utc().date());
    let (location, document_id) = push_document(&http, base, &token, document.clone()).await?;

    step(
        next(&mut n),
        "Delivery workers push each recipient's copy, deciding policy again at the moment of sending.",
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let tasks = tasks_of(&http, &token, base, &document_id).await?;
        let done = !tasks.is_empty()
            && tasks
                .iter()
                .all(|t| t["status"].as_str() == Some("completed"));
        if done || std::time::Instant::now() > deadline {
            tasks.iter().for_each(print_task);
            if !done {
                anyhow::bail!("the deliveries did not complete");
            }
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    for (name, inbox) in [
        ("GP practice A99001", &gp_inbox),
        ("drug service X99001", &drug_inbox),
    ] {
        let received = inbox.lock().map(|v| v.clone()).unwrap_or_default();
        for doc in received {
            describe_copy(name, &doc)?;
        }
    }

    step(
        next(&mut n),
        "The prison sends the same document again: nothing new is stored.",
    );
    let again = http
        .post(format!("{base}/fhir/Bundle"))
        .bearer_auth(&token)
        .header("Content-Type", "application/fhir+json")
        .body(document.clone())
        .send()
        .await?;
    println!("      {}", again.status());
    show_outcome(&again.json().await?);

    step(
        next(&mut n),
        "The prison reads the stored document back, byte for byte.",
    );
    let read = http.get(&location).bearer_auth(&token).send().await?;
    let read_status = read.status();
    let bytes = read.bytes().await?;
    let same = bytes.as_ref() == document.as_bytes();
    println!(
        "      {read_status}; {} bytes, identical to what was sent: {same}",
        bytes.len()
    );
    if !same {
        anyhow::bail!("the stored document differs from what was sent");
    }

    let client = |name: &str| sample_client(dir, base, name);
    let (gp_http, gp) = client("gp")?;
    let (drug_http, drug) = client("drug-service")?;

    step(
        next(&mut n),
        "The registered GP (A99001) reads its copy: policy applied at the moment of reading.",
    );
    let gp_token = gp.token().await?;
    show_copy(&gp_http, &gp_token, &location).await?;

    step(
        next(&mut n),
        "The drug service (X99001) reads its copy before the patient's consent is recorded.",
    );
    let drug_token = drug.token().await?;
    show_copy(&drug_http, &drug_token, &location).await?;

    step(
        next(&mut n),
        "The prison records the patient's consent: substance-misuse (ETH) information may go to the drug service.",
    );
    let consent = serde_json::json!({
        "resourceType": "Consent",
        "status": "active",
        "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0", "display": "Patient Consent"}]}],
        "patient": {"identifier": {"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9990000018"}},
        "dateTime": "2026-11-20T09:00:00+00:00",
        "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTIN"}]},
        "provision": {
            "type": "permit",
            "actor": [{
                "role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "IRCP"}]},
                "reference": {"identifier": {"system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": "X99001"}}
            }],
            "securityLabel": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "ETH"}]
        }
    });
    let response = http
        .post(format!("{base}/fhir/Consent"))
        .bearer_auth(&token)
        .header("Content-Type", "application/fhir+json")
        .body(consent.to_string())
        .send()
        .await?;
    println!(
        "      {}; {}",
        response.status(),
        response
            .headers()
            .get("Location")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    );
    if !response.status().is_success() {
        anyhow::bail!("the consent was not recorded: {}", response.text().await?);
    }
    println!("      The drug service reads again:");
    show_copy(&drug_http, &drug_token, &location).await?;
    Ok(())
}

/// Reads a recipient's copy and prints what it holds and how much was withheld.
async fn show_copy(http: &reqwest::Client, token: &str, location: &str) -> anyhow::Result<()> {
    let response = http.get(location).bearer_auth(token).send().await?;
    let status = response.status();
    let withheld = response
        .headers()
        .get("X-Throughcare-Withheld")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("?")
        .to_string();
    let body: Value = response.json().await?;
    let kinds: Vec<String> = body
        .get("entry")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|e| e.pointer("/resource/resourceType").and_then(Value::as_str))
        .map(str::to_string)
        .collect();
    let text = body.to_string();
    println!(
        "      {status}; received {} resources ({}); {withheld} withheld",
        kinds.len(),
        kinds.join(", ")
    );
    println!(
        "      methadone included: {}; prison number or cell location included: {}",
        text.contains("322696004"),
        text.contains("A1234BC") || text.contains("HB2-3-014")
    );
    if text.contains("A1234BC") || text.contains("HB2-3-014") {
        anyhow::bail!("custody-only information reached a community recipient");
    }
    Ok(())
}

type Inbox = std::sync::Arc<std::sync::Mutex<Vec<Value>>>;

/// A sample community recipient: accepts pushed documents on loopback and keeps them.
async fn sample_recipient() -> anyhow::Result<(String, Inbox)> {
    use actix_web::{App, HttpResponse, HttpServer, web};
    let inbox: Inbox = Default::default();
    let data = web::Data::new(inbox.clone());
    let server = HttpServer::new(move || {
        App::new().app_data(data.clone()).route(
            "/fhir/Bundle",
            web::post().to(|body: web::Bytes, inbox: web::Data<Inbox>| async move {
                if let (Ok(doc), Ok(mut list)) =
                    (serde_json::from_slice::<Value>(&body), inbox.lock())
                {
                    list.push(doc);
                }
                HttpResponse::Created().finish()
            }),
        )
    })
    .workers(1)
    .disable_signals()
    .bind(("127.0.0.1", 0))?;
    let port = server
        .addrs()
        .first()
        .map(|a| a.port())
        .context("no port")?;
    tokio::spawn(server.run());
    Ok((format!("http://127.0.0.1:{port}/fhir/Bundle"), inbox))
}

/// Prints what a recipient received.
fn describe_copy(name: &str, doc: &Value) -> anyhow::Result<()> {
    let kinds: Vec<&str> = doc
        .get("entry")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|e| e.pointer("/resource/resourceType").and_then(Value::as_str))
        .collect();
    let text = doc.to_string();
    println!(
        "      {name} received {} resources: {}",
        kinds.len(),
        kinds.join(", ")
    );
    println!(
        "        methadone included: {}; prison number or cell location included: {}",
        text.contains("322696004"),
        text.contains("A1234BC") || text.contains("HB2-3-014")
    );
    if text.contains("A1234BC") || text.contains("HB2-3-014") {
        anyhow::bail!("custody-only information reached a community recipient");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_release_is_two_weeks_ahead_and_otherwise_the_sample() {
        let today = time::macros::date!(2027 - 03 - 01);
        let moved = release_in_two_weeks(today);
        assert!(!moved.contains(SAMPLE_RELEASE_DATE));
        let tree: serde_json::Value = serde_json::from_str(&moved).unwrap();
        assert_eq!(
            tree["entry"][0]["resource"]["event"][0]["period"]["start"],
            "2027-03-15"
        );
        assert_eq!(
            moved.len(),
            SAMPLE_RELEASE.len(),
            "only the dates change (same width)"
        );
    }
}
