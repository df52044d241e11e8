//! Mutual TLS that means something: a client certificate on every route but the open ones, and
//! access tokens bound to the certificate they were issued over (RFC 8705).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use serde_json::Value;

use crate::helpers::*;

/// `x5t#S256` of a sample client's certificate.
fn thumbprint_of(name: &str) -> String {
    let der =
        CertificateDer::from_pem_file(certs_dir().join(format!("clients/{name}.crt"))).unwrap();
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der.as_ref());
    URL_SAFE_NO_PAD.encode(digest.as_ref())
}

#[tokio::test]
async fn request_without_a_client_certificate_is_unauthorized_but_open_routes_answer() {
    let app = spawn_app().await;
    let token = app.token_for("prison").await;
    let anonymous = app.anonymous_client();

    // A protected route, with a good token but no certificate.
    let (release, _) = unique_release();
    let response = app
        .post_bundle_over(&anonymous, &token, FHIR_JSON, release)
        .await;
    let (status, headers, outcome) = status_and_json(response).await;
    assert_eq!(status, 401, "{outcome}");
    assert!(headers.contains_key("WWW-Authenticate"));
    assert_outcome_code(&outcome, "GW-AUTH-07");

    // Operators' metrics too.
    let response = anonymous.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 401);

    // The token endpoint answers in RFC 6749 terms.
    let assertion = app.sign(&app.assertion_claims("prison"), "prison");
    let (status, body) = app
        .token_request(
            &anonymous,
            &[
                ("grant_type", "client_credentials"),
                ("client_assertion_type", ASSERTION_TYPE),
                ("client_assertion", &assertion),
            ],
        )
        .await;
    assert_eq!(status, 401, "{body}");
    assert_oauth_error(&body, "invalid_client", "certificate");

    // Metadata, the well-known documents and health need nothing.
    for path in [
        "/fhir/metadata",
        "/.well-known/smart-configuration",
        "/.well-known/jwks.json",
        "/healthz",
        "/readyz",
    ] {
        let response = anonymous.get(app.url(path)).send().await.unwrap();
        assert_eq!(response.status().as_u16(), 200, "{path}");
    }
}

#[tokio::test]
async fn access_token_is_bound_to_the_certificate_it_was_issued_over() {
    let app = spawn_app().await;
    let token = app.token_for("prison").await;
    let claims = unverified_claims(&token);
    assert_eq!(
        claims["cnf"]["x5t#S256"],
        Value::from(thumbprint_of("prison")),
        "{claims}"
    );
    // Over the same certificate it works.
    let response = app.get_bundle(&token, "unknown").await;
    assert_eq!(response.status().as_u16(), 404);
}

#[tokio::test]
async fn token_replayed_over_a_different_client_certificate_is_unauthorized() {
    let app = spawn_app().await;
    let token = app.token_for("prison").await;
    let path = format!("/fhir/Bundle/{}", uuid::Uuid::new_v4());

    // Over the GP's TLS identity.
    let response = app
        .client_for("gp")
        .get(app.url(&path))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let (status, _, outcome) = status_and_json(response).await;
    assert_eq!(status, 401, "{outcome}");

    // Over another certificate of the same organisation (another machine, another key): only
    // the binding tells it from the one the token was issued over.
    let other = throughcare::client::http_client(
        &ca_pem(),
        Some(&issued_identity("prison-2", "Y02307", "gp")),
    )
    .unwrap();
    let response = other
        .get(app.url(&path))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let (status, headers, outcome) = status_and_json(response).await;
    assert_eq!(status, 401, "{outcome}");
    assert!(headers.contains_key("WWW-Authenticate"));
    assert_outcome_code(&outcome, "GW-AUTH-08");

    // The same token over its own certificate still works.
    let response = app.get_bundle(&token, "unknown").await;
    assert_eq!(response.status().as_u16(), 404);
}

#[tokio::test]
async fn bound_token_presented_without_a_certificate_is_unauthorized_when_certificates_are_optional()
 {
    let app = spawn_app_with(|s| s.tls.require_client_cert_for_api = false).await;
    let token = app.token_for("prison").await;
    let response = app
        .anonymous_client()
        .get(app.url("/fhir/Bundle/unknown"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let (status, _, outcome) = status_and_json(response).await;
    assert_eq!(status, 401, "{outcome}");
    assert_outcome_code(&outcome, "GW-AUTH-08");
}
