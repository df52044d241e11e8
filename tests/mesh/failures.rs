//! How MESH failures end a delivery: credentials and an unknown recipient are permanent (with
//! the reason and MESH's code); an outage is worth retrying, and the send succeeds once MESH is
//! back.

use throughcare::codes;
use throughcare::config::Secret;
use throughcare::transport::DeliveryOutcome;
use throughcare::transport::mesh::{MeshClient, MeshError, OutboundMessage};

use crate::harness::{self, Sandbox};

const BODY: &[u8] = b"<Bundle xmlns=\"http://hl7.org/fhir\"/>";

#[tokio::test]
async fn a_wrong_password_or_shared_key_is_a_permanent_failure_with_its_reason() {
    let Some(sandbox) = harness::shared() else {
        return;
    };
    let mut wrong_password = sandbox.settings("PRISON01");
    wrong_password.password = Some(Secret::new("not-the-password"));
    let mut wrong_key = sandbox.settings("PRISON01");
    wrong_key.shared_key = Some(Secret::new("NotTheKey"));
    for settings in [wrong_password, wrong_key] {
        let client = MeshClient::from_settings(&settings).unwrap();
        let e = client.handshake().await.unwrap_err();
        assert!(
            matches!(&e, MeshError::AuthRejected { status: 403, .. }),
            "{e:?}"
        );
        let outcome = client
            .deliver(&OutboundMessage::new("GPRECV08", "TOC_FHIR_IP_DISCH", BODY))
            .await;
        match outcome {
            DeliveryOutcome::Permanent {
                code,
                reason,
                status_code,
            } => {
                assert_eq!(code, codes::MESH_AUTH);
                assert_eq!(status_code, Some(403));
                assert!(reason.contains("Invalid Authentication Token"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
    }
    // Nothing was sent.
    assert!(
        sandbox
            .client("GPRECV08")
            .list_inbox()
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn an_unregistered_recipient_is_a_permanent_failure_with_mesh_code_12() {
    let Some(sandbox) = harness::shared() else {
        return;
    };
    let client = sandbox.client("PRISON01");
    let message = OutboundMessage::new(
        "GPPROVIDER_9990000018_19800101_SYNTHETIC",
        "TOC_FHIR_IP_DISCH",
        BODY,
    );
    let e = client.send(&message).await.unwrap_err();
    assert_eq!(
        e,
        MeshError::Refused {
            status: 417,
            event: Some("SEND".into()),
            code: Some("12".into()),
            message: "Unregistered to address".into(),
        }
    );
    assert_eq!(
        client.deliver(&message).await,
        DeliveryOutcome::Permanent {
            code: codes::MESH_REFUSED,
            reason: "MESH 12 (SEND): Unregistered to address [417]".into(),
            status_code: Some(417),
        }
    );
}

#[tokio::test]
async fn a_mesh_outage_is_retried_and_the_send_succeeds_once_mesh_is_back() {
    let Some(source) = harness::sandbox_source() else {
        return;
    };
    // Its own sandbox: this test stops it.
    let sandbox = Sandbox::start(&source, &[]);
    let sender = sandbox.client("X26ABC1");
    let receiver = sandbox.client("X26ABC2");
    let message = OutboundMessage::new("X26ABC2", "TOC_FHIR_IP_DISCH", BODY);
    assert!(matches!(
        sender.deliver(&message).await,
        DeliveryOutcome::AwaitingAcknowledgement { .. }
    ));

    sandbox.stop();
    let e = sender.send(&message).await.unwrap_err();
    assert!(matches!(e, MeshError::Connect(_)), "{e:?}");
    assert!(e.is_retryable());
    match sender.deliver(&message).await {
        DeliveryOutcome::RetryAfter {
            reason,
            status_code,
            ..
        } => {
            assert_eq!(status_code, None, "nobody answered");
            assert!(reason.contains("connection to MESH failed"), "{reason}");
        }
        other => panic!("an outage is worth retrying: {other:?}"),
    }
    assert!(receiver.handshake().await.unwrap_err().is_retryable());

    sandbox.restart();
    let DeliveryOutcome::AwaitingAcknowledgement { reference } = sender.deliver(&message).await
    else {
        panic!("the send succeeds once MESH is back");
    };
    assert_eq!(
        receiver.list_inbox().await.unwrap(),
        vec![reference.clone()]
    );
    assert_eq!(receiver.download(&reference).await.unwrap().body, BODY);
}

#[tokio::test]
async fn over_tls_the_configured_ca_is_trusted_and_nothing_else() {
    let Some(source) = harness::sandbox_source() else {
        return;
    };
    let sandbox = Sandbox::start(&source, &[("MESH_TLS", "1")]);
    assert!(sandbox.base.starts_with("https://"), "{}", sandbox.base);
    let mut settings = sandbox.settings("X26ABC1");
    settings.ca = Some(harness::tls_ca());
    // The mailbox's client certificate is loaded and offered (the sandbox does not ask for one).
    let certs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("certs-example/clients");
    settings.client_cert = Some(certs.join("gp.crt"));
    settings.client_key = Some(certs.join("gp.key"));
    MeshClient::from_settings(&settings)
        .unwrap()
        .handshake()
        .await
        .unwrap();
    // Without the CA the sandbox's certificate is not trusted: no connection (retryable, as a
    // wrong CA file is an operator's fix, not the message's).
    let e = sandbox.client("X26ABC1").handshake().await.unwrap_err();
    assert!(matches!(e, MeshError::Connect(_)), "{e:?}");
}
