//! A gateway on a random port over a temporary data directory, and clients to talk to it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, LazyLock};

use actix_web::dev::ServerHandle;
use serde_json::Value;
use throughcare::client::{GatewayClient, http_client, sign_claims};
use throughcare::clock::{Clock, SharedClock};
use throughcare::config::Settings;
use throughcare::startup::{Application, BuildOptions};
use throughcare::store::{SqliteStore, Store};
use tokio::task::JoinHandle;

/// The token endpoint's assertion type.
pub const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// The FHIR JSON media type.
pub const FHIR_JSON: &str = "application/fhir+json";
/// The sample release document, as committed.
pub const SAMPLE_RELEASE: &str = include_str!("../../samples/release-bundle.json");
/// The NHS number of the patient in the sample document.
pub const SAMPLE_NHS_NUMBER: &str = "9990000018";
/// The identifier value of the sample document.
pub const SAMPLE_IDENTIFIER: &str = "Y02307-REL-2026-000123";

/// Every line the gateways of this test binary logged at info level or above (the access log
/// included), so that tests can look for what must never be logged.
static LOG: LazyLock<std::sync::Mutex<Vec<u8>>> = LazyLock::new(Default::default);

struct LogWriter;

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        LOG.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// What the gateways logged so far (see [`LOG`]).
pub fn captured_log() -> String {
    String::from_utf8_lossy(
        &LOG.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    )
    .into_owned()
}

static TRACING: LazyLock<()> = LazyLock::new(|| {
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let capture = tracing_subscriber::fmt::layer()
        .with_ansi(false)
        .with_writer(|| LogWriter)
        .with_filter(tracing_subscriber::filter::LevelFilter::INFO);
    let console = std::env::var("TEST_LOG").is_ok_and(|v| v == "1").then(|| {
        tracing_subscriber::fmt::layer()
            .with_test_writer()
            .with_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
            )
    });
    let _ = tracing_subscriber::registry()
        .with(capture)
        .with(console)
        .try_init();
});

/// `<CARGO_MANIFEST_DIR>/certs-example`.
pub fn certs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("certs-example")
}

pub fn ca_pem() -> Vec<u8> {
    std::fs::read(certs_dir().join("ca.crt")).unwrap()
}

/// The PEM private key of a sample client.
pub fn client_key(name: &str) -> Vec<u8> {
    std::fs::read(certs_dir().join("clients").join(format!("{name}.key"))).unwrap()
}

/// The certificate PEM of a sample client followed by its key PEM.
pub fn client_identity(name: &str) -> Vec<u8> {
    let mut pem = std::fs::read(certs_dir().join("clients").join(format!("{name}.crt"))).unwrap();
    if !pem.ends_with(b"\n") {
        pem.push(b'\n');
    }
    pem.extend_from_slice(&client_key(name));
    pem
}

/// Seconds since the epoch.
pub fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// Settings for a test gateway whose data lives in `data_dir`.
pub fn test_settings(data_dir: &Path) -> Settings {
    let certs = certs_dir();
    let mut settings = Settings::default();
    settings.server.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    settings.server.workers = 1;
    settings.server.data_dir = data_dir.to_path_buf();
    settings.tls.cert = certs.join("server.crt");
    settings.tls.key = certs.join("server.key");
    settings.tls.client_ca = certs.join("ca.crt");
    settings.clients = throughcare::demo::sample_registrations(&certs);
    // Mutual TLS as in production: every route but metadata, the well-known documents and
    // health needs a client certificate, and tokens are bound to it.
    settings.tls.require_client_cert_for_api = true;
    // Tests make many requests quickly from 127.0.0.1; the limits have tests of their own.
    settings.rate_limits.per_client_per_second = 100_000;
    settings.rate_limits.per_client_burst = 100_000;
    settings.rate_limits.per_ip_per_second = 100_000;
    settings.rate_limits.per_ip_burst = 100_000;
    // The sample ICB administers the sample GP practices and the drug service, as in
    // throughcare.toml. Loopback http endpoints stay refused unless a test sets
    // `delivery.allow_loopback_http` explicitly.
    settings.policy.icb_areas = throughcare::demo::sample_icb_areas();
    settings
}

/// The claims of a JWT, read without verifying it.
pub fn unverified_claims(jwt: &str) -> Value {
    use base64::Engine;
    jwt.split('.')
        .nth(1)
        .and_then(|p| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(p)
                .ok()
        })
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(Value::Null)
}

/// The sample client whose certificate a request carrying `jwt` (an assertion or an access
/// token) presents: the one the JWT names, or the prison when it names no sample client.
fn sample_client_of(jwt: &str) -> String {
    let claims = unverified_claims(jwt);
    claims["client_id"]
        .as_str()
        .or(claims["iss"].as_str())
        .filter(|name| {
            throughcare::certs::SAMPLE_CLIENTS
                .iter()
                .any(|c| c.id == *name)
        })
        .unwrap_or("prison")
        .to_string()
}

/// A client certificate for organisation `ods` (subject CN `cn`), issued by the development CA
/// for the key pair of the sample client `key_of`, followed by that key: an identity for
/// `http_client`. For a second prison, or a second certificate of the same organisation.
pub fn issued_identity(cn: &str, ods: &str, key_of: &str) -> Vec<u8> {
    use rcgen::{
        BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose,
        IsCa, Issuer, KeyPair, KeyUsagePurpose,
    };
    // The development CA, as `certs generate` made it (its subject must match byte for byte).
    let ca_key =
        KeyPair::from_pem(&std::fs::read_to_string(certs_dir().join("ca.key")).unwrap()).unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    let mut dn = DistinguishedName::new();
    dn.push(
        DnType::CommonName,
        "Throughcare Development CA (NOT FOR PRODUCTION)",
    );
    dn.push(DnType::OrganizationName, "Throughcare development");
    ca.distinguished_name = dn;
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let issuer = Issuer::new(ca, ca_key);

    let key_pem = String::from_utf8(client_key(key_of)).unwrap();
    let key = KeyPair::from_pem(&key_pem).unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn.push(DnType::OrganizationName, ods);
    params.distinguished_name = dn;
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.not_before = time::OffsetDateTime::now_utc() - time::Duration::days(1);
    params.not_after = time::OffsetDateTime::now_utc() + time::Duration::days(1);
    let cert = params.signed_by(&key, &issuer).unwrap();
    let mut pem = cert.pem().into_bytes();
    if !pem.ends_with(b"\n") {
        pem.push(b'\n');
    }
    pem.extend_from_slice(key_pem.as_bytes());
    pem
}

/// A running gateway.
pub struct TestApp {
    pub base_url: String,
    pub port: u16,
    pub handle: ServerHandle,
    pub server: Option<JoinHandle<anyhow::Result<()>>>,
    pub dir: tempfile::TempDir,
    pub settings: Settings,
}

/// Starts a gateway on the defaults used by the tests.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Starts a gateway after `adjust` has changed the test settings.
pub async fn spawn_app_with(adjust: impl FnOnce(&mut Settings)) -> TestApp {
    LazyLock::force(&TRACING);
    let dir = tempfile::tempdir().unwrap();
    let mut settings = test_settings(&dir.path().join("data"));
    adjust(&mut settings);
    start(settings, dir, None).await
}

/// Starts a gateway with adjusted settings that reads the time from `clock`.
pub async fn spawn_app_full(
    adjust: impl FnOnce(&mut Settings),
    clock: Option<SharedClock>,
) -> TestApp {
    LazyLock::force(&TRACING);
    let dir = tempfile::tempdir().unwrap();
    let mut settings = test_settings(&dir.path().join("data"));
    adjust(&mut settings);
    start(settings, dir, clock).await
}

/// Starts a gateway that reads the time from `clock`.
pub async fn spawn_app_with_clock(clock: SharedClock) -> TestApp {
    LazyLock::force(&TRACING);
    let dir = tempfile::tempdir().unwrap();
    let settings = test_settings(&dir.path().join("data"));
    start(settings, dir, Some(clock)).await
}

/// A clock running `offset` seconds ahead of the system clock; the offset can be changed.
#[derive(Debug, Default)]
pub struct ShiftedClock {
    offset: AtomicI64,
}

impl ShiftedClock {
    pub fn set_offset(&self, seconds: i64) {
        self.offset.store(seconds, Ordering::SeqCst);
    }

    pub fn unix_now(&self) -> i64 {
        self.now().unix_timestamp()
    }
}

impl Clock for ShiftedClock {
    fn now(&self) -> time::OffsetDateTime {
        time::OffsetDateTime::now_utc()
            + time::Duration::seconds(self.offset.load(Ordering::SeqCst))
    }
}

/// One validator for every gateway in the test binary: loading the packages takes a second or
/// two, and every test app uses the same profiles.
pub fn shared_validator(settings: &Settings) -> std::sync::Arc<throughcare::validate::Validator> {
    static VALIDATOR: std::sync::OnceLock<std::sync::Arc<throughcare::validate::Validator>> =
        std::sync::OnceLock::new();
    VALIDATOR
        .get_or_init(|| {
            let v = throughcare::validate::Validator::load(&settings.fhir).expect("profiles load");
            if !v.report().missing_packages.is_empty() {
                eprintln!(
                    "WARNING: FHIR packages missing ({:?}): profile validation in these tests covers only what is loaded",
                    v.report().missing_packages
                );
            }
            std::sync::Arc::new(v)
        })
        .clone()
}

async fn start(settings: Settings, dir: tempfile::TempDir, clock: Option<SharedClock>) -> TestApp {
    start_wrapped(settings, dir, clock, None).await
}

/// Starts a gateway with adjusted settings whose store is wrapped by `wrapper` (to inject
/// store failures).
#[allow(dead_code)]
pub async fn spawn_app_wrapping_store(
    adjust: impl FnOnce(&mut Settings),
    wrapper: throughcare::startup::StoreWrapper,
) -> TestApp {
    LazyLock::force(&TRACING);
    let dir = tempfile::tempdir().unwrap();
    let mut settings = test_settings(&dir.path().join("data"));
    adjust(&mut settings);
    start_wrapped(settings, dir, None, Some(wrapper)).await
}

async fn start_wrapped(
    settings: Settings,
    dir: tempfile::TempDir,
    clock: Option<SharedClock>,
    store_wrapper: Option<throughcare::startup::StoreWrapper>,
) -> TestApp {
    let app = Application::build_with(
        settings.clone(),
        BuildOptions {
            disable_signals: true,
            clock,
            validator: Some(shared_validator(&settings)),
            store_wrapper,
        },
    )
    .await
    .expect("the gateway should start");
    let base_url = app.public_url().to_string();
    let port = app.port();
    let handle = app.handle();
    let server = tokio::spawn(app.run_until_stopped());
    TestApp {
        base_url,
        port,
        handle,
        server: Some(server),
        dir,
        settings,
    }
}

impl TestApp {
    pub fn data_dir(&self) -> &Path {
        &self.settings.server.data_dir
    }

    pub fn token_url(&self) -> String {
        format!("{}/oauth2/token", self.base_url)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// The certificate and key PEM of `name`: a client registered for this gateway alone
    /// ([`register_client`]), else a sample client.
    fn identity_of(&self, name: &str) -> Vec<u8> {
        let extra = self.dir.path().join("clients");
        match std::fs::read(extra.join(format!("{name}.crt"))) {
            Ok(mut pem) => {
                pem.extend_from_slice(&std::fs::read(extra.join(format!("{name}.key"))).unwrap());
                pem
            }
            Err(_) => client_identity(name),
        }
    }

    fn key_of(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.dir.path().join("clients").join(format!("{name}.key")))
            .unwrap_or_else(|_| client_key(name))
    }

    /// An HTTP client presenting the certificate of the client `name` (a sample client, or one
    /// registered with [`register_client`]).
    pub fn client_for(&self, name: &str) -> reqwest::Client {
        http_client(&ca_pem(), Some(&self.identity_of(name))).unwrap()
    }

    /// An HTTP client presenting no client certificate.
    pub fn anonymous_client(&self) -> reqwest::Client {
        http_client(&ca_pem(), None).unwrap()
    }

    /// A token for `name` through the real token endpoint, over a connection presenting `name`'s
    /// certificate.
    pub async fn token_for(&self, name: &str) -> String {
        self.token_over(name, self.client_for(name)).await
    }

    /// A token for `name` through the real token endpoint, over the given client.
    pub async fn token_over(&self, name: &str, http: reqwest::Client) -> String {
        GatewayClient::new(&self.base_url, name, self.key_of(name), http)
            .token()
            .await
            .unwrap_or_else(|e| panic!("a token for {name} should be issued: {e:#}"))
    }

    /// Claims for an assertion by `client_id` that the gateway should accept.
    pub fn assertion_claims(&self, client_id: &str) -> Value {
        let now = now();
        serde_json::json!({
            "iss": client_id,
            "sub": client_id,
            "aud": self.token_url(),
            "exp": now + 240,
            "iat": now,
            "jti": uuid::Uuid::new_v4().to_string(),
        })
    }

    /// Signs `claims` (ES384) with the key of the sample client `key_of`.
    pub fn sign(&self, claims: &Value, key_of: &str) -> String {
        sign_claims(claims, &client_key(key_of)).unwrap()
    }

    /// POSTs a token request form over `http`; returns the status and the JSON body.
    pub async fn token_request(
        &self,
        http: &reqwest::Client,
        form: &[(&str, &str)],
    ) -> (u16, Value) {
        let response = http.post(self.token_url()).form(form).send().await.unwrap();
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap();
        (status, body)
    }

    /// A client-credentials request carrying `assertion`, over a connection presenting the
    /// certificate of the sample client the assertion names (the prison's when it names none).
    pub async fn exchange(&self, assertion: &str) -> (u16, Value) {
        self.token_request(
            &self.client_for(&sample_client_of(assertion)),
            &[
                ("grant_type", "client_credentials"),
                ("client_assertion_type", ASSERTION_TYPE),
                ("client_assertion", assertion),
            ],
        )
        .await
    }

    /// POSTs a document as the prison (over a connection presenting the prison's certificate).
    pub async fn post_bundle(
        &self,
        token: &str,
        content_type: &str,
        body: impl Into<reqwest::Body>,
    ) -> reqwest::Response {
        self.post_bundle_over(&self.client_for("prison"), token, content_type, body)
            .await
    }

    pub async fn post_bundle_over(
        &self,
        http: &reqwest::Client,
        token: &str,
        content_type: &str,
        body: impl Into<reqwest::Body>,
    ) -> reqwest::Response {
        http.post(self.url("/fhir/Bundle"))
            .bearer_auth(token)
            .header("Content-Type", content_type)
            .body(body)
            .send()
            .await
            .unwrap()
    }

    /// GETs `/fhir/Bundle/{id}` over a connection presenting the certificate of the sample
    /// client the token names (the token is bound to it).
    pub async fn get_bundle(&self, token: &str, id: &str) -> reqwest::Response {
        self.client_for(&sample_client_of(token))
            .get(self.url(&format!("/fhir/Bundle/{id}")))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    /// Stops the gateway gracefully and waits for it to finish (including its audit entry).
    pub async fn stop(&mut self) {
        self.handle.stop(true).await;
        if let Some(server) = self.server.take() {
            server
                .await
                .expect("the server task should not panic")
                .expect("the gateway should stop cleanly");
        }
    }

    /// Stops this gateway and starts a new one over the same data directory (new port).
    pub async fn restart(mut self) -> TestApp {
        self.stop().await;
        let TestApp { dir, settings, .. } = self;
        start(settings, dir, None).await
    }

    /// Opens the store of a stopped gateway.
    pub async fn open_store(&self) -> SqliteStore {
        SqliteStore::open(self.data_dir(), Arc::new(throughcare::clock::SystemClock))
            .await
            .unwrap()
    }

    /// Every audit entry, read from the store of a stopped gateway.
    pub async fn audit_entries(&self) -> Vec<throughcare::audit::AuditEntry> {
        let store = self.open_store().await;
        let entries = store.audit_page(0, 1000).await.unwrap();
        store.close().await;
        entries
    }

    /// The SQLite database file.
    pub fn database_file(&self) -> PathBuf {
        self.data_dir().join(throughcare::store::sqlite_file_name())
    }
}

/// Registers one more client, `id` for organisation `ods` in `role` with `scopes`, with a
/// certificate issued now by the development CA into the test's own folder (beside
/// `settings.server.data_dir`), for a gateway started with these settings.
pub fn register_client(
    settings: &mut Settings,
    id: &str,
    ods: &str,
    role: throughcare::domain::Role,
    scopes: &[&str],
) {
    let dir = settings
        .server
        .data_dir
        .parent()
        .expect("the data directory is inside the test folder")
        .join("clients");
    std::fs::create_dir_all(&dir).unwrap();
    let ca_key = std::fs::read_to_string(certs_dir().join("ca.key")).unwrap();
    let (cert, key) =
        throughcare::certs::issue_client(&ca_key, id, ods, &format!("Test organisation {ods}"))
            .unwrap();
    let certificate = dir.join(format!("{id}.crt"));
    std::fs::write(&certificate, cert).unwrap();
    std::fs::write(dir.join(format!("{id}.key")), key).unwrap();
    // Start from a sample registration, so that settings added to registrations keep their
    // defaults here.
    let mut registration = settings
        .clients
        .first()
        .cloned()
        .expect("the sample clients are registered");
    registration.id = id.to_string();
    registration.ods = throughcare::domain::OdsCode::parse(ods).unwrap();
    registration.role = role;
    registration.scopes = scopes.iter().map(|s| s.to_string()).collect();
    registration.certificate = certificate;
    registration.name = Some(format!("Test organisation {ods}"));
    registration.break_glass = false;
    registration.profile = None;
    settings.clients.push(registration);
}

/// Registers a prison healthcare unit's client with the sample prison's scopes.
pub fn register_prison(settings: &mut Settings, id: &str, ods: &str) {
    register_client(
        settings,
        id,
        ods,
        throughcare::domain::Role::Prison,
        &[
            "system/Bundle.crs",
            "system/Consent.crus",
            "system/Task.rs",
            "system/Communication.rs",
            "system/Patient.rs",
        ],
    );
}

/// The sample document with its `Bundle.identifier.value` made unique.
pub fn unique_release() -> (String, String) {
    let value = format!("Y02307-REL-{}", uuid::Uuid::new_v4());
    (with_identifier(SAMPLE_RELEASE, &value), value)
}

/// `document` (the sample text) with another `Bundle.identifier.value`, keeping every other byte.
pub fn with_identifier(document: &str, value: &str) -> String {
    let old = format!("\"value\": \"{SAMPLE_IDENTIFIER}\"");
    assert!(document.contains(&old), "the sample identifier is present");
    document.replacen(&old, &format!("\"value\": \"{value}\""), 1)
}

/// A uniquely identified sample document as a JSON tree, changed by `edit`.
pub fn release_tree(edit: impl FnOnce(&mut Value)) -> String {
    let (text, _) = unique_release();
    let mut tree: Value = serde_json::from_str(&text).unwrap();
    edit(&mut tree);
    serde_json::to_string_pretty(&tree).unwrap()
}

/// Status, headers and JSON body of a response.
pub async fn status_and_json(
    response: reqwest::Response,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap();
    let body: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("the body should be JSON ({e}): {text}"));
    (status, headers, body)
}

/// The issues of an OperationOutcome (asserting that it is one).
pub fn issues(outcome: &Value) -> &Vec<Value> {
    assert_eq!(
        outcome["resourceType"], "OperationOutcome",
        "expected an OperationOutcome, got {outcome}"
    );
    let issues = outcome["issue"]
        .as_array()
        .unwrap_or_else(|| panic!("OperationOutcome without issues: {outcome}"));
    assert!(!issues.is_empty(), "OperationOutcome without issues");
    issues
}

/// Every `expression` of every issue.
pub fn expressions(outcome: &Value) -> Vec<String> {
    issues(outcome)
        .iter()
        .flat_map(|i| {
            i["expression"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter_map(|e| e.as_str().map(str::to_string))
        })
        .collect()
}

/// Every gateway issue code (`issue.details.coding.code`).
pub fn gateway_codes(outcome: &Value) -> Vec<String> {
    issues(outcome)
        .iter()
        .filter_map(|i| {
            i["details"]["coding"][0]["code"]
                .as_str()
                .map(str::to_string)
        })
        .collect()
}

/// Every `diagnostics` text, joined.
pub fn diagnostics(outcome: &Value) -> String {
    issues(outcome)
        .iter()
        .filter_map(|i| i["diagnostics"].as_str())
        .collect::<Vec<_>>()
        .join(" | ")
}

/// Asserts an OperationOutcome carrying an error issue with gateway code `code`.
pub fn assert_outcome_code(outcome: &Value, code: &str) {
    assert!(
        gateway_codes(outcome).iter().any(|c| c == code),
        "expected gateway code {code} in {outcome}"
    );
    assert!(
        issues(outcome)
            .iter()
            .any(|i| i["severity"] == "error" || i["severity"] == "fatal"),
        "expected an error issue in {outcome}"
    );
}

/// Asserts an OperationOutcome with an issue at `expression`.
pub fn assert_expression(outcome: &Value, expression: &str) {
    assert!(
        expressions(outcome).iter().any(|e| e == expression),
        "expected an issue at {expression} in {outcome}"
    );
}

/// Asserts an OAuth error body: `error` equals `code` and `error_description` mentions `hint`.
pub fn assert_oauth_error(body: &Value, code: &str, hint: &str) {
    assert_eq!(body["error"], code, "unexpected OAuth error in {body}");
    let description = body["error_description"].as_str().unwrap_or_default();
    assert!(
        description.to_lowercase().contains(&hint.to_lowercase()),
        "error_description {description:?} should mention {hint:?}"
    );
}

/// The id at the end of a `Location` of `/fhir/Bundle/{id}`.
pub fn location_of(headers: &reqwest::header::HeaderMap) -> String {
    headers
        .get("Location")
        .expect("a Location header")
        .to_str()
        .unwrap()
        .to_string()
}

impl TestApp {
    /// Sends `body` (JSON) with `method` to `path` as the sample client `who`, with the given
    /// Content-Type, over a connection presenting `who`'s certificate.
    pub async fn send_as(
        &self,
        method: reqwest::Method,
        who: &str,
        token: Option<&str>,
        path: &str,
        content_type: &str,
        body: impl Into<reqwest::Body>,
    ) -> reqwest::Response {
        let mut request = self
            .client_for(who)
            .request(method, self.url(path))
            .header("Content-Type", content_type)
            .body(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().await.unwrap()
    }

    /// POSTs `body` as FHIR JSON to `path` as `who`.
    pub async fn post_json(
        &self,
        who: &str,
        token: &str,
        path: &str,
        body: &Value,
    ) -> reqwest::Response {
        self.send_as(
            reqwest::Method::POST,
            who,
            Some(token),
            path,
            FHIR_JSON,
            body.to_string(),
        )
        .await
    }

    /// PUTs `body` as FHIR JSON to `path` as `who`.
    pub async fn put_json(
        &self,
        who: &str,
        token: &str,
        path: &str,
        body: &Value,
    ) -> reqwest::Response {
        self.send_as(
            reqwest::Method::PUT,
            who,
            Some(token),
            path,
            FHIR_JSON,
            body.to_string(),
        )
        .await
    }

    /// GETs `path` (with `query`) as `who`.
    pub async fn get_as(
        &self,
        who: &str,
        token: &str,
        path: &str,
        query: &[(&str, &str)],
    ) -> reqwest::Response {
        self.client_for(who)
            .get(self.url(path))
            .query(query)
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    /// DELETEs `path` as `who`.
    pub async fn delete_as(&self, who: &str, token: &str, path: &str) -> reqwest::Response {
        self.client_for(who)
            .delete(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }
}
