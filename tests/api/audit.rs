//! The audit log: what the gateway records, the hash chain, and `throughcare audit verify`.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::{Value, json};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool};
use throughcare::audit::AuditEntry;

use crate::helpers::*;

/// Runs `throughcare audit verify --data-dir <dir>` from the package directory.
fn run_verify(data_dir: &Path) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_throughcare"));
    command
        .args(["audit", "verify", "--data-dir"])
        .arg(data_dir)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("RUST_LOG", "warn");
    for (key, _) in std::env::vars() {
        if key.starts_with("THROUGHCARE__") {
            command.env_remove(key);
        }
    }
    command.output().expect("the binary runs")
}

fn find<'a>(entries: &'a [AuditEntry], action: &str) -> Vec<&'a AuditEntry> {
    entries.iter().filter(|e| e.action == action).collect()
}

fn detail(entry: &AuditEntry) -> Value {
    serde_json::from_str(&entry.detail).expect("detail is JSON")
}

async fn open_pool(app: &TestApp) -> SqlitePool {
    SqlitePool::connect_with(SqliteConnectOptions::new().filename(app.database_file()))
        .await
        .expect("the database opens")
}

#[tokio::test]
async fn audit_log_records_each_step_and_verify_finds_a_tampered_entry() {
    let mut app = spawn_app().await;

    // A token, an accepted document, a rejected document and a request without a token.
    let token = app.token_for("prison").await;
    let (release, identifier) = unique_release();
    let (status, headers, outcome) =
        status_and_json(app.post_bundle(&token, FHIR_JSON, release).await).await;
    assert_eq!(status, 201, "{outcome}");
    let location = location_of(&headers);
    let id = location.rsplit('/').next().unwrap().to_string();

    let bad = release_tree(|b| {
        b["entry"][1]["resource"]["identifier"][0]["value"] = json!("9990000019");
    });
    let (status, _, outcome) = status_and_json(app.post_bundle(&token, FHIR_JSON, bad).await).await;
    assert_eq!(status, 422, "{outcome}");

    let response = app.anonymous_client().get(&location).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 401);

    app.stop().await;

    // What was recorded.
    let entries = app.audit_entries().await;
    let actions: Vec<&str> = entries.iter().map(|e| e.action.as_str()).collect();
    // Start-up seeds the sample agreements (audited), then the gateway starts serving.
    let started = actions
        .iter()
        .position(|a| *a == "gateway-started")
        .expect("start audited");
    assert!(
        actions[..started].iter().all(|a| *a == "agreement-changed") && started == 4,
        "{actions:?}"
    );
    assert_eq!(actions.last(), Some(&"gateway-stopped"), "{actions:?}");

    let issued = find(&entries, "token-issued");
    assert_eq!(issued.len(), 1, "{actions:?}");
    assert_eq!(issued[0].actor_client.as_deref(), Some("prison"));
    assert_eq!(issued[0].actor_ods.as_deref(), Some("Y02307"));
    assert_eq!(issued[0].outcome, "success");

    let received = find(&entries, "document-received");
    assert_eq!(received.len(), 1, "{actions:?}");
    let received = received[0];
    assert_eq!(received.nhs_number.as_deref(), Some(SAMPLE_NHS_NUMBER));
    let entities: Vec<String> = serde_json::from_str(&received.entities).unwrap();
    assert_eq!(entities, vec![format!("Bundle/{id}")]);
    assert_eq!(received.actor_client.as_deref(), Some("prison"));
    assert!(
        detail(received)["bundleIdentifier"]
            .as_str()
            .is_some_and(|b| b.ends_with(&format!("|{identifier}"))),
        "{}",
        received.detail
    );

    let rejected = find(&entries, "input-rejected");
    assert_eq!(rejected.len(), 1, "{actions:?}");
    assert_eq!(detail(rejected[0])["status"], 422);
    assert_eq!(rejected[0].outcome, "failure");
    assert_eq!(rejected[0].actor_client.as_deref(), Some("prison"));

    let failed = find(&entries, "authentication-failed");
    assert_eq!(failed.len(), 1, "{actions:?}");
    assert_eq!(failed[0].outcome, "failure");
    assert!(
        detail(failed[0])["endpoint"]
            .as_str()
            .is_some_and(|e| e.starts_with("GET /fhir/Bundle/")),
        "{}",
        failed[0].detail
    );

    // The chain holds.
    let store = app.open_store().await;
    let report = throughcare::audit::verify(&store).await.unwrap();
    throughcare::store::Store::close(&store).await;
    assert_eq!(report.broken, None);
    assert_eq!(report.entries, entries.len() as u64);
    let last = entries.last().unwrap();
    assert_eq!(report.head, Some((last.seq, last.hash.clone())));

    let intact = run_verify(app.data_dir());
    let stdout = String::from_utf8_lossy(&intact.stdout);
    assert!(
        intact.status.success(),
        "verify should pass on an intact chain: {stdout} {}",
        String::from_utf8_lossy(&intact.stderr)
    );
    assert!(stdout.contains("intact"), "{stdout}");

    // The table refuses changes while its triggers stand.
    let target = received.seq;
    let pool = open_pool(&app).await;
    let update = sqlx::query("UPDATE audit_log SET nhs_number = ? WHERE seq = ?")
        .bind("9990000026")
        .bind(target)
        .execute(&pool)
        .await;
    let err = update.expect_err("UPDATE must fail while the trigger exists");
    assert!(err.to_string().contains("append-only"), "{err}");
    let delete = sqlx::query("DELETE FROM audit_log WHERE seq = ?")
        .bind(target)
        .execute(&pool)
        .await;
    assert!(delete.is_err(), "DELETE must fail while the trigger exists");

    // Someone with file access drops the trigger and rewrites the entry.
    sqlx::query("DROP TRIGGER audit_log_no_update")
        .execute(&pool)
        .await
        .unwrap();
    let changed = sqlx::query("UPDATE audit_log SET nhs_number = ? WHERE seq = ?")
        .bind("9990000026")
        .bind(target)
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(changed.rows_affected(), 1);
    pool.close().await;

    let store = app.open_store().await;
    let report = throughcare::audit::verify(&store).await.unwrap();
    throughcare::store::Store::close(&store).await;
    let broken = report.broken.expect("the chain is broken");
    assert_eq!(broken.seq, target, "{}", broken.reason);
    assert!(broken.reason.contains("altered"), "{}", broken.reason);

    let tampered = run_verify(app.data_dir());
    let stdout = String::from_utf8_lossy(&tampered.stdout);
    assert!(
        !tampered.status.success(),
        "verify must fail on a tampered chain: {stdout}"
    );
    assert!(
        stdout.contains(&format!("entry {target}:")),
        "stdout should name entry {target}: {stdout}"
    );
}

#[tokio::test]
async fn audit_verify_names_the_entry_after_a_deleted_one() {
    let mut app = spawn_app().await;
    let _ = app.token_for("prison").await;
    let _ = app.token_for("gp").await;
    app.stop().await;
    let entries = app.audit_entries().await;
    assert!(entries.len() >= 4, "{entries:?}");
    let removed = entries[1].seq;

    let pool = open_pool(&app).await;
    sqlx::query("DROP TRIGGER audit_log_no_delete")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("DELETE FROM audit_log WHERE seq = ?")
        .bind(removed)
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;

    let store = app.open_store().await;
    let report = throughcare::audit::verify(&store).await.unwrap();
    throughcare::store::Store::close(&store).await;
    let broken = report.broken.expect("the chain is broken");
    assert_eq!(broken.seq, removed + 1, "{}", broken.reason);
}

#[tokio::test]
async fn refusal_for_role_is_audited_as_access_denied() {
    let mut app = spawn_app().await;
    let token = app.token_for("gp").await;
    let (release, _) = unique_release();
    let response = app
        .post_bundle_over(&app.client_for("gp"), &token, FHIR_JSON, release)
        .await;
    assert_eq!(response.status().as_u16(), 403);
    app.stop().await;
    let entries = app.audit_entries().await;
    let denied = find(&entries, "access-denied");
    assert_eq!(denied.len(), 1);
    assert_eq!(denied[0].actor_client.as_deref(), Some("gp"));
    assert_eq!(denied[0].actor_ods.as_deref(), Some("A99001"));
    assert_eq!(detail(denied[0])["endpoint"], "POST /fhir/Bundle");
    assert!(
        find(&entries, "document-received").is_empty(),
        "nothing was stored"
    );
}

async fn audit_search(app: &TestApp, token: &str, query: &str) -> (u16, Value) {
    let response = app
        .client_for("auditor")
        .get(app.url(&format!("/fhir/AuditEvent{query}")))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

fn resources(bundle: &Value) -> Vec<&Value> {
    bundle["entry"]
        .as_array()
        .map(|e| e.iter().map(|x| &x["resource"]).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn audit_events_are_served_as_fhir_to_auditors_and_answer_a_subject_access_request() {
    let app = spawn_app().await;
    let prison = app.token_for("prison").await;
    let (release, _) = unique_release();
    let (status, headers, outcome) =
        status_and_json(app.post_bundle(&prison, FHIR_JSON, release).await).await;
    assert_eq!(status, 201, "{outcome}");
    let location = headers
        .get("location")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    let id = location.rsplit('/').next().unwrap().to_string();
    let gp = app.token_for("gp").await;
    let read = app
        .client_for("gp")
        .get(&location)
        .bearer_auth(&gp)
        .send()
        .await
        .unwrap();
    assert_eq!(read.status().as_u16(), 200);

    let auditor = app.token_for("auditor").await;
    // Subject access request: everything about the patient.
    let (status, bundle) = audit_search(&app, &auditor, "?patient=9990000018").await;
    assert_eq!(status, 200, "{bundle}");
    assert_eq!(bundle["type"], "searchset");
    let events = resources(&bundle);
    assert!(events.iter().all(|e| e["resourceType"] == "AuditEvent"));
    assert!(
        events
            .iter()
            .all(|e| e["entity"][0]["what"]["identifier"]["value"] == "9990000018")
    );
    // The intake is a BALP rest/create event with the document as entity.
    let create = events
        .iter()
        .find(|e| e["subtype"][0]["code"] == "create" && e["outcome"] == "0")
        .expect("a create event");
    assert_eq!(create["type"]["code"], "rest");
    assert_eq!(create["action"], "C");
    assert!(
        create["entity"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["what"]["reference"] == format!("Bundle/{id}"))
    );
    assert_eq!(create["agent"][0]["who"]["identifier"]["value"], "Y02307");
    // The GP's read is a disclosure: an export event carrying the decision.
    let export = events
        .iter()
        .find(|e| e["type"]["code"] == "110106")
        .expect("an export event");
    let detail = export["entity"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|x| x["detail"][0]["valueBase64Binary"].as_str());
    use base64::Engine;
    let decision: Value = serde_json::from_slice(
        &base64::engine::general_purpose::STANDARD
            .decode(detail.unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(decision["recipient"], "A99001");
    assert_eq!(decision["agreement"]["id"], "prison-to-registered-gp");
    assert!(
        decision["resources"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["shared"] == false && r["rule"] == 2)
    );

    // Filters: entity, agent, type/subtype, outcome, date, _count.
    let (_, by_entity) = audit_search(&app, &auditor, &format!("?entity=Bundle/{id}")).await;
    assert!(!resources(&by_entity).is_empty());
    assert!(resources(&by_entity).iter().all(|e| {
        e["entity"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["what"]["reference"] == format!("Bundle/{id}"))
    }));
    let (_, by_agent) = audit_search(&app, &auditor, "?agent=gp&subtype=operation").await;
    assert!(resources(&by_agent).is_empty(), "the GP ran no operation");
    let (_, logins) = audit_search(&app, &auditor, "?type=110114&agent=prison").await;
    assert_eq!(resources(&logins).len(), 1, "{logins}");
    let (_, failures) = audit_search(&app, &auditor, "?outcome=4").await;
    assert!(resources(&failures).iter().all(|e| e["outcome"] == "4"));
    let (_, future) = audit_search(&app, &auditor, "?date=ge2099-01-01").await;
    assert!(resources(&future).is_empty());
    let (_, today) = audit_search(&app, &auditor, "?date=ge2000-01-01&_count=2").await;
    assert_eq!(resources(&today).len(), 2);
    // Chain information travels with each event.
    let chain = &resources(&today)[0]["extension"][0];
    assert_eq!(chain["extension"][2]["url"], "hash");

    // Only auditors; bad parameters are refused.
    let response = app
        .client_for("prison")
        .get(app.url("/fhir/AuditEvent?patient=9990000018"))
        .bearer_auth(&prison)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 403);
    let (status, outcome) = audit_search(&app, &auditor, "?colour=blue").await;
    assert_eq!(status, 400, "{outcome}");
    let (status, _) = audit_search(&app, &auditor, "?patient=9990000019").await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn audit_verify_checks_signed_checkpoints_and_detects_truncation_below_one() {
    let mut app = spawn_app().await;
    let prison = app.token_for("prison").await;
    let (release, _) = unique_release();
    let (status, _, _) = status_and_json(app.post_bundle(&prison, FHIR_JSON, release).await).await;
    assert_eq!(status, 201);
    // Shutdown signs the head.
    app.stop().await;
    let output = run_verify(app.data_dir());
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(stdout.contains("signed checkpoints"), "{stdout}");
    let store = app.open_store().await;
    let checkpoints = throughcare::store::Store::checkpoints(&store)
        .await
        .unwrap();
    let head = throughcare::store::Store::audit_head(&store)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        checkpoints.last().unwrap().seq,
        head.0,
        "the shutdown checkpoint covers the head"
    );
    throughcare::store::Store::close(&store).await;

    // Cut the chain back below the checkpoint: truncation is detected.
    let pool = open_pool(&app).await;
    sqlx::query("DROP TRIGGER audit_log_no_delete")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("DELETE FROM audit_log WHERE seq >= ?")
        .bind(head.0 - 1)
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let output = run_verify(app.data_dir());
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(!output.status.success(), "{stdout}");
    assert!(stdout.contains("truncated"), "{stdout}");

    // Removing the checkpoint rows too (past their trigger) does not hide it: the file copy
    // remains.
    let pool = open_pool(&app).await;
    sqlx::query("DROP TRIGGER audit_checkpoints_no_delete")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("DELETE FROM audit_checkpoints")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let output = run_verify(app.data_dir());
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stdout).contains("truncated"));
}

#[tokio::test]
async fn a_forged_checkpoint_is_detected() {
    let mut app = spawn_app().await;
    app.stop().await;
    let file = app
        .data_dir()
        .join(throughcare::audit::checkpoint::CHECKPOINT_FILE);
    let text = std::fs::read_to_string(&file).unwrap();
    let mut line: Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    // Re-sign with a key that is not the gateway's.
    let other = throughcare::auth::keys::GatewayKey::from_pem(
        &std::fs::read_to_string(certs_dir().join("clients/gp.key")).unwrap(),
    )
    .unwrap();
    let forged = throughcare::audit::checkpoint::sign(
        &other,
        line["seq"].as_i64().unwrap(),
        line["head_hash"].as_str().unwrap(),
        line["signed_at"].as_str().unwrap(),
    )
    .unwrap();
    line["signature"] = json!(forged.signature);
    let pool = open_pool(&app).await;
    sqlx::query("DROP TRIGGER audit_checkpoints_no_update")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("UPDATE audit_checkpoints SET signature = ? WHERE seq = ?")
        .bind(&forged.signature)
        .bind(forged.seq)
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let last = lines.len() - 1;
    lines[last] = line.to_string();
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    let output = run_verify(app.data_dir());
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(!output.status.success(), "{stdout}");
    assert!(stdout.contains("signature"), "{stdout}");
}

// ---------------------------------------------------------------------------------------------
// Fail closed: the audit key, both copies of the checkpoints, coverage.

fn checkpoint_file(app: &TestApp) -> std::path::PathBuf {
    app.data_dir()
        .join(throughcare::audit::checkpoint::CHECKPOINT_FILE)
}

fn file_lines(app: &TestApp) -> Vec<Value> {
    std::fs::read_to_string(checkpoint_file(app))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn write_lines(app: &TestApp, lines: &[Value]) {
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(checkpoint_file(app), text).unwrap();
}

/// Runs SQL statements directly on the SQLite file of a stopped gateway.
async fn sql(app: &TestApp, statements: &[&'static str]) {
    let pool = open_pool(app).await;
    for statement in statements {
        sqlx::query(*statement).execute(&pool).await.unwrap();
    }
    pool.close().await;
}

fn gateway_key(app: &TestApp, file: &str) -> throughcare::auth::keys::GatewayKey {
    throughcare::auth::keys::GatewayKey::from_pem(
        &std::fs::read_to_string(app.data_dir().join(file)).unwrap(),
    )
    .unwrap()
}

fn audit_key(app: &TestApp) -> throughcare::auth::keys::GatewayKey {
    gateway_key(app, throughcare::auth::keys::AUDIT_KEY_FILE)
}

fn token_key(app: &TestApp) -> throughcare::auth::keys::GatewayKey {
    gateway_key(app, throughcare::auth::keys::SIGNING_KEY_FILE)
}

/// Re-signs the checkpoints at `seqs` with `key`, in the table (past its trigger) and the file,
/// so that the two copies still agree.
async fn re_sign(app: &TestApp, key: &throughcare::auth::keys::GatewayKey, seqs: &[i64]) {
    let mut lines = file_lines(app);
    let pool = open_pool(app).await;
    sqlx::query("DROP TRIGGER IF EXISTS audit_checkpoints_no_update")
        .execute(&pool)
        .await
        .unwrap();
    for line in lines.iter_mut() {
        let seq = line["seq"].as_i64().unwrap();
        if !seqs.contains(&seq) {
            continue;
        }
        let cp = throughcare::audit::checkpoint::sign(
            key,
            seq,
            line["head_hash"].as_str().unwrap(),
            line["signed_at"].as_str().unwrap(),
        )
        .unwrap();
        line["kid"] = json!(cp.kid);
        line["signature"] = json!(cp.signature);
        sqlx::query("UPDATE audit_checkpoints SET kid = ?, signature = ? WHERE seq = ?")
            .bind(&cp.kid)
            .bind(&cp.signature)
            .bind(seq)
            .execute(&pool)
            .await
            .unwrap();
    }
    pool.close().await;
    write_lines(app, &lines);
}

fn assert_verify_fails(app: &TestApp, needle: &str) {
    let output = run_verify(app.data_dir());
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(!output.status.success(), "verify must fail: {stdout}");
    assert!(stdout.contains("BROKEN"), "{stdout}");
    assert!(
        stdout.contains(needle),
        "stdout should say {needle:?}: {stdout}"
    );
}

fn assert_verify_passes(app: &TestApp) -> String {
    let output = run_verify(app.data_dir());
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(
        output.status.success(),
        "verify should pass: {stdout} {}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

async fn checkpoint_seqs(app: &TestApp) -> Vec<i64> {
    let store = app.open_store().await;
    let rows = throughcare::store::Store::checkpoints(&store)
        .await
        .unwrap();
    throughcare::store::Store::close(&store).await;
    rows.iter().map(|c| c.seq).collect()
}

#[tokio::test]
async fn checkpoints_are_signed_with_the_audit_key_not_the_token_key() {
    let mut app = spawn_app().await;
    let _ = app.token_for("prison").await;
    app.stop().await;
    let audit = audit_key(&app);
    let token = token_key(&app);
    assert_ne!(audit.kid, token.kid, "two keys, two files");

    let store = app.open_store().await;
    let rows = throughcare::store::Store::checkpoints(&store)
        .await
        .unwrap();
    throughcare::store::Store::close(&store).await;
    assert!(rows.len() >= 2, "signed at start and on shutdown: {rows:?}");
    for cp in &rows {
        assert_eq!(cp.kid, audit.kid, "{cp:?}");
        assert!(throughcare::audit::checkpoint::signature_holds(
            &audit.decoding,
            cp
        ));
        assert!(!throughcare::audit::checkpoint::signature_holds(
            &token.decoding,
            cp
        ));
    }
    assert_verify_passes(&app);

    // Someone holding the (online, more exposed) token key re-signs the newest checkpoint with
    // it, in both copies: refused.
    let newest = rows.last().unwrap().seq;
    re_sign(&app, &token, &[newest]).await;
    assert_verify_fails(&app, "token signing key");

    // Every checkpoint re-signed with the token key: still refused, since the data directory has
    // an audit key and it signed nothing.
    let all: Vec<i64> = rows.iter().map(|c| c.seq).collect();
    re_sign(&app, &token, &all).await;
    assert_verify_fails(&app, "audit key");
}

#[tokio::test]
async fn a_data_dir_signed_with_the_token_key_before_the_audit_key_existed_still_verifies() {
    let mut app = spawn_app().await;
    let _ = app.token_for("prison").await;
    app.stop().await;
    // Make it look like a data directory of the version before the audit key: checkpoints
    // signed with the token key, and no audit key file.
    let token = token_key(&app);
    let before = checkpoint_seqs(&app).await;
    re_sign(&app, &token, &before).await;
    sql(
        &app,
        &[
            "CREATE TRIGGER audit_checkpoints_no_update BEFORE UPDATE ON audit_checkpoints \
           BEGIN SELECT RAISE(ABORT, 'audit_checkpoints is append-only'); END",
        ],
    )
    .await;
    std::fs::remove_file(app.data_dir().join(throughcare::auth::keys::AUDIT_KEY_FILE)).unwrap();
    assert_verify_passes(&app);

    // The new version starts on it: it makes an audit key and signs with it from then on.
    let mut app = app.restart().await;
    let _ = app.token_for("gp").await;
    app.stop().await;
    let after = checkpoint_seqs(&app).await;
    assert!(after.len() > before.len());
    let stdout = assert_verify_passes(&app);
    assert!(
        stdout.contains(&format!(
            "{} signed with the token key before the audit key existed",
            before.len()
        )),
        "{stdout}"
    );

    // A token-key checkpoint after the audit key took over is refused.
    re_sign(&app, &token, &[*after.last().unwrap()]).await;
    assert_verify_fails(&app, "token signing key");
}

#[tokio::test]
async fn a_removed_or_cut_checkpoint_file_fails_verify() {
    let mut app = spawn_app().await;
    let _ = app.token_for("prison").await;
    app.stop().await;
    assert_verify_passes(&app);

    // The file cut back by its newest line.
    let lines = file_lines(&app);
    write_lines(&app, &lines[..lines.len() - 1]);
    assert_verify_fails(&app, "not in the checkpoint file");

    // The file removed.
    std::fs::remove_file(checkpoint_file(&app)).unwrap();
    assert_verify_fails(&app, "not in the checkpoint file");

    // The file removed and every row deleted (past the trigger): no checkpoint at all, though
    // the gateway signs one at every start.
    sql(
        &app,
        &[
            "DROP TRIGGER audit_checkpoints_no_delete",
            "DELETE FROM audit_checkpoints",
        ],
    )
    .await;
    assert_verify_fails(&app, "no checkpoint is signed with the audit key");
}

#[tokio::test]
async fn checkpoint_rows_are_append_only_and_a_deleted_row_fails_verify() {
    let mut app = spawn_app().await;
    let _ = app.token_for("prison").await;
    app.stop().await;
    let seqs = checkpoint_seqs(&app).await;
    let first = seqs[0];

    // The table refuses changes while its triggers stand.
    let pool = open_pool(&app).await;
    let update = sqlx::query("UPDATE audit_checkpoints SET head_hash = 'x' WHERE seq = ?")
        .bind(first)
        .execute(&pool)
        .await;
    let err = update.expect_err("UPDATE must fail while the trigger exists");
    assert!(err.to_string().contains("append-only"), "{err}");
    let delete = sqlx::query("DELETE FROM audit_checkpoints WHERE seq = ?")
        .bind(first)
        .execute(&pool)
        .await;
    let err = delete.expect_err("DELETE must fail while the trigger exists");
    assert!(err.to_string().contains("append-only"), "{err}");
    pool.close().await;
    assert_eq!(checkpoint_seqs(&app).await, seqs, "nothing changed");
    assert_verify_passes(&app);

    // Someone with file access drops the trigger and deletes a row: its line in the file
    // remains, and verify names it.
    let pool = open_pool(&app).await;
    sqlx::query("DROP TRIGGER audit_checkpoints_no_delete")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("DELETE FROM audit_checkpoints WHERE seq = ?")
        .bind(first)
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    assert_verify_fails(&app, "its row was deleted from the store");
}

#[tokio::test]
async fn entries_left_uncovered_longer_than_the_checkpoint_interval_fail_verify() {
    let clock = std::sync::Arc::new(ShiftedClock::default());
    let mut app = spawn_app_with_clock(clock.clone()).await;
    // An audited refusal now, and another an hour later (the interval is five minutes).
    let unauthenticated = |app: &TestApp| {
        let request = app.anonymous_client().get(app.url("/fhir/Task"));
        async move { request.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(unauthenticated(&app).await, 401);
    clock.set_offset(3600);
    assert_eq!(unauthenticated(&app).await, 401);
    app.stop().await;
    // The shutdown checkpoint covers the hour.
    assert_verify_passes(&app);

    // Remove that checkpoint from both copies (past the trigger): the copies agree, every
    // remaining checkpoint verifies, but an hour of entries is left with no checkpoint over it.
    let seqs = checkpoint_seqs(&app).await;
    let newest = *seqs.last().unwrap();
    let pool = open_pool(&app).await;
    sqlx::query("DROP TRIGGER audit_checkpoints_no_delete")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("DELETE FROM audit_checkpoints WHERE seq = ?")
        .bind(newest)
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let lines = file_lines(&app);
    write_lines(&app, &lines[..lines.len() - 1]);
    assert_verify_fails(&app, "with no signed checkpoint over them");
}
