//! Regression tests for what the fuzz targets found: each input once crashed the code named.

use throughcare::validate::fhirpath::Expr;

/// FHIRPath: nesting past any invariant's overflowed the stack (the parser recursed once per
/// parenthesis or minus, and chains built trees that evaluation and dropping walk
/// recursively). It now fails to compile, naming the limit; found by `fuzz_fhirpath` with
/// `((((…a…))))` 100,000 deep.
#[test]
fn fhirpath_nested_past_the_limit_fails_to_compile_instead_of_overflowing() {
    let n = 100_000;
    for src in [
        format!("{}a{}", "(".repeat(n), ")".repeat(n)),
        format!("{}1", "-".repeat(n)),
        format!("{}1", "+".repeat(n)),
        format!("a{}", ".b".repeat(n)),
        format!("a{}", "[0]".repeat(n)),
        vec!["1"; n].join(" + "),
        vec!["a"; n].join(" and "),
        format!("{}true{}", "iif(".repeat(n), ", 1, 2)".repeat(n)),
        format!("a{}", ".first()".repeat(n)),
        format!("a{}", " is T".repeat(n)),
    ] {
        let err = Expr::compile(&src).expect_err("too deep to compile");
        assert!(err.contains("nested more than"), "{err}");
    }
    // Within the limit, the same shapes compile and evaluate.
    let value = serde_json::json!({"a": {"b": {"b": true}}});
    for src in ["((((a.b.b))))", "-(-(1)) = 1", "a.b.b[0] and true"] {
        let expr = Expr::compile(src).unwrap();
        assert_eq!(
            expr.check(&value, &value, &value, None),
            Ok(Some(true)),
            "{src}"
        );
    }
}

/// The depth limit leaves every invariant of the loaded profiles (R4 core, UK Core, GP Connect
/// and ours) compiling.
#[test]
fn every_loaded_invariant_compiles_within_the_depth_limit() {
    let validator = &*crate::intake::VALIDATOR;
    for warning in &validator.report().warnings {
        assert!(!warning.contains("nested more than"), "{warning}");
    }
}

/// Token request: an assertion whose `exp` is i64::MAX overflowed the expiry arithmetic (a
/// panic in debug builds, a wrapped comparison in release); it is now refused as too far ahead.
/// Found by `fuzz_token_request`. (i64::MIN never gets that far: not a valid `exp` for the JWT
/// library.)
#[test]
fn token_assertion_times_at_the_ends_of_i64_are_refused_not_overflowed() {
    use throughcare::auth::token::{ASSERTION_TYPE, TokenError, TokenRequest};
    let harness = &*crate::token::HARNESS;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    for (exp, why) in [(i64::MAX, "too far ahead"), (i64::MIN, "exp")] {
        let claims = serde_json::json!({
            "iss": "prison", "sub": "prison", "aud": crate::token::TOKEN_URL,
            "exp": exp, "iat": now, "jti": uuid::Uuid::new_v4().to_string(),
        });
        let assertion =
            throughcare::client::sign_claims(&claims, &crate::token::key_of("prison")).unwrap();
        let request = TokenRequest {
            grant_type: Some("client_credentials".into()),
            client_assertion_type: Some(ASSERTION_TYPE.into()),
            client_assertion: Some(assertion),
            scope: None,
        };
        let outcome = harness.runtime.block_on(harness.service.exchange(
            &harness.store,
            &request,
            None,
            now,
        ));
        match outcome {
            Err(TokenError::InvalidClient { description, .. }) => {
                assert!(description.contains(why), "{description}")
            }
            other => panic!("exp {exp}: expected a refusal, got {other:?}"),
        }
    }
}
