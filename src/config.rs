//! Settings: built-in defaults, then `throughcare.toml` (or `--config FILE`), then
//! `THROUGHCARE__SECTION__KEY` environment variables, then command-line flags.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

use crate::domain::{OdsCode, Role};

/// Everything the gateway needs to start.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub server: ServerSettings,
    pub tls: TlsSettings,
    pub auth: AuthSettings,
    pub limits: Limits,
    #[serde(default)]
    pub rate_limits: RateLimitSettings,
    pub fhir: FhirSettings,
    pub policy: PolicySettings,
    #[serde(default)]
    pub audit: AuditSettings,
    #[serde(default)]
    pub delivery: DeliverySettings,
    #[serde(default)]
    pub alerts: AlertSettings,
    /// MESH (NHS England's message exchange), for GP practices: off unless configured.
    #[serde(default)]
    pub mesh: Option<MeshSettings>,
    #[serde(default)]
    pub clients: Vec<ClientRegistration>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    /// Address to listen on; port 0 picks a free port.
    pub listen: SocketAddr,
    /// Base URL clients use to reach the gateway, such as `https://gateway.example.nhs.uk`.
    /// Defaults to `https://localhost:<port>`. The token endpoint's `aud` is derived from it.
    #[serde(default)]
    pub public_url: Option<String>,
    /// Directory holding the SQLite store and the gateway's signing key.
    pub data_dir: PathBuf,
    /// Worker threads for HTTP; 0 means one per core.
    #[serde(default)]
    pub workers: usize,
    /// A client that has not sent a whole request head within this time gets 408 and the
    /// connection is closed (slow-loris).
    #[serde(default = "default_head_timeout_ms")]
    pub request_head_timeout_ms: u64,
    /// A request body that has not arrived whole within this time gets 408.
    #[serde(default = "default_body_timeout_secs")]
    pub body_timeout_secs: u64,
    /// Requests from one address in progress at once; more get 429 (`GW-RATE-02`). Together
    /// with the head and body timeouts this bounds what one address can hold open.
    #[serde(default = "default_max_in_flight_per_ip")]
    pub max_in_flight_per_ip: usize,
}

fn default_head_timeout_ms() -> u64 {
    5_000
}

fn default_body_timeout_secs() -> u64 {
    30
}

fn default_max_in_flight_per_ip() -> usize {
    64
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSettings {
    /// Server certificate chain (PEM).
    pub cert: PathBuf,
    /// Server private key (PKCS#8 PEM).
    pub key: PathBuf,
    /// CA that client certificates must chain to (PEM).
    pub client_ca: PathBuf,
    /// Whether every route but `/fhir/metadata`, the well-known documents, `/healthz` and
    /// `/readyz` needs a client certificate (the token endpoint too). Only development set-ups
    /// turn this off; access tokens issued over a certificate stay bound to it either way.
    #[serde(default = "yes")]
    pub require_client_cert_for_api: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSettings {
    /// Lifetime of access tokens issued by `/oauth2/token`, in seconds.
    pub access_token_ttl_secs: u64,
    /// Longest lifetime a client assertion may claim (`exp` minus now), in seconds.
    pub max_assertion_lifetime_secs: u64,
    /// Allowed clock skew between the gateway and its clients, in seconds.
    pub clock_skew_secs: u64,
    /// The gateway's ES384 signing key (PKCS#8 PEM). When absent, a key is generated on first
    /// start and kept in the data directory.
    #[serde(default)]
    pub signing_key: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Deepest JSON nesting accepted.
    pub max_json_depth: usize,
    /// Most entries accepted in one Bundle.
    pub max_bundle_entries: usize,
}

/// Token-bucket rate limits (DESIGN §11). Before authentication requests are counted by source
/// IP address (the token endpoint, and every failed authentication); after it by client, since
/// many NHS organisations share egress addresses. A refusal is a 429 with `Retry-After`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitSettings {
    /// Sustained requests per second each authenticated client may make to `/fhir` and `/admin`.
    pub per_client_per_second: u32,
    /// Requests a client may make at once before the sustained rate applies.
    pub per_client_burst: u32,
    /// Sustained token requests and failed authentications per second from one IP address.
    pub per_ip_per_second: u32,
    /// Token requests and failed authentications one IP address may make at once.
    pub per_ip_burst: u32,
    /// Failed authentications are audited once per client (or IP address) per interval, the
    /// first at once; the entry written next carries the count of those folded into it.
    pub failure_audit_interval_secs: u64,
}

impl Default for RateLimitSettings {
    fn default() -> Self {
        RateLimitSettings {
            per_client_per_second: 50,
            per_client_burst: 100,
            per_ip_per_second: 10,
            per_ip_burst: 20,
            failure_audit_interval_secs: 60,
        }
    }
}

/// Where profiles, packages and mappings come from.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FhirSettings {
    /// Our own StructureDefinitions (the prison profiles), one JSON file per profile.
    pub profiles_dir: PathBuf,
    /// External packages (FHIR R4 core, UK Core R4, GP Connect STU3, ITK3 STU3): folders of conformance
    /// resources (`.json`, or gzip-compressed `.json.gz`), loaded like implementation-guide
    /// packages. The repository ships them in `packages/` (`packages/README.md`).
    #[serde(default)]
    pub packages: Vec<PathBuf>,
    /// Start even when a package folder is missing or a package file cannot be read
    /// (development only: the gateway then validates against less than its profiles need, and
    /// says so at start-up and in `/readyz`). Without it, `serve` refuses to start.
    #[serde(default)]
    pub allow_missing_packages: bool,
    /// Declarative translation rules and ConceptMaps.
    pub mappings_dir: PathBuf,
}

/// Where agreements and sensitivity classifications come from, and how routing finds an ICB.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySettings {
    /// Data-sharing agreement files (`*.toml`, one per agreement), seeded into the store.
    pub agreements_dir: PathBuf,
    /// Code classification files (`*.yaml`) that label sensitive content.
    pub labels_dir: PathBuf,
    /// The ICB for a release address with no more specific match.
    #[serde(default)]
    pub default_icb: Option<OdsCode>,
    /// ICBs by postcode area prefix (e.g. `BS` to the Bristol ICB), longest prefix wins.
    #[serde(default)]
    pub icb_by_postcode: std::collections::BTreeMap<String, OdsCode>,
    /// The organisations each ICB administers (registers and changes push endpoints for), by
    /// the ICB's ODS code: ODS codes (`X99001`) or prefixes ending in `*` (`A99*`). An ICB also
    /// administers its own endpoint; the `admin` role administers every organisation.
    #[serde(default)]
    pub icb_areas: std::collections::BTreeMap<OdsCode, Vec<String>>,
    /// The prison slice of the organisation directory: the MoJ prison register's healthcare ODS
    /// codes (CSV `nomis_prison_id,name,active,gp_practice_ods_codes`; `directory/README.md`).
    /// Only an active row is a prison healthcare unit; a transfer is routed only to one.
    #[serde(default = "default_prison_register")]
    pub prison_register: PathBuf,
}

impl PolicySettings {
    /// Whether the ICB `icb` administers the organisation `ods`: its own code, or a code or
    /// prefix its area lists. Codes are compared exactly (ODS codes are upper-case ASCII).
    pub fn icb_administers(&self, icb: &OdsCode, ods: &OdsCode) -> bool {
        icb == ods
            || self.icb_areas.get(icb).is_some_and(|area| {
                area.iter().any(|entry| match entry.strip_suffix('*') {
                    Some(prefix) => ods.as_str().starts_with(prefix),
                    None => entry == ods.as_str(),
                })
            })
    }

    /// Checks the area entries: an ODS code, or a non-empty prefix of one followed by `*`.
    fn check_areas(&self) -> anyhow::Result<()> {
        for (icb, area) in &self.icb_areas {
            for entry in area {
                let code = entry.strip_suffix('*').unwrap_or(entry);
                let ok = !code.is_empty()
                    && code.len() <= 10
                    && code
                        .bytes()
                        .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
                    && (entry.ends_with('*') || OdsCode::parse(entry).is_ok());
                if !ok {
                    anyhow::bail!(
                        "policy.icb_areas.{icb}: {entry:?} is neither an ODS code nor a prefix ending in '*'"
                    );
                }
            }
        }
        Ok(())
    }
}

fn default_prison_register() -> PathBuf {
    PathBuf::from("directory/prison-register.csv")
}

/// Audit log settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditSettings {
    /// How often the gateway signs the chain head (it also signs at start and on shutdown).
    /// `audit verify` fails when the entries after the newest checkpoint span more than this
    /// (plus a minute), so set it for `audit verify` as for `serve`.
    pub checkpoint_interval_secs: u64,
    /// The ES384 key (PKCS#8 PEM) that signs audit checkpoints, and nothing else: it is not the
    /// token signing key (`auth.signing_key`), so a leaked token key cannot forge checkpoints.
    /// When absent, a key is generated on first start and kept in the data directory
    /// (`audit-signing-key.pem`).
    #[serde(default)]
    pub signing_key: Option<PathBuf>,
}

impl Default for AuditSettings {
    fn default() -> Self {
        AuditSettings {
            checkpoint_interval_secs: 300,
            signing_key: None,
        }
    }
}

/// Push delivery: workers, retries, deadlines, and the gateway's own TLS identity.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeliverySettings {
    /// Whether this instance runs delivery workers.
    pub enabled: bool,
    /// Deliveries pushed at once.
    pub concurrency: usize,
    /// How often workers look for due deliveries when not woken by an intake.
    pub poll_interval_ms: u64,
    /// How long a claimed delivery is leased before another worker may take it over. The
    /// lease is renewed every third of this while the attempt is in flight, so it bounds how
    /// long a delivery whose worker died waits before it is retried, not how long a push may
    /// take (that is `timeout_secs`, twice with a token fetch).
    pub lease_secs: u64,
    /// Attempts before a delivery goes to the dead letter.
    pub max_attempts: i64,
    /// Age after which a delivery still failing goes to the dead letter.
    pub max_age_hours: i64,
    /// Backoff: the first retry waits up to this long; each retry doubles it (full jitter).
    pub backoff_base_ms: u64,
    /// The longest wait between attempts.
    pub backoff_cap_secs: u64,
    /// Timeout of one push.
    pub timeout_secs: u64,
    /// A delivery not completed by the release date minus this margin is at risk.
    pub at_risk_margin_hours: i64,
    /// The gateway's client certificate and key (PEM) for mutual TLS to recipients.
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    /// Extra CA certificates (PEM) that recipients' servers chain to.
    pub ca: Option<PathBuf>,
    /// Whether plain `http://` endpoints on loopback addresses are allowed (development and
    /// tests only; every other endpoint must be `https://`).
    pub allow_loopback_http: bool,
}

impl Default for DeliverySettings {
    fn default() -> Self {
        DeliverySettings {
            enabled: true,
            concurrency: 4,
            poll_interval_ms: 1000,
            lease_secs: 15,
            max_attempts: 8,
            max_age_hours: 72,
            backoff_base_ms: 1000,
            backoff_cap_secs: 300,
            timeout_secs: 30,
            at_risk_margin_hours: 48,
            client_cert: None,
            client_key: None,
            ca: None,
            allow_loopback_http: false,
        }
    }
}

/// Escalation before release (DESIGN §9): a delivery held, failed, dead-lettered, or still
/// undelivered when the release date is within the lead time raises an alert (a Communication
/// to the sending prison, metrics, and the webhook when one is configured).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertSettings {
    /// Days before the release date at which a copy still undelivered raises an alert. A copy
    /// carrying a continuity-critical medicine uses the earlier lead time of
    /// `mappings/medicines/continuity-critical.v1.yaml` (7 days) when that is longer.
    pub lead_time_days: u32,
    /// Where each alert is POSTed as a small JSON event (no NHS number, name or medicine):
    /// `https://` only. Sent through the delivery client (its CA and client certificate), and
    /// retried with the delivery backoff until `delivery.max_attempts`.
    pub webhook_url: Option<String>,
}

impl Default for AlertSettings {
    fn default() -> Self {
        AlertSettings {
            lead_time_days: 3,
            webhook_url: None,
        }
    }
}

impl AlertSettings {
    /// The webhook URL must be `https://` with a host: alerts never travel in clear text.
    fn check(&self) -> anyhow::Result<()> {
        if let Some(url) = &self.webhook_url {
            let ok = url.strip_prefix("https://").is_some_and(|rest| {
                let host = rest.split(['/', '?', '#']).next().unwrap_or("");
                !host.is_empty() && !host.starts_with(':')
            });
            if !ok {
                anyhow::bail!(
                    "alerts.webhook_url must be an https:// URL with a host (got {url:?}): alerts are never sent in clear text"
                );
            }
        }
        Ok(())
    }
}

/// A secret read from the environment or a file: never printed (`Debug` and serialisation show
/// `<redacted>`).
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str("<redacted>")
    }
}

/// The gateway's MESH mailbox (`src/transport/mesh/`). The password and the shared key are
/// secrets: give each either as a file (`password_file`, `shared_key_file`, read at start, a
/// trailing newline dropped) or through the environment (`THROUGHCARE__MESH__PASSWORD`,
/// `THROUGHCARE__MESH__SHARED_KEY`). Written inline in the configuration file they are refused
/// unless `url` is a loopback address (a local sandbox).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MeshSettings {
    /// The MESH API's base URL, such as `https://msg.intspineservices.nhs.uk` (the paths
    /// `/messageexchange/...` are added). `https://` only, but for a loopback sandbox.
    pub url: String,
    /// The gateway's mailbox ID.
    pub mailbox: String,
    #[serde(default)]
    pub password: Option<Secret>,
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// The environment's shared secret that keys the `NHSMESH` HMAC.
    #[serde(default)]
    pub shared_key: Option<Secret>,
    #[serde(default)]
    pub shared_key_file: Option<PathBuf>,
    /// CA certificates (PEM) the MESH server chains to.
    #[serde(default)]
    pub ca: Option<PathBuf>,
    /// The mailbox's client certificate and key (PEM) for mutual TLS.
    #[serde(default)]
    pub client_cert: Option<PathBuf>,
    #[serde(default)]
    pub client_key: Option<PathBuf>,
    /// A message (after compression) larger than this is sent in chunks of this size.
    #[serde(default = "default_mesh_chunk_size")]
    pub chunk_size_bytes: usize,
    /// A message larger than this is gzip-compressed before it is chunked
    /// (`Content-Encoding: gzip`, `Mex-Content-Compressed: Y`).
    #[serde(default = "default_mesh_compress_above")]
    pub compress_above_bytes: usize,
    /// The largest message downloaded (after decompression); larger ones are refused.
    #[serde(default = "default_mesh_max_download")]
    pub max_download_bytes: usize,
    /// How often the inbox is polled.
    #[serde(default = "default_mesh_poll_interval")]
    pub poll_interval_secs: u64,
    /// How long an endpoint lookup answer is kept.
    #[serde(default = "default_mesh_lookup_cache")]
    pub lookup_cache_secs: u64,
    /// Timeout of one MESH request (one chunk).
    #[serde(default = "default_mesh_timeout")]
    pub timeout_secs: u64,
    /// An ITK3 infrastructure acknowledgement later than this after the send escalates.
    #[serde(default = "default_mesh_infrastructure_ack_minutes")]
    pub infrastructure_ack_minutes: u64,
    /// An ITK3 business acknowledgement later than this many working days after the send
    /// escalates (weekends and `holidays` are not working days).
    #[serde(default = "default_mesh_business_ack_working_days")]
    pub business_ack_working_days: u32,
    /// Bank holidays (`YYYY-MM-DD`), not working days.
    #[serde(default)]
    pub holidays: Vec<String>,
}

fn default_mesh_infrastructure_ack_minutes() -> u64 {
    60
}

fn default_mesh_business_ack_working_days() -> u32 {
    2
}

fn default_mesh_chunk_size() -> usize {
    20 * 1024 * 1024
}

fn default_mesh_compress_above() -> usize {
    1024 * 1024
}

fn default_mesh_max_download() -> usize {
    100 * 1024 * 1024
}

fn default_mesh_poll_interval() -> u64 {
    300
}

fn default_mesh_lookup_cache() -> u64 {
    3600
}

fn default_mesh_timeout() -> u64 {
    60
}

impl MeshSettings {
    /// Settings for `mailbox` at `url` with every default and no secrets yet.
    pub fn new(url: &str, mailbox: &str) -> MeshSettings {
        MeshSettings {
            url: url.to_string(),
            mailbox: mailbox.to_string(),
            password: None,
            password_file: None,
            shared_key: None,
            shared_key_file: None,
            ca: None,
            client_cert: None,
            client_key: None,
            chunk_size_bytes: default_mesh_chunk_size(),
            compress_above_bytes: default_mesh_compress_above(),
            max_download_bytes: default_mesh_max_download(),
            poll_interval_secs: default_mesh_poll_interval(),
            lookup_cache_secs: default_mesh_lookup_cache(),
            timeout_secs: default_mesh_timeout(),
            infrastructure_ack_minutes: default_mesh_infrastructure_ack_minutes(),
            business_ack_working_days: default_mesh_business_ack_working_days(),
            holidays: Vec::new(),
        }
    }

    /// Whether `url` is plain `http://` or `https://` to a loopback host (a local sandbox).
    pub fn is_loopback(&self) -> bool {
        let rest = self
            .url
            .strip_prefix("http://")
            .or_else(|| self.url.strip_prefix("https://"))
            .unwrap_or("");
        let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
        let host = match authority.strip_prefix('[') {
            Some(v6) => v6.split(']').next().unwrap_or(""),
            None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
        };
        host == "localhost"
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    }

    /// The password: inline (from the environment) or read from `password_file`.
    pub fn password(&self) -> anyhow::Result<Secret> {
        read_secret("mesh.password", &self.password, &self.password_file)
    }

    /// The shared key: inline (from the environment) or read from `shared_key_file`.
    pub fn shared_key(&self) -> anyhow::Result<Secret> {
        read_secret("mesh.shared_key", &self.shared_key, &self.shared_key_file)
    }

    fn check(&self) -> anyhow::Result<()> {
        let https = self.url.starts_with("https://");
        if !(https || self.url.starts_with("http://") && self.is_loopback()) {
            anyhow::bail!(
                "mesh.url must be an https:// URL (plain http only to a loopback sandbox), got {:?}",
                self.url
            );
        }
        if self.mailbox.is_empty()
            || !self
                .mailbox
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            anyhow::bail!(
                "mesh.mailbox must be a MESH mailbox ID, got {:?}",
                self.mailbox
            );
        }
        for (name, inline, file) in [
            ("password", &self.password, &self.password_file),
            ("shared_key", &self.shared_key, &self.shared_key_file),
        ] {
            match (inline, file) {
                (Some(_), Some(_)) => {
                    anyhow::bail!("mesh.{name} and mesh.{name}_file are both set")
                }
                (None, None) => anyhow::bail!(
                    "mesh.{name} is missing: set mesh.{name}_file or THROUGHCARE__MESH__{}",
                    name.to_ascii_uppercase()
                ),
                _ => {}
            }
        }
        if self.client_cert.is_some() != self.client_key.is_some() {
            anyhow::bail!("mesh.client_cert and mesh.client_key go together");
        }
        if self.chunk_size_bytes == 0 || self.timeout_secs == 0 || self.poll_interval_secs == 0 {
            anyhow::bail!(
                "mesh.chunk_size_bytes, timeout_secs and poll_interval_secs must be at least 1"
            );
        }
        Ok(())
    }
}

fn read_secret(
    name: &str,
    inline: &Option<Secret>,
    file: &Option<PathBuf>,
) -> anyhow::Result<Secret> {
    match (inline, file) {
        (Some(secret), None) => Ok(secret.clone()),
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("reading {name}_file {}: {e}", path.display()))?;
            let value = text.trim_end_matches(['\r', '\n']);
            if value.is_empty() {
                anyhow::bail!("{name}_file {} is empty", path.display());
            }
            Ok(Secret::new(value))
        }
        (Some(_), Some(_)) => anyhow::bail!("{name} and {name}_file are both set"),
        (None, None) => anyhow::bail!("{name} is not configured"),
    }
}

/// A registered client (SMART Backend Services).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientRegistration {
    /// The client id, used as `iss` and `sub` of its assertions.
    pub id: String,
    /// The organisation the client acts for.
    pub ods: OdsCode,
    pub role: Role,
    /// Scopes the client may be granted, such as `system/Bundle.c`.
    pub scopes: Vec<String>,
    /// Certificate (PEM) whose public key verifies the client's assertions.
    pub certificate: PathBuf,
    /// Human-readable name of the organisation.
    #[serde(default)]
    pub name: Option<String>,
    /// Whether the client may use emergency (`ETREAT`) access.
    #[serde(default)]
    pub break_glass: bool,
    /// The profile the client reads: `uk-core-r4` (default), `gp-connect-stu3` or `prison`.
    #[serde(default)]
    pub profile: Option<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            server: ServerSettings {
                listen: SocketAddr::from(([127, 0, 0, 1], 8443)),
                public_url: None,
                data_dir: PathBuf::from("data"),
                workers: 0,
                request_head_timeout_ms: default_head_timeout_ms(),
                body_timeout_secs: default_body_timeout_secs(),
                max_in_flight_per_ip: default_max_in_flight_per_ip(),
            },
            tls: TlsSettings {
                cert: PathBuf::from("certs-example/server.crt"),
                key: PathBuf::from("certs-example/server.key"),
                client_ca: PathBuf::from("certs-example/ca.crt"),
                require_client_cert_for_api: true,
            },
            auth: AuthSettings {
                access_token_ttl_secs: 300,
                max_assertion_lifetime_secs: 300,
                clock_skew_secs: 60,
                signing_key: None,
            },
            limits: Limits {
                max_body_bytes: 10 * 1024 * 1024,
                max_json_depth: 64,
                max_bundle_entries: 10_000,
            },
            rate_limits: RateLimitSettings::default(),
            fhir: FhirSettings {
                profiles_dir: PathBuf::from("profiles"),
                // The packages the repository ships (packages/README.md: sources, licences).
                packages: [
                    "hl7.fhir.r4.core",
                    "uk.core.r4",
                    "gpconnect.stu3",
                    "itk3.stu3",
                ]
                .iter()
                .map(|p| PathBuf::from("packages").join(p))
                .collect(),
                allow_missing_packages: false,
                mappings_dir: PathBuf::from("mappings"),
            },
            policy: PolicySettings {
                agreements_dir: PathBuf::from("agreements"),
                labels_dir: PathBuf::from("mappings/labels"),
                default_icb: None,
                icb_by_postcode: Default::default(),
                icb_areas: Default::default(),
                prison_register: default_prison_register(),
            },
            audit: AuditSettings::default(),
            delivery: DeliverySettings::default(),
            alerts: AlertSettings::default(),
            mesh: None,
            clients: Vec::new(),
        }
    }
}

/// Overrides given on the command line; they win over everything else.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub listen: Option<SocketAddr>,
    pub data_dir: Option<PathBuf>,
}

/// Where to look for the configuration file when `--config` is not given.
pub const DEFAULT_CONFIG_FILE: &str = "throughcare.toml";

/// MESH secrets come from the environment or from files, never from the configuration file,
/// but for a loopback sandbox.
fn check_no_secret_in_file(figment: &Figment, settings: &Settings) -> anyhow::Result<()> {
    let Some(mesh) = &settings.mesh else {
        return Ok(());
    };
    if mesh.is_loopback() {
        return Ok(());
    }
    for key in ["mesh.password", "mesh.shared_key"] {
        let from_file = figment
            .find_metadata(key)
            .is_some_and(|m| matches!(m.source, Some(figment::Source::File(_))));
        if from_file {
            anyhow::bail!(
                "{key} is written in the configuration file: give it as {key}_file or through THROUGHCARE__{}",
                key.replace('.', "__").to_ascii_uppercase()
            );
        }
    }
    Ok(())
}

impl Settings {
    /// Loads defaults, then the file (if `file` is given it must exist; otherwise
    /// `throughcare.toml` is read when present), then the environment, then `overrides`.
    /// Relative paths in the file are resolved against the file's directory.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> anyhow::Result<Settings> {
        let (path, required) = match file {
            Some(p) => (p.to_path_buf(), true),
            None => (PathBuf::from(DEFAULT_CONFIG_FILE), false),
        };
        if required && !path.exists() {
            anyhow::bail!("configuration file {} does not exist", path.display());
        }
        let mut figment = Figment::from(Serialized::defaults(Settings::default()));
        let base_dir = if path.exists() {
            figment = figment.merge(Toml::file(&path));
            path.parent().map(Path::to_path_buf).unwrap_or_default()
        } else {
            PathBuf::new()
        };
        figment = figment.merge(Env::prefixed("THROUGHCARE__").split("__"));
        let mut settings: Settings = figment
            .extract()
            .map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
        check_no_secret_in_file(&figment, &settings)?;
        settings.resolve_paths(&base_dir);
        if let Some(listen) = overrides.listen {
            settings.server.listen = listen;
        }
        if let Some(dir) = &overrides.data_dir {
            settings.server.data_dir = dir.clone();
        }
        settings.check()?;
        Ok(settings)
    }

    /// Makes every relative path absolute against `base` (the configuration file's folder).
    pub fn resolve_paths(&mut self, base: &Path) {
        if base.as_os_str().is_empty() {
            return;
        }
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        fix(&mut self.server.data_dir);
        fix(&mut self.tls.cert);
        fix(&mut self.tls.key);
        fix(&mut self.tls.client_ca);
        if let Some(k) = self.auth.signing_key.as_mut() {
            fix(k);
        }
        if let Some(k) = self.audit.signing_key.as_mut() {
            fix(k);
        }
        for p in [
            &mut self.delivery.client_cert,
            &mut self.delivery.client_key,
            &mut self.delivery.ca,
        ]
        .into_iter()
        .flatten()
        {
            fix(p);
        }
        fix(&mut self.policy.agreements_dir);
        fix(&mut self.policy.labels_dir);
        fix(&mut self.policy.prison_register);
        fix(&mut self.fhir.profiles_dir);
        fix(&mut self.fhir.mappings_dir);
        for p in &mut self.fhir.packages {
            fix(p);
        }
        for client in &mut self.clients {
            fix(&mut client.certificate);
        }
        if let Some(mesh) = self.mesh.as_mut() {
            for p in [
                &mut mesh.password_file,
                &mut mesh.shared_key_file,
                &mut mesh.ca,
                &mut mesh.client_cert,
                &mut mesh.client_key,
            ]
            .into_iter()
            .flatten()
            {
                fix(p);
            }
        }
    }

    /// Checks what serde cannot: unique client ids, sane limits.
    pub fn check(&self) -> anyhow::Result<()> {
        let mut seen = std::collections::HashSet::new();
        for c in &self.clients {
            if !seen.insert(c.id.as_str()) {
                anyhow::bail!("client id {:?} is registered twice", c.id);
            }
            if c.role == Role::Unknown {
                anyhow::bail!(
                    "client {:?}: 'unknown' is not a role a client can be registered with",
                    c.id
                );
            }
        }
        if self.limits.max_body_bytes == 0 || self.limits.max_json_depth < 8 {
            anyhow::bail!("limits are too small to accept any FHIR document");
        }
        let rates = &self.rate_limits;
        if [
            rates.per_client_per_second,
            rates.per_client_burst,
            rates.per_ip_per_second,
            rates.per_ip_burst,
        ]
        .contains(&0)
            || rates.failure_audit_interval_secs == 0
        {
            anyhow::bail!("rate_limits: every rate, burst and interval must be at least 1");
        }
        if self.auth.access_token_ttl_secs == 0 || self.auth.access_token_ttl_secs > 3600 {
            anyhow::bail!("auth.access_token_ttl_secs must be between 1 and 3600");
        }
        self.policy.check_areas()?;
        self.alerts.check()?;
        if let Some(mesh) = &self.mesh {
            mesh.check()?;
        }
        Ok(())
    }

    /// The base URL clients use, defaulting to `https://localhost:<port>`.
    pub fn public_url(&self, bound: SocketAddr) -> String {
        match &self.server.public_url {
            Some(url) => url.trim_end_matches('/').to_string(),
            None => format!("https://localhost:{}", bound.port()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_configuration_requires_client_certificates_and_sets_rate_limits() {
        let file = Path::new(env!("CARGO_MANIFEST_DIR")).join(DEFAULT_CONFIG_FILE);
        let settings =
            Settings::load(Some(&file), &Overrides::default()).unwrap_or_else(|e| panic!("{e:#}"));
        assert!(settings.tls.require_client_cert_for_api);
        let limits = &settings.rate_limits;
        assert_eq!(
            (limits.per_client_per_second, limits.per_client_burst),
            (50, 100)
        );
        assert_eq!((limits.per_ip_per_second, limits.per_ip_burst), (10, 20));
        assert_eq!(limits.failure_audit_interval_secs, 60);
    }

    #[test]
    fn rate_limits_of_zero_are_refused() {
        let mut settings = Settings::default();
        settings.rate_limits.per_ip_burst = 0;
        assert!(settings.check().is_err());
    }

    fn ods(code: &str) -> OdsCode {
        OdsCode::parse(code).unwrap()
    }

    #[test]
    fn an_icb_administers_its_area_and_itself_only() {
        let mut policy = Settings::default().policy;
        policy
            .icb_areas
            .insert(ods("Q99"), vec!["A99*".into(), "X99001".into()]);
        let q99 = ods("Q99");
        assert!(policy.icb_administers(&q99, &ods("A99001")));
        assert!(policy.icb_administers(&q99, &ods("A99999")));
        assert!(policy.icb_administers(&q99, &ods("X99001")));
        assert!(policy.icb_administers(&q99, &q99), "its own endpoint");
        assert!(!policy.icb_administers(&q99, &ods("X99002")));
        assert!(!policy.icb_administers(&q99, &ods("B86001")));
        assert!(
            !policy.icb_administers(&q99, &ods("X990011")),
            "a code without '*' matches exactly"
        );
        assert!(
            !policy.icb_administers(&ods("Q98"), &ods("A99001")),
            "an ICB with no area administers only itself"
        );
    }

    #[test]
    fn area_entries_must_be_codes_or_prefixes() {
        let mut settings = Settings::default();
        for good in ["A99*", "X99001", "A*"] {
            settings.policy.icb_areas = [(ods("Q99"), vec![good.to_string()])].into();
            assert!(settings.check().is_ok(), "{good}");
        }
        for bad in ["*", "a99*", "A9*9", "X99-001", "", "AB"] {
            settings.policy.icb_areas = [(ods("Q99"), vec![bad.to_string()])].into();
            assert!(settings.check().is_err(), "{bad:?} must be refused");
        }
    }

    #[test]
    fn an_alert_webhook_must_be_https() {
        let mut settings = Settings::default();
        for bad in [
            "http://alerts.example.nhs.uk/hook",
            "HTTP://alerts.example.nhs.uk",
            "https://",
            "https:///path",
            "ftp://alerts.example.nhs.uk",
            "alerts.example.nhs.uk",
        ] {
            settings.alerts.webhook_url = Some(bad.into());
            let err = settings.check().expect_err(bad).to_string();
            assert!(
                err.contains("alerts.webhook_url must be an https://"),
                "{err}"
            );
        }
        settings.alerts.webhook_url = Some("https://alerts.example.nhs.uk/throughcare".into());
        assert!(settings.check().is_ok());
        // At load, from the environment as from the file.
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("t.toml");
        std::fs::write(
            &file,
            "[alerts]\nwebhook_url = \"http://alerts.example.nhs.uk/\"\n",
        )
        .unwrap();
        let err = Settings::load(Some(&file), &Overrides::default()).unwrap_err();
        assert!(format!("{err:#}").contains("https://"), "{err:#}");
    }

    #[test]
    fn mesh_secrets_come_from_files_never_inline_in_the_file_but_for_a_loopback_sandbox() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("mesh-password"), "s3cret\n").unwrap();
        std::fs::write(dir.path().join("mesh-key"), "the-key").unwrap();
        let file = dir.path().join("t.toml");
        std::fs::write(
            &file,
            "[mesh]\nurl = \"https://mesh.example.nhs.uk\"\nmailbox = \"PRISON01\"\n\
             password_file = \"mesh-password\"\nshared_key_file = \"mesh-key\"\n",
        )
        .unwrap();
        let settings = Settings::load(Some(&file), &Overrides::default()).unwrap();
        let mesh = settings.mesh.expect("the mesh section");
        assert_eq!(mesh.password().unwrap().expose(), "s3cret");
        assert_eq!(mesh.shared_key().unwrap().expose(), "the-key");
        assert_eq!(mesh.chunk_size_bytes, 20 * 1024 * 1024);
        assert!(!format!("{mesh:?}").contains("s3cret"));

        // Inline in the file: refused for a real MESH, allowed for a loopback sandbox.
        let inline = "mailbox = \"PRISON01\"\npassword = \"s3cret\"\nshared_key = \"k\"\n";
        std::fs::write(
            &file,
            format!("[mesh]\nurl = \"https://mesh.example.nhs.uk\"\n{inline}"),
        )
        .unwrap();
        let err = Settings::load(Some(&file), &Overrides::default()).unwrap_err();
        assert!(
            format!("{err:#}").contains("mesh.password is written in the configuration file"),
            "{err:#}"
        );
        std::fs::write(
            &file,
            format!("[mesh]\nurl = \"http://127.0.0.1:8700\"\n{inline}"),
        )
        .unwrap();
        assert!(Settings::load(Some(&file), &Overrides::default()).is_ok());

        // Plain http elsewhere, a missing secret, both a secret and its file: refused.
        let mut mesh = MeshSettings::new("http://mesh.example.nhs.uk", "PRISON01");
        mesh.password = Some(Secret::new("p"));
        mesh.shared_key = Some(Secret::new("k"));
        assert!(mesh.check().unwrap_err().to_string().contains("https://"));
        mesh.url = "https://mesh.example.nhs.uk".into();
        assert!(mesh.check().is_ok());
        mesh.shared_key = None;
        assert!(
            mesh.check()
                .unwrap_err()
                .to_string()
                .contains("THROUGHCARE__MESH__SHARED_KEY")
        );
        mesh.shared_key = Some(Secret::new("k"));
        mesh.password_file = Some(dir.path().join("mesh-password"));
        assert!(mesh.check().is_err());
    }

    #[test]
    fn the_example_configuration_loads() {
        let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("throughcare.toml");
        let settings = Settings::load(Some(&file), &Overrides::default()).unwrap();
        assert!(settings.clients.iter().any(|c| c.role == Role::Admin));
        assert!(settings.policy.icb_administers(&ods("Q99"), &ods("A99001")));
    }
}
