//! Durability: what was accepted survives a restart, and so does idempotency.

use crate::helpers::*;

#[tokio::test]
async fn accepted_document_and_its_idempotency_survive_a_restart() {
    let app = spawn_app().await;
    let token = app.token_for("prison").await;
    let (release, _) = unique_release();
    let (status, headers, outcome) =
        status_and_json(app.post_bundle(&token, FHIR_JSON, release.clone()).await).await;
    assert_eq!(status, 201, "{outcome}");
    let id = location_of(&headers)
        .rsplit('/')
        .next()
        .unwrap()
        .to_string();
    let old_port = app.port;

    let app = app.restart().await;
    assert_ne!(app.port, old_port, "the new gateway listens on a new port");

    let token = app.token_for("prison").await;
    let response = app.get_bundle(&token, &id).await;
    assert_eq!(response.status().as_u16(), 200);
    let bytes = response.bytes().await.unwrap();
    assert_eq!(
        bytes.as_ref(),
        release.as_bytes(),
        "identical bytes after restart"
    );

    let (status, headers, outcome) =
        status_and_json(app.post_bundle(&token, FHIR_JSON, release).await).await;
    assert_eq!(
        status, 200,
        "a repeat after restart is recognised: {outcome}"
    );
    assert_eq!(
        location_of(&headers),
        format!("{}/fhir/Bundle/{id}", app.base_url)
    );
}

#[tokio::test]
async fn assertion_replay_is_refused_across_a_restart() {
    let app = spawn_app().await;
    let assertion = app.sign(&app.assertion_claims("prison"), "prison");
    let (status, body) = app.exchange(&assertion).await;
    assert_eq!(status, 200, "{body}");
    let token_url = app.token_url();

    let app = app.restart().await;
    // The audience is the new address, so re-sign the same jti for it: the jti must still be
    // remembered.
    let mut claims: serde_json::Value = {
        let payload = assertion.split('.').nth(1).unwrap();
        use base64::Engine;
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap();
        serde_json::from_slice(&bytes).unwrap()
    };
    assert_eq!(claims["aud"], token_url);
    claims["aud"] = serde_json::json!(app.token_url());
    let (status, body) = app.exchange(&app.sign(&claims, "prison")).await;
    assert_eq!(status, 401, "{body}");
    assert_oauth_error(&body, "invalid_client", "replay");
}

#[tokio::test]
async fn gateway_signing_key_is_kept_across_a_restart() {
    let app = spawn_app().await;
    let jwks = |app: &TestApp| {
        let http = app.anonymous_client();
        let url = app.url("/.well-known/jwks.json");
        async move {
            http.get(url)
                .send()
                .await
                .unwrap()
                .json::<serde_json::Value>()
                .await
                .unwrap()
        }
    };
    let before = jwks(&app).await;
    let app = app.restart().await;
    let after = jwks(&app).await;
    assert_eq!(before["keys"][0]["kid"], after["keys"][0]["kid"]);
    assert!(before["keys"][0]["kid"].is_string());
}
