//! Endpoint lookup (`GET /messageexchange/endpointlookup/{ODS}/{WorkflowID}`) against an edited
//! copy of the sandbox: its answer is kept for `lookup_cache_secs`.

use serde_json::json;
use throughcare::transport::mesh::{MeshClient, OutboundMessage};

use crate::harness::{self, Sandbox, SandboxCopy};

#[tokio::test]
async fn endpoint_lookup_finds_a_practice_mailbox_and_keeps_the_answer() {
    let Some(source) = harness::sandbox_source() else {
        return;
    };
    // A synthetic GP practice (ODS A99001) registered for the ToC workflow, in a copy of the
    // sandbox's data (../shared is never edited).
    let copy = SandboxCopy::of(&source);
    copy.add_line(
        "mailboxes.jsonl",
        &json!({"mailbox_id": "A99001GP", "mailbox_name": "Sample Community GP Practice",
                "billing_entity": "England", "ods_code": "A99001", "org_code": "A99001",
                "password": "password"}),
    );
    copy.add_line(
        "workflows.jsonl",
        &json!({"workflow_id": "TOC_FHIR_IP_DISCH", "senders": ["X26ABC1"],
                "receivers": ["A99001GP"]}),
    );
    let sandbox = Sandbox::start(copy.dir.path(), &[]);
    let client = sandbox.client("X26ABC1");
    let mut uncached_settings = sandbox.settings("X26ABC1");
    uncached_settings.lookup_cache_secs = 0;
    let uncached = MeshClient::from_settings(&uncached_settings).unwrap();

    let found = client.lookup("A99001", "TOC_FHIR_IP_DISCH").await.unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].mailbox_id, "A99001GP");
    assert_eq!(
        found[0].mailbox_name.as_deref(),
        Some("Sample Community GP Practice")
    );
    assert_eq!(client.lookup_fetches(), 1);
    // The shipped data still answers, and an unknown practice has no mailbox.
    let shipped = client.lookup("X26", "TEST_WORKFLOW").await.unwrap();
    assert_eq!(shipped[0].mailbox_id, "X26ABC2");
    assert!(
        client
            .lookup("B99999", "TOC_FHIR_IP_DISCH")
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(client.lookup_fetches(), 3);
    // The mailbox found is one MESH delivers to.
    assert!(
        client
            .send(&OutboundMessage::new(
                "A99001GP",
                "TOC_FHIR_IP_DISCH",
                b"<x/>"
            ))
            .await
            .is_ok()
    );

    // The second lookup is answered from the cache: it works with MESH gone.
    assert_eq!(
        uncached
            .lookup("A99001", "TOC_FHIR_IP_DISCH")
            .await
            .unwrap(),
        found
    );
    sandbox.stop();
    assert_eq!(
        client.lookup("a99001", "TOC_FHIR_IP_DISCH").await.unwrap(),
        found,
        "cached (ODS codes compared upper-case)"
    );
    assert_eq!(client.lookup_fetches(), 3, "no request reached the server");
    let e = uncached
        .lookup("A99001", "TOC_FHIR_IP_DISCH")
        .await
        .unwrap_err();
    assert!(e.is_retryable(), "without the cache it needs MESH: {e:?}");
    drop(sandbox);
    drop(copy);
}
