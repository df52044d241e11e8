//! `POST /oauth2/token`, the discovery documents, bearer tokens and client certificates.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde_json::{Value, json};

use crate::helpers::*;

#[tokio::test]
async fn token_is_issued_for_a_valid_assertion_and_works_on_the_fhir_api() {
    let app = spawn_app().await;
    let assertion = app.sign(&app.assertion_claims("prison"), "prison");
    let response = app
        .client_for("prison")
        .post(app.token_url())
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_assertion_type", ASSERTION_TYPE),
            ("client_assertion", &assertion),
        ])
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let cache_control = response
        .headers()
        .get("Cache-Control")
        .map(|v| v.to_str().unwrap().to_string());
    let body: Value = response.json().await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(cache_control.as_deref(), Some("no-store"));
    assert_eq!(
        body["token_type"].as_str().map(str::to_lowercase),
        Some("bearer".into())
    );
    assert_eq!(body["expires_in"], 300);
    let scope = body["scope"].as_str().expect("a scope");
    assert!(
        scope.split(' ').any(|s| s == "system/Bundle.crs"),
        "{scope}"
    );
    let token = body["access_token"].as_str().expect("an access_token");
    assert_eq!(token.split('.').count(), 3, "the access token is a JWT");

    let response = app
        .get_bundle(token, &uuid::Uuid::new_v4().to_string())
        .await;
    let (status, _, outcome) = status_and_json(response).await;
    assert_eq!(status, 404, "a valid token reaches the handler: {outcome}");
    assert_outcome_code(&outcome, "GW-NOT-FOUND");
}

#[tokio::test]
async fn token_is_signed_by_the_key_published_in_the_jwks() {
    let app = spawn_app().await;
    let token = app.token_for("prison").await;
    let jwks: Value = app
        .anonymous_client()
        .get(app.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = &jwks["keys"][0];
    let decoding =
        DecodingKey::from_ec_components(key["x"].as_str().unwrap(), key["y"].as_str().unwrap())
            .unwrap();
    let header = jsonwebtoken::decode_header(&token).unwrap();
    assert_eq!(header.alg, Algorithm::ES384);
    assert_eq!(header.kid.as_deref(), key["kid"].as_str());
    let mut validation = Validation::new(Algorithm::ES384);
    validation.set_audience(&[app.base_url.as_str()]);
    validation.set_issuer(&[app.base_url.as_str()]);
    let data = jsonwebtoken::decode::<Value>(&token, &decoding, &validation)
        .expect("the access token verifies against the published key");
    assert_eq!(data.claims["client_id"], "prison");
    assert_eq!(data.claims["ods"], "Y02307");
}

#[tokio::test]
async fn token_is_refused_when_the_assertion_is_unsigned() {
    let app = spawn_app().await;
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(app.assertion_claims("prison").to_string());
    let assertion = format!("{header}.{payload}.");
    let (status, body) = app.exchange(&assertion).await;
    assert_eq!(status, 401, "{body}");
    assert_oauth_error(&body, "invalid_client", "none");
}

#[tokio::test]
async fn token_is_refused_when_the_assertion_is_signed_with_hmac() {
    let app = spawn_app().await;
    let claims = app.assertion_claims("prison");
    // An attacker might try the client's public certificate as an HMAC secret.
    let secret = std::fs::read(certs_dir().join("clients/prison.crt")).unwrap();
    let assertion = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(&secret),
    )
    .unwrap();
    let (status, body) = app.exchange(&assertion).await;
    assert_eq!(status, 401, "{body}");
    assert_oauth_error(&body, "invalid_client", "HS256");
}

#[tokio::test]
async fn token_is_refused_when_the_assertion_names_another_audience() {
    let app = spawn_app().await;
    let mut claims = app.assertion_claims("prison");
    claims["aud"] = json!("https://elsewhere.example.org/oauth2/token");
    let (status, body) = app.exchange(&app.sign(&claims, "prison")).await;
    assert_eq!(status, 401, "{body}");
    assert_oauth_error(&body, "invalid_client", "aud");
}

#[tokio::test]
async fn token_is_refused_when_the_assertion_has_expired() {
    let app = spawn_app().await;
    let mut claims = app.assertion_claims("prison");
    claims["iat"] = json!(now() - 900);
    claims["exp"] = json!(now() - 600);
    let (status, body) = app.exchange(&app.sign(&claims, "prison")).await;
    assert_eq!(status, 401, "{body}");
    assert_oauth_error(&body, "invalid_client", "expired");
}

#[tokio::test]
async fn token_is_refused_when_the_assertion_expires_too_far_in_the_future() {
    let app = spawn_app().await;
    let mut claims = app.assertion_claims("prison");
    claims["exp"] = json!(now() + 3600);
    let (status, body) = app.exchange(&app.sign(&claims, "prison")).await;
    assert_eq!(status, 401, "{body}");
    assert_oauth_error(&body, "invalid_client", "exp");
}

#[tokio::test]
async fn token_is_refused_when_the_assertion_was_issued_in_the_future() {
    let app = spawn_app().await;
    let mut claims = app.assertion_claims("prison");
    claims["iat"] = json!(now() + 600);
    let (status, body) = app.exchange(&app.sign(&claims, "prison")).await;
    assert_eq!(status, 401, "{body}");
    assert_oauth_error(&body, "invalid_client", "iat");
}

#[tokio::test]
async fn token_is_refused_when_the_assertion_has_no_jti() {
    let app = spawn_app().await;
    let mut claims = app.assertion_claims("prison");
    claims.as_object_mut().unwrap().remove("jti");
    let (status, body) = app.exchange(&app.sign(&claims, "prison")).await;
    assert_eq!(status, 401, "{body}");
    assert_oauth_error(&body, "invalid_client", "jti");
}

#[tokio::test]
async fn token_is_refused_when_the_assertion_is_replayed() {
    let app = spawn_app().await;
    let assertion = app.sign(&app.assertion_claims("prison"), "prison");
    let (first, body) = app.exchange(&assertion).await;
    assert_eq!(first, 200, "{body}");
    assert!(body["access_token"].is_string());
    let (second, body) = app.exchange(&assertion).await;
    assert_eq!(second, 401, "{body}");
    assert_oauth_error(&body, "invalid_client", "replay");
}

#[tokio::test]
async fn token_is_refused_when_the_assertion_is_signed_by_another_clients_key() {
    let app = spawn_app().await;
    let claims = app.assertion_claims("prison");
    let (status, body) = app.exchange(&app.sign(&claims, "gp")).await;
    assert_eq!(status, 401, "{body}");
    assert_oauth_error(&body, "invalid_client", "signature");
}

#[tokio::test]
async fn token_is_refused_for_an_unknown_client() {
    let app = spawn_app().await;
    let claims = app.assertion_claims("unknown-prison");
    let (status, body) = app.exchange(&app.sign(&claims, "prison")).await;
    assert_eq!(status, 401, "{body}");
    assert_oauth_error(&body, "invalid_client", "not registered");
}

#[tokio::test]
async fn token_is_refused_for_another_grant_type() {
    let app = spawn_app().await;
    let assertion = app.sign(&app.assertion_claims("prison"), "prison");
    let (status, body) = app
        .token_request(
            &app.client_for("prison"),
            &[
                ("grant_type", "password"),
                ("client_assertion_type", ASSERTION_TYPE),
                ("client_assertion", &assertion),
            ],
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_oauth_error(&body, "unsupported_grant_type", "password");
}

#[tokio::test]
async fn token_is_refused_when_the_assertion_type_is_missing() {
    let app = spawn_app().await;
    let assertion = app.sign(&app.assertion_claims("prison"), "prison");
    let (status, body) = app
        .token_request(
            &app.client_for("prison"),
            &[
                ("grant_type", "client_credentials"),
                ("client_assertion", &assertion),
            ],
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_oauth_error(&body, "invalid_request", "client_assertion_type");
}

#[tokio::test]
async fn token_is_refused_for_a_scope_the_client_may_not_have() {
    let app = spawn_app().await;
    let assertion = app.sign(&app.assertion_claims("prison"), "prison");
    let (status, body) = app
        .token_request(
            &app.client_for("prison"),
            &[
                ("grant_type", "client_credentials"),
                ("client_assertion_type", ASSERTION_TYPE),
                ("client_assertion", &assertion),
                ("scope", "system/AuditEvent.rs"),
            ],
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_oauth_error(&body, "invalid_scope", "system/AuditEvent.rs");
}

#[tokio::test]
async fn token_is_granted_only_the_scope_asked_for_when_it_is_allowed() {
    let app = spawn_app().await;
    let assertion = app.sign(&app.assertion_claims("prison"), "prison");
    let (status, body) = app
        .token_request(
            &app.client_for("prison"),
            &[
                ("grant_type", "client_credentials"),
                ("client_assertion_type", ASSERTION_TYPE),
                ("client_assertion", &assertion),
                ("scope", "system/Bundle.r"),
            ],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["scope"], "system/Bundle.r");
    // A read-only token cannot create.
    let token = body["access_token"].as_str().unwrap();
    let (release, _) = unique_release();
    let (status, _, outcome) =
        status_and_json(app.post_bundle(token, FHIR_JSON, release).await).await;
    assert_eq!(status, 403, "{outcome}");
    assert_outcome_code(&outcome, "GW-AUTH-05");
}

#[tokio::test]
async fn token_is_refused_when_the_client_certificate_belongs_to_another_organisation() {
    let app = spawn_app().await;
    let assertion = app.sign(&app.assertion_claims("prison"), "prison");
    let (status, body) = app
        .token_request(
            &app.client_for("gp"),
            &[
                ("grant_type", "client_credentials"),
                ("client_assertion_type", ASSERTION_TYPE),
                ("client_assertion", &assertion),
            ],
        )
        .await;
    assert_eq!(status, 401, "{body}");
    assert_oauth_error(&body, "invalid_client", "certificate");
}

#[tokio::test]
async fn fhir_request_is_refused_when_the_client_certificate_does_not_match_the_token() {
    let app = spawn_app().await;
    let token = app.token_for("prison").await;
    let response = app
        .client_for("gp")
        .get(app.url(&format!("/fhir/Bundle/{}", uuid::Uuid::new_v4())))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let (status, headers, outcome) = status_and_json(response).await;
    assert_eq!(status, 401, "{outcome}");
    assert!(headers.contains_key("WWW-Authenticate"));
    assert_outcome_code(&outcome, "GW-AUTH-03");
}

#[tokio::test]
async fn token_and_fhir_request_succeed_without_a_client_certificate_when_relaxed_for_development()
{
    let app = spawn_app_with(|s| s.tls.require_client_cert_for_api = false).await;
    let token = app.token_over("prison", app.anonymous_client()).await;
    assert!(
        unverified_claims(&token).get("cnf").is_none(),
        "a token issued over no certificate is bound to none"
    );
    let (release, _) = unique_release();
    let response = app
        .post_bundle_over(&app.anonymous_client(), &token, FHIR_JSON, release)
        .await;
    let (status, _, outcome) = status_and_json(response).await;
    assert_eq!(status, 201, "{outcome}");
}

#[tokio::test]
async fn smart_configuration_names_the_token_endpoint() {
    let app = spawn_app().await;
    let response = app
        .anonymous_client()
        .get(app.url("/.well-known/smart-configuration"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let body: Value = response.json().await.unwrap();
    let endpoint = body["token_endpoint"].as_str().expect("token_endpoint");
    assert!(endpoint.ends_with("/oauth2/token"), "{endpoint}");
    assert_eq!(endpoint, app.token_url());
    assert!(
        body["token_endpoint_auth_methods_supported"]
            .as_array()
            .is_some_and(|m| m.contains(&json!("private_key_jwt"))),
        "{body}"
    );
    assert!(
        body["grant_types_supported"]
            .as_array()
            .is_some_and(|m| m.contains(&json!("client_credentials"))),
        "{body}"
    );
}

#[tokio::test]
async fn jwks_publishes_one_ec_p384_key() {
    let app = spawn_app().await;
    let response = app
        .anonymous_client()
        .get(app.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let body: Value = response.json().await.unwrap();
    let keys = body["keys"].as_array().expect("keys");
    assert_eq!(keys.len(), 1, "{body}");
    let key = &keys[0];
    assert_eq!(key["kty"], "EC");
    assert_eq!(key["crv"], "P-384");
    assert!(key["kid"].as_str().is_some_and(|k| !k.is_empty()), "{key}");
    for coordinate in ["x", "y"] {
        let bytes = URL_SAFE_NO_PAD
            .decode(key[coordinate].as_str().expect("a coordinate"))
            .expect("base64url");
        assert_eq!(bytes.len(), 48, "a P-384 coordinate is 48 bytes");
    }
    assert!(
        key.get("d").is_none(),
        "the private key must not be published"
    );
}

#[tokio::test]
async fn fhir_request_without_a_token_is_unauthorized() {
    let app = spawn_app().await;
    let response = app
        .client_for("prison")
        .get(app.url(&format!("/fhir/Bundle/{}", uuid::Uuid::new_v4())))
        .send()
        .await
        .unwrap();
    let (status, headers, outcome) = status_and_json(response).await;
    assert_eq!(status, 401, "{outcome}");
    let challenge = headers
        .get("WWW-Authenticate")
        .expect("a WWW-Authenticate header")
        .to_str()
        .unwrap();
    assert!(challenge.starts_with("Bearer"), "{challenge}");
    assert_outcome_code(&outcome, "GW-AUTH-01");
}

#[tokio::test]
async fn fhir_request_with_a_garbage_token_is_unauthorized() {
    let app = spawn_app().await;
    let response = app
        .client_for("prison")
        .get(app.url(&format!("/fhir/Bundle/{}", uuid::Uuid::new_v4())))
        .bearer_auth("not-a-token")
        .send()
        .await
        .unwrap();
    let (status, headers, outcome) = status_and_json(response).await;
    assert_eq!(status, 401, "{outcome}");
    assert!(headers.contains_key("WWW-Authenticate"));
    assert_outcome_code(&outcome, "GW-AUTH-02");
}

#[tokio::test]
async fn fhir_request_with_a_token_from_another_gateway_key_is_unauthorized() {
    let app = spawn_app().await;
    let other = spawn_app().await;
    // Another gateway has another signing key and another issuer.
    let foreign = other.token_for("prison").await;
    let response = app.get_bundle(&foreign, "anything").await;
    let (status, _, outcome) = status_and_json(response).await;
    assert_eq!(status, 401, "{outcome}");
    assert_outcome_code(&outcome, "GW-AUTH-02");
}

#[tokio::test]
async fn document_submission_is_forbidden_for_a_gp() {
    let app = spawn_app().await;
    let token = app.token_for("gp").await;
    let (release, _) = unique_release();
    let response = app
        .post_bundle_over(&app.client_for("gp"), &token, FHIR_JSON, release)
        .await;
    let (status, _, outcome) = status_and_json(response).await;
    assert_eq!(status, 403, "{outcome}");
    assert_outcome_code(&outcome, "GW-AUTH-04");
}

#[tokio::test]
async fn document_submission_is_forbidden_for_an_auditor() {
    let app = spawn_app().await;
    let token = app.token_for("auditor").await;
    let (release, _) = unique_release();
    let response = app
        .post_bundle_over(&app.client_for("auditor"), &token, FHIR_JSON, release)
        .await;
    let (status, _, outcome) = status_and_json(response).await;
    assert_eq!(status, 403, "{outcome}");
    assert_outcome_code(&outcome, "GW-AUTH-04");
}

#[tokio::test]
async fn token_is_refused_when_the_assertion_subject_is_not_the_issuer() {
    let app = spawn_app().await;
    let mut claims = app.assertion_claims("prison");
    claims["sub"] = json!("gp");
    let (status, body) = app.exchange(&app.sign(&claims, "prison")).await;
    assert_eq!(status, 401, "{body}");
    assert_oauth_error(&body, "invalid_client", "sub");
}

#[tokio::test]
async fn token_is_issued_when_the_client_clock_is_slightly_ahead() {
    let app = spawn_app().await;
    let mut claims = app.assertion_claims("prison");
    claims["iat"] = json!(now() + 30);
    claims["exp"] = json!(now() + 270);
    let (status, body) = app.exchange(&app.sign(&claims, "prison")).await;
    assert_eq!(
        status, 200,
        "a skew within the allowance is tolerated: {body}"
    );
}

#[tokio::test]
async fn token_request_that_is_not_a_form_is_refused() {
    let app = spawn_app().await;
    let assertion = app.sign(&app.assertion_claims("prison"), "prison");
    let response = app
        .client_for("prison")
        .post(app.token_url())
        .json(&json!({
            "grant_type": "client_credentials",
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": assertion,
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    let body: Value = response.json().await.unwrap();
    assert_oauth_error(&body, "invalid_request", "x-www-form-urlencoded");
}

#[tokio::test]
async fn token_refusal_does_not_burn_the_assertion_jti() {
    let app = spawn_app().await;
    // Refused for its scope, then sent again without one: the jti was not spent on a refusal.
    let assertion = app.sign(&app.assertion_claims("prison"), "prison");
    let (status, body) = app
        .token_request(
            &app.client_for("prison"),
            &[
                ("grant_type", "client_credentials"),
                ("client_assertion_type", ASSERTION_TYPE),
                ("client_assertion", &assertion),
                ("scope", "system/AuditEvent.rs"),
            ],
        )
        .await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = app.exchange(&assertion).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn connection_presenting_a_certificate_from_another_ca_is_refused() {
    let app = spawn_app().await;
    // A self-made certificate claiming the prison's organisation.
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::CommonName, "prison");
    dn.push(rcgen::DnType::OrganizationName, "Y02307");
    params.distinguished_name = dn;
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let cert = params.self_signed(&key).unwrap();
    let identity = format!("{}{}", cert.pem(), key.serialize_pem());
    let http = throughcare::client::http_client(&ca_pem(), Some(identity.as_bytes())).unwrap();
    let result = http.get(app.url("/fhir/metadata")).send().await;
    assert!(
        result.is_err(),
        "the TLS handshake must fail, got {:?}",
        result.map(|r| r.status())
    );
}

#[tokio::test]
async fn access_token_is_refused_once_the_gateway_clock_passes_its_expiry() {
    let clock = Arc::new(ShiftedClock::default());
    let app = spawn_app_with_clock(clock.clone()).await;
    let token = app.token_for("prison").await;
    let response = app.get_bundle(&token, "unknown").await;
    assert_eq!(response.status().as_u16(), 404, "the token works at first");

    // The token lives 300 seconds; ten minutes later, by the gateway's clock, it is dead.
    clock.set_offset(600);
    let response = app.get_bundle(&token, "unknown").await;
    let (status, _, outcome) = status_and_json(response).await;
    assert_eq!(
        status, 401,
        "an expired access token must be refused: {outcome}"
    );
    assert_outcome_code(&outcome, "GW-AUTH-02");
}

#[tokio::test]
async fn assertion_is_refused_when_it_has_expired_by_the_gateway_clock() {
    let clock = Arc::new(ShiftedClock::default());
    let app = spawn_app_with_clock(clock.clone()).await;
    // Signed by a client whose clock is ten minutes behind the gateway's: by the gateway's
    // time the assertion expired six minutes ago, well beyond the 60 s skew allowance.
    clock.set_offset(600);
    let client_now = clock.unix_now() - 600;
    let mut claims = app.assertion_claims("prison");
    claims["iat"] = json!(client_now);
    claims["exp"] = json!(client_now + 240);
    let (status, body) = app.exchange(&app.sign(&claims, "prison")).await;
    assert_eq!(status, 401, "{body}");
    assert_oauth_error(&body, "invalid_client", "expired");
}
