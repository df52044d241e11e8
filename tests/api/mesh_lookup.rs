//! A GP practice registered as a MESH endpoint without a mailbox (issue 13 item 2): the gateway
//! finds the practice's mailbox by MESH endpoint lookup (ODS code and workflow), against an
//! edited copy of the sandbox's data (`../shared` is never edited), and delivers there.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::delivery::{fast, wait_for};
use crate::helpers::*;

use crate::mesh_delivery::harness;

#[tokio::test]
async fn a_practice_without_a_mailbox_in_the_directory_is_found_by_mesh_endpoint_lookup() {
    let Some(source) = harness::sandbox_source() else {
        return;
    };
    let copy = harness::SandboxCopy::of(&source);
    copy.add_line(
        "mailboxes.jsonl",
        &json!({"mailbox_id": "A99001GP", "mailbox_name": "Sample Community GP Practice",
                "billing_entity": "England", "ods_code": "A99001", "org_code": "A99001",
                "password": "password"}),
    );
    copy.add_line(
        "workflows.jsonl",
        &json!({"workflow_id": "TOC_FHIR_IP_DISCH", "senders": ["THRUGATE"],
                "receivers": ["A99001GP"]}),
    );
    let sandbox = harness::Sandbox::start(copy.dir.path(), &[("MESH_EXTRA_MAILBOXES", "THRUGATE")]);
    let mut mesh = sandbox.settings("THRUGATE");
    mesh.poll_interval_secs = 1;
    let app = spawn_app_with(|s| {
        fast(s);
        s.mesh = Some(mesh);
    })
    .await;
    // The directory says only "MESH": no mailbox.
    let admin = app.token_for("admin").await;
    let response = app
        .put_json(
            "admin",
            &admin,
            "/admin/endpoints/A99001",
            &json!({"kind": "mesh", "profile": "itk-edischarge-stu3"}),
        )
        .await;
    assert_eq!(response.status().as_u16(), 200);

    let date = (time::OffsetDateTime::now_utc() + time::Duration::days(14)).date();
    let document = release_tree(|t| {
        t["entry"][0]["resource"]["event"][0]["period"]["start"] = json!(date.to_string());
    });
    let token = app.token_for("prison").await;
    let (status, headers, outcome) =
        status_and_json(app.post_bundle(&token, FHIR_JSON, document).await).await;
    assert_eq!(status, 201, "{outcome}");
    let id = location_of(&headers)
        .rsplit('/')
        .next()
        .unwrap()
        .to_string();
    wait_for(&app, &id, "A99001", "in-progress").await;

    let practice = sandbox.client("A99001GP");
    let deadline = Instant::now() + Duration::from_secs(20);
    let ids = loop {
        let ids = practice.list_inbox().await.unwrap();
        if !ids.is_empty() {
            break ids;
        }
        assert!(
            Instant::now() < deadline,
            "nothing reached the looked-up mailbox"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let message = practice.download(&ids[0]).await.unwrap();
    assert_eq!(message.workflow_id.as_deref(), Some("TOC_FHIR_IP_DISCH"));
    assert_eq!(message.from.as_deref(), Some("THRUGATE"));
}

#[tokio::test]
async fn a_mesh_endpoint_needs_the_gateways_mesh_configuration_and_the_itk_profile() {
    let app = spawn_app().await;
    let admin = app.token_for("admin").await;
    let (status, _, outcome) = status_and_json(
        app.put_json(
            "admin",
            &admin,
            "/admin/endpoints/A99001",
            &json!({"kind": "mesh", "mailbox": "GPPRAC01", "profile": "itk-edischarge-stu3"}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 422, "{outcome}");
    assert_outcome_code(&outcome, "GW-ADMIN-03");
    assert!(diagnostics(&outcome).contains("[mesh]"), "{outcome}");

    let app = spawn_app_with(|s| {
        let mut mesh = throughcare::config::MeshSettings::new("http://127.0.0.1:9", "THRUGATE");
        mesh.password = Some(throughcare::config::Secret::new("password"));
        mesh.shared_key = Some(throughcare::config::Secret::new("TestKey"));
        s.mesh = Some(mesh);
    })
    .await;
    let admin = app.token_for("admin").await;
    for (body, expression) in [
        (
            json!({"kind": "mesh", "mailbox": "GPPRAC01", "profile": "gp-connect-stu3"}),
            "profile",
        ),
        (
            json!({"kind": "mesh", "mailbox": "gp prac", "profile": "itk-edischarge-stu3"}),
            "mailbox",
        ),
        (
            json!({"kind": "mesh", "url": "https://gp.example/fhir", "profile": "itk-edischarge-stu3"}),
            "url",
        ),
        (json!({"profile": "uk-core-r4"}), "url"),
    ] {
        let (status, _, outcome) = status_and_json(
            app.put_json("admin", &admin, "/admin/endpoints/A99001", &body)
                .await,
        )
        .await;
        assert_eq!(status, 422, "{body}: {outcome}");
        assert_expression(&outcome, expression);
    }
    let (status, _, outcome) = status_and_json(
        app.put_json(
            "admin",
            &admin,
            "/admin/endpoints/A99001",
            &json!({"kind": "mesh", "mailbox": "GPPRAC01", "profile": "itk-edischarge-stu3"}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 200, "{outcome}");
}
