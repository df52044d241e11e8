//! The token request: the form (`api::oauth::read_form`: `serde_urlencoded` into
//! `auth::token::TokenRequest`, a parameter given twice refused) and the whole exchange of
//! `TokenService::exchange` short of the network: the grant, the assertion's header and claims,
//! its signature with the client's registered key, its times, jti and scopes, the certificate's
//! organisation, and the replay store. Assertions are generated as claims and signed with the
//! sample clients' keys (or not signed, or signed by the wrong key), then sent in a form that is
//! itself mutated. A token issued must verify; a token changed must not.

use std::sync::{Arc, LazyLock};

use proptest::prelude::*;
use proptest::sample::select;
use serde_json::{Value, json};
use throughcare::auth::PeerIdentity;
use throughcare::auth::token::{ASSERTION_TYPE, ClientRegistry, TokenError, TokenService};
use throughcare::store::SqliteStore;

use crate::arb;
use crate::{fuzz, reached, repo, settings};

pub const TOKEN_URL: &str = "https://localhost:8443/oauth2/token";

pub struct Harness {
    pub service: TokenService,
    pub store: SqliteStore,
    pub runtime: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
}

pub static HARNESS: LazyLock<Harness> = LazyLock::new(|| {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let registrations = throughcare::demo::sample_registrations(&repo("certs-example"));
    let service = TokenService {
        clients: ClientRegistry::load(&registrations).unwrap(),
        gateway_key: throughcare::auth::keys::GatewayKey::load_or_generate(None, dir.path())
            .unwrap(),
        settings: settings().auth,
        issuer: "https://localhost:8443".into(),
        token_url: TOKEN_URL.into(),
    };
    let store = runtime
        .block_on(SqliteStore::open(
            dir.path(),
            Arc::new(throughcare::clock::SystemClock),
        ))
        .unwrap();
    Harness {
        service,
        store,
        runtime,
        _dir: dir,
    }
});

pub fn key_of(client: &str) -> Vec<u8> {
    std::fs::read(repo(&format!("certs-example/clients/{client}.key"))).unwrap()
}

fn id() -> BoxedStrategy<Value> {
    prop_oneof![
        select(
            &[
                "prison",
                "gp",
                "icb",
                "auditor",
                "drug-service",
                "nobody",
                ""
            ][..]
        )
        .prop_map(|s| json!(s)),
        arb::string().prop_map(Value::String),
    ]
    .boxed()
}

fn time_offset() -> BoxedStrategy<Value> {
    prop_oneof![
        (-1000i64..1000).prop_map(|o| json!(o)),
        any::<i64>().prop_map(|o| json!(o)),
        arb::number(),
    ]
    .boxed()
}

/// How the assertion is made.
#[derive(Debug, Clone)]
enum Signed {
    /// Signed with the key of the client the claims name.
    Own,
    /// Signed with this sample client's key.
    By(&'static str),
    /// A string that is no signed JWT.
    Garbage(String),
    /// Signed, then one character changed.
    Tampered(&'static str, usize),
}

/// A change to the claims an honest client would send.
#[derive(Debug, Clone)]
enum ClaimEdit {
    Remove(&'static str),
    Set(&'static str, Value),
    Extra(String, Value),
}

const CLAIMS: &[&str] = &["iss", "sub", "aud", "exp", "iat", "nbf", "jti"];

fn claim_edit() -> BoxedStrategy<ClaimEdit> {
    prop_oneof![
        select(CLAIMS).prop_map(ClaimEdit::Remove),
        (select(&["iss", "sub"][..]), id()).prop_map(|(c, v)| ClaimEdit::Set(c, v)),
        prop_oneof![Just(json!("https://localhost:8443/other")), arb::leaf()]
            .prop_map(|v| ClaimEdit::Set("aud", v)),
        (select(&["exp", "iat", "nbf"][..]), time_offset()).prop_map(|(c, v)| ClaimEdit::Set(c, v)),
        prop_oneof![Just(json!("x".repeat(300))), Just(json!("")), arb::leaf()]
            .prop_map(|v| ClaimEdit::Set("jti", v)),
        (arb::key(), arb::json(2)).prop_map(|(k, v)| ClaimEdit::Extra(k, v)),
    ]
    .boxed()
}

#[derive(Debug, Clone)]
struct Request {
    /// The client whose claims (iss, sub) these are.
    client: &'static str,
    claim_edits: Vec<ClaimEdit>,
    signed: Signed,
    grant_type: Option<String>,
    assertion_type: Option<String>,
    scope: Option<String>,
    extra_pairs: Vec<(String, String)>,
    peer: Option<(Option<String>, Option<String>)>,
    edits: Vec<arb::ByteEdit>,
}

fn request() -> BoxedStrategy<Request> {
    let signed = prop_oneof![
        7 => Just(Signed::Own),
        1 => select(&["prison", "gp", "icb"][..]).prop_map(Signed::By),
        1 => prop_oneof![
            "[A-Za-z0-9_.-]{0,80}",
            Just("eyJhbGciOiJub25lIn0.eyJpc3MiOiJwcmlzb24ifQ.".to_string()),
            arb::string(),
        ]
        .prop_map(Signed::Garbage),
        1 => (select(&["prison", "gp"][..]), any::<usize>()).prop_map(|(c, i)| Signed::Tampered(c, i)),
    ];
    let optional = |usual: &'static [&'static str]| {
        prop_oneof![
            8 => select(usual).prop_map(|s| Some(s.to_string())),
            1 => Just(None),
            1 => arb::string().prop_map(Some),
        ]
    };
    (
        select(&["prison", "gp", "icb"][..]),
        prop_oneof![
            2 => Just(Vec::new()),
            1 => prop::collection::vec(claim_edit(), 1..4),
        ],
        signed,
        (
            optional(&["client_credentials"]),
            optional(&[ASSERTION_TYPE]),
            prop_oneof![
                4 => Just(None),
                2 => select(&["system/Bundle.c", "system/*.rs", "system/Bundle.c system/Bundle.c", "", "system/", "patient/*.*"][..])
                    .prop_map(|s| Some(s.to_string())),
                1 => arb::string().prop_map(Some),
            ],
        ),
        prop_oneof![
            4 => Just(Vec::new()),
            1 => prop::collection::vec(
                (
                    prop_oneof![
                        select(&["grant_type", "client_assertion", "client_assertion_type", "scope"][..])
                            .prop_map(String::from),
                        arb::key(),
                    ],
                    arb::string(),
                ),
                1..3,
            ),
        ],
        prop_oneof![
            2 => Just(None),
            1 => (
                prop::option::of(select(&["Y02307", "A99001", "Q99", ""][..]).prop_map(String::from)),
                prop::option::of("[A-Za-z0-9_-]{0,43}"),
            )
                .prop_map(Some),
            1 => Just(Some((Some("matching".to_string()), Some("thumbprint".to_string())))),
        ],
        prop_oneof![
            6 => Just(Vec::new()),
            1 => prop::collection::vec(arb::byte_edit(), 1..3),
        ],
    )
        .prop_map(
            |(client, claim_edits, signed, (grant_type, assertion_type, scope), extra_pairs, peer, edits)| {
                Request {
                    client,
                    claim_edits,
                    signed,
                    grant_type,
                    assertion_type,
                    scope,
                    extra_pairs,
                    peer,
                    edits,
                }
            },
        )
        .boxed()
}

impl Request {
    /// The claims: an honest client's, then edited.
    fn claims(&self, now: i64) -> Value {
        let mut claims = json!({
            "iss": self.client,
            "sub": self.client,
            "aud": TOKEN_URL,
            "exp": now + 240,
            "iat": now,
            "jti": uuid::Uuid::new_v4().to_string(),
        });
        let map = claims.as_object_mut().unwrap();
        for edit in &self.claim_edits {
            match edit {
                ClaimEdit::Remove(name) => {
                    map.shift_remove(*name);
                }
                ClaimEdit::Set(name, value) => {
                    let mut value = value.clone();
                    // Times are offsets from now when they are small numbers.
                    if matches!(*name, "exp" | "iat" | "nbf")
                        && let Some(offset) = value.as_i64()
                        && offset.abs() < 1000
                    {
                        value = json!(now + offset);
                    }
                    map.insert((*name).to_string(), value);
                }
                ClaimEdit::Extra(name, value) => {
                    map.insert(name.clone(), value.clone());
                }
            }
        }
        claims
    }

    fn assertion(&self, now: i64) -> String {
        let claims = self.claims(now);
        match &self.signed {
            Signed::Own => throughcare::client::sign_claims(&claims, &key_of(self.client)).unwrap(),
            Signed::By(client) => {
                throughcare::client::sign_claims(&claims, &key_of(client)).unwrap()
            }
            Signed::Garbage(s) => s.clone(),
            Signed::Tampered(client, at) => {
                let jwt = throughcare::client::sign_claims(&claims, &key_of(client)).unwrap();
                let mut bytes = jwt.into_bytes();
                let at = at % bytes.len();
                bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
                String::from_utf8(bytes).unwrap()
            }
        }
    }

    fn form(&self, assertion: &str) -> Vec<u8> {
        let mut pairs: Vec<(String, String)> = Vec::new();
        if let Some(g) = &self.grant_type {
            pairs.push(("grant_type".into(), g.clone()));
        }
        if let Some(t) = &self.assertion_type {
            pairs.push(("client_assertion_type".into(), t.clone()));
        }
        pairs.push(("client_assertion".into(), assertion.to_string()));
        if let Some(s) = &self.scope {
            pairs.push(("scope".into(), s.clone()));
        }
        pairs.extend(self.extra_pairs.iter().cloned());
        let mut body = serde_urlencoded::to_string(&pairs).unwrap().into_bytes();
        for e in &self.edits {
            arb::edit_bytes(&mut body, e);
        }
        body
    }
}

#[test]
fn fuzz_token_request() {
    let harness = &*HARNESS;
    fuzz("token-request", request(), |request| {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let assertion = request.assertion(now);
        let body = request.form(&assertion);
        let form = match throughcare::api::oauth::read_form(&body) {
            Ok(form) => {
                reached("token-request", "form");
                form
            }
            Err(e) => {
                prop_assert!(matches!(e, TokenError::InvalidRequest { .. }), "{:?}", e);
                return Ok(());
            }
        };
        let ods = |client: &str| match client {
            "prison" => "Y02307",
            "gp" => "A99001",
            _ => "Q99",
        };
        let peer = request
            .peer
            .clone()
            .map(|(organisation, thumbprint)| PeerIdentity {
                // "matching": the organisation of the client the claims name.
                organisation: organisation.map(|o| {
                    if o == "matching" {
                        ods(request.client).to_string()
                    } else {
                        o
                    }
                }),
                thumbprint,
            });
        let outcome = harness.runtime.block_on(harness.service.exchange(
            &harness.store,
            &form,
            peer.as_ref(),
            now,
        ));
        match outcome {
            Ok((response, claims)) => {
                reached("token-request", "issued");
                let verified = harness
                    .service
                    .verify_access_token(&response.access_token, now);
                prop_assert!(verified.is_ok(), "an issued token verifies: {:?}", verified);
                prop_assert_eq!(verified.unwrap().client_id, claims.client_id);
                // Changed anywhere, it does not.
                let mut changed = response.access_token.into_bytes();
                let at = (now as usize) % changed.len();
                changed[at] = if changed[at] == b'x' { b'y' } else { b'x' };
                let changed = String::from_utf8(changed).unwrap();
                let _ = harness.service.verify_access_token(&changed, now);
            }
            Err(TokenError::Store(e)) => {
                prop_assert!(false, "the store failed: {}", e);
            }
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
        // Whatever the assertion, reading it as an access token is a refusal, not a panic.
        let _ = harness.service.verify_access_token(&assertion, now);
        Ok(())
    });
}
