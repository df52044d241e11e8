//! Messages between two sandbox mailboxes: what the sender sends is what the recipient reads.

use throughcare::transport::DeliveryOutcome;
use throughcare::transport::mesh::{MessageType, OutboundMessage};

use crate::harness;

const WORKFLOW: &str = "TOC_FHIR_IP_DISCH";

/// A synthetic ITK-like XML body of about `len` bytes (compressible, as XML is).
fn xml_body(len: usize) -> Vec<u8> {
    let mut body = String::from("<Bundle xmlns=\"http://hl7.org/fhir\">");
    let mut i = 0;
    while body.len() < len {
        body.push_str(&format!(
            "<entry><fullUrl value=\"urn:uuid:synthetic-{i:08}\"/></entry>"
        ));
        i += 1;
    }
    body.push_str("</Bundle>");
    body.into_bytes()
}

/// `len` bytes that do not compress (a fixed linear congruential sequence).
fn noise(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    (0..len)
        .map(|_| {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (x >> 56) as u8
        })
        .collect()
}

#[tokio::test]
async fn the_handshake_is_accepted() {
    let Some(sandbox) = harness::shared() else {
        return;
    };
    sandbox.client("PRISON01").handshake().await.unwrap();
}

#[tokio::test]
async fn a_message_sent_is_received_downloaded_and_acknowledged() {
    let Some(sandbox) = harness::shared() else {
        return;
    };
    let sender = sandbox.client("PRISON01");
    let receiver = sandbox.client("GPRECV01");
    let body = xml_body(2_000);
    let message = OutboundMessage {
        local_id: Some("delivery-0001"),
        subject: Some("ITK3 Transfer of Care (synthetic)"),
        file_name: Some("discharge.xml"),
        content_type: Some("application/fhir+xml"),
        ..OutboundMessage::new("GPRECV01", WORKFLOW, &body)
    };
    let DeliveryOutcome::AwaitingAcknowledgement { reference } = sender.deliver(&message).await
    else {
        panic!("a MESH send awaits the ITK acknowledgements");
    };

    receiver.handshake().await.unwrap();
    assert_eq!(
        receiver.list_inbox().await.unwrap(),
        vec![reference.clone()]
    );
    let received = receiver.download(&reference).await.unwrap();
    assert_eq!(received.message_id, reference);
    assert_eq!(received.message_type, MessageType::Data);
    assert!(received.report().is_none());
    assert_eq!(received.from.as_deref(), Some("PRISON01"));
    assert_eq!(received.to.as_deref(), Some("GPRECV01"));
    assert_eq!(received.workflow_id.as_deref(), Some(WORKFLOW));
    assert_eq!(received.local_id.as_deref(), Some("delivery-0001"));
    assert_eq!(
        received.subject.as_deref(),
        Some("ITK3 Transfer of Care (synthetic)")
    );
    assert_eq!(received.file_name.as_deref(), Some("discharge.xml"));
    assert_eq!(
        received.content_type.as_deref(),
        Some("application/fhir+xml")
    );
    assert_eq!(received.status.code.as_deref(), Some("00"));
    assert_eq!(received.chunks, 1);
    assert_eq!(received.body, body);

    let tracked = sender.track(&reference).await.unwrap();
    assert_eq!(tracked.status.as_deref(), Some("accepted"));
    assert_eq!(tracked.local_id.as_deref(), Some("delivery-0001"));

    receiver.acknowledge(&reference).await.unwrap();
    assert!(receiver.list_inbox().await.unwrap().is_empty());
    let tracked = sender.track(&reference).await.unwrap();
    assert_eq!(tracked.status.as_deref(), Some("acknowledged"));
}

#[tokio::test]
async fn a_large_message_is_sent_in_chunks_and_arrives_intact() {
    let Some(sandbox) = harness::shared() else {
        return;
    };
    let mut settings = sandbox.settings("PRISON01");
    settings.chunk_size_bytes = 64 * 1024;
    settings.compress_above_bytes = usize::MAX;
    let sender = throughcare::transport::mesh::MeshClient::from_settings(&settings).unwrap();
    let receiver = sandbox.client("GPRECV02");
    let body = noise(300 * 1024);
    let message = OutboundMessage {
        content_type: Some("application/fhir+xml"),
        ..OutboundMessage::new("GPRECV02", WORKFLOW, &body)
    };
    let sent = sender.send(&message).await.unwrap();
    assert_eq!(sent.chunks, 5, "300 KB in 64 KB chunks");
    assert!(!sent.compressed);

    assert_eq!(
        receiver.list_inbox().await.unwrap(),
        vec![sent.message_id.clone()]
    );
    let received = receiver.download(&sent.message_id).await.unwrap();
    assert_eq!(received.chunks, 5);
    assert_eq!(received.body.len(), body.len());
    assert!(
        received.body == body,
        "the chunks join into the message sent"
    );
    assert_eq!(
        received.content_type.as_deref(),
        Some("application/fhir+xml")
    );
    receiver.acknowledge(&sent.message_id).await.unwrap();
}

#[tokio::test]
async fn a_message_above_the_threshold_is_sent_gzip_compressed_and_read_back_whole() {
    let Some(sandbox) = harness::shared() else {
        return;
    };
    let mut settings = sandbox.settings("PRISON01");
    settings.compress_above_bytes = 1024;
    let sender = throughcare::transport::mesh::MeshClient::from_settings(&settings).unwrap();
    let receiver = sandbox.client("GPRECV03");
    let small = xml_body(500);
    let large = xml_body(200 * 1024);

    let plain = sender
        .send(&OutboundMessage::new("GPRECV03", WORKFLOW, &small))
        .await
        .unwrap();
    assert!(!plain.compressed, "below the threshold");
    let zipped = sender
        .send(&OutboundMessage::new("GPRECV03", WORKFLOW, &large))
        .await
        .unwrap();
    assert!(zipped.compressed);

    let record = sandbox.stored(&zipped.message_id).await;
    assert_eq!(record["is_compressed"], true, "{record}");
    assert_eq!(record["content_encoding"], "gzip", "{record}");
    assert!(
        record["file_size"].as_u64().unwrap() < (large.len() / 4) as u64,
        "stored compressed: {record}"
    );
    assert_eq!(
        sandbox.stored(&plain.message_id).await["is_compressed"],
        false
    );

    for (sent, body) in [(&plain, &small), (&zipped, &large)] {
        let received = receiver.download(&sent.message_id).await.unwrap();
        assert!(received.body == *body, "{} arrives intact", sent.message_id);
        receiver.acknowledge(&sent.message_id).await.unwrap();
    }
}

#[tokio::test]
async fn a_compressed_message_is_chunked_after_compression_and_arrives_intact() {
    let Some(sandbox) = harness::shared() else {
        return;
    };
    let mut settings = sandbox.settings("PRISON01");
    settings.compress_above_bytes = 0;
    settings.chunk_size_bytes = 16 * 1024;
    let sender = throughcare::transport::mesh::MeshClient::from_settings(&settings).unwrap();
    let receiver = sandbox.client("GPRECV04");
    // Half noise, half XML: compresses, but not into one chunk.
    let mut body = noise(40 * 1024);
    body.extend(xml_body(200 * 1024));
    let sent = sender
        .send(&OutboundMessage::new("GPRECV04", WORKFLOW, &body))
        .await
        .unwrap();
    assert!(sent.compressed);
    assert!(sent.chunks > 1, "{sent:?}");
    let received = receiver.download(&sent.message_id).await.unwrap();
    assert_eq!(received.chunks, sent.chunks);
    assert!(received.compressed);
    assert!(
        received.body == body,
        "one gzip stream cut into chunks, joined again"
    );
    receiver.acknowledge(&sent.message_id).await.unwrap();
}

#[tokio::test]
async fn a_mesh_report_is_read_as_a_report_with_its_code_and_linked_message() {
    let Some(sandbox) = harness::shared() else {
        return;
    };
    let sender = sandbox.client("GPRECV05");
    let body = xml_body(300);
    let sent = sender
        .send(&OutboundMessage {
            local_id: Some("delivery-0005"),
            ..OutboundMessage::new("GPRECV06", WORKFLOW, &body)
        })
        .await
        .unwrap();
    let report_id = sandbox
        .inject_report(serde_json::json!({
            "mailbox_id": "GPRECV05",
            "code": "14",
            "description": "Message not collected by recipient after 5 days",
            "workflow_id": WORKFLOW,
            "local_id": "delivery-0005",
            // The sandbox puts the Mex-Status* headers on "error" reports only (its
            // `Message.error_event`); an "undeliverable" one downloads without them.
            "status": "error",
            "linked_message_id": sent.message_id,
        }))
        .await;

    assert_eq!(sender.list_inbox().await.unwrap(), vec![report_id.clone()]);
    let report = sender.download(&report_id).await.unwrap();
    assert_eq!(report.message_type, MessageType::Report);
    let status = report.report().expect("a REPORT has a status");
    assert_eq!(status.code.as_deref(), Some("14"));
    assert_eq!(
        status.description.as_deref(),
        Some("Message not collected by recipient after 5 days")
    );
    assert_eq!(
        status.linked_message_id.as_deref(),
        Some(sent.message_id.as_str())
    );
    assert_eq!(status.success.as_deref(), Some("ERROR"));
    assert_eq!(report.workflow_id.as_deref(), Some(WORKFLOW));
    assert_eq!(report.local_id.as_deref(), Some("delivery-0005"));
    assert!(report.from.is_none(), "from the central system");
    assert!(report.body.is_empty());
    sender.acknowledge(&report_id).await.unwrap();
    assert!(sender.list_inbox().await.unwrap().is_empty());
}

#[tokio::test]
async fn the_inbox_is_listed_across_pages() {
    let Some(sandbox) = harness::shared() else {
        return;
    };
    let sender = sandbox.client("PRISON01");
    let receiver = sandbox.client("GPRECV07").with_inbox_page_size(10);
    let mut sent = Vec::new();
    for i in 0..13 {
        let body = format!("<message n=\"{i}\"/>");
        let s = sender
            .send(&OutboundMessage::new("GPRECV07", WORKFLOW, body.as_bytes()))
            .await
            .unwrap();
        sent.push(s.message_id);
    }
    let mut listed = receiver.list_inbox().await.unwrap();
    assert_eq!(listed.len(), 13, "two pages of at most 10");
    listed.sort();
    sent.sort();
    assert_eq!(listed, sent);
}
