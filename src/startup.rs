//! `Application`: builds state, binds the TLS listener, holds the route table, runs until stopped.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;

use actix_web::dev::{Extensions, Server, ServerHandle};
use actix_web::http::Method;
use actix_web::{App, HttpRequest, HttpResponse, Route, web};
use anyhow::Context;

use crate::api;
use crate::audit::{Audit, AuditEvent};
use crate::auth::PeerIdentity;
use crate::auth::keys::{GatewayKey, certificate_organisation};
use crate::auth::token::{ClientRegistry, TokenService};
use crate::clock::{SharedClock, SystemClock};
use crate::config::Settings;
use crate::error::{ApiError, codes};
use crate::fhir::outcome::Issue;
use crate::store::{SqliteStore, Store};

/// Shared state handed to every handler.
pub struct AppState {
    pub settings: Settings,
    pub public_url: String,
    pub store: Arc<dyn Store>,
    pub audit: Audit,
    pub clock: SharedClock,
    pub tokens: TokenService,
    /// The CapabilityStatement, rendered once.
    pub capability: String,
    /// Agreements in force and sensitivity labels.
    pub sharing: crate::sharing::Sharing,
    /// Wakes the delivery workers when a document is accepted.
    pub delivery_wakeup: Arc<tokio::sync::Notify>,
    /// The HTTP client for pushes to recipients.
    pub push_client: reqwest::Client,
    /// Profiles compiled at start-up.
    pub validator: Arc<crate::validate::Validator>,
    pub metrics: crate::metrics::Metrics,
    /// Mappings compiled at start-up.
    pub translator: Arc<crate::translate::Translator>,
    /// Access tokens obtained from recipients' token URLs, with their expiry (unix seconds).
    pub recipient_tokens: std::sync::Mutex<std::collections::HashMap<String, (String, i64)>>,
}

impl crate::routing::Directory for AppState {
    fn role_of(&self, ods: &crate::domain::OdsCode) -> Option<crate::domain::Role> {
        self.settings
            .clients
            .iter()
            .find(|c| &c.ods == ods)
            .map(|c| c.role)
    }

    fn icb_for_postcode(&self, postcode: Option<&str>) -> Option<crate::domain::OdsCode> {
        let policy = &self.settings.policy;
        let normalised = postcode
            .map(|p| p.replace(' ', "").to_ascii_uppercase())
            .unwrap_or_default();
        policy
            .icb_by_postcode
            .iter()
            .filter(|(prefix, _)| {
                !prefix.is_empty() && normalised.starts_with(&prefix.to_ascii_uppercase())
            })
            .max_by_key(|(prefix, _)| prefix.len())
            .map(|(_, icb)| icb.clone())
            .or_else(|| policy.default_icb.clone())
    }
}

/// One row of the route table: the single source for the router, the CapabilityStatement and
/// the test that holds `openapi.yaml` to the router.
pub struct RouteDef {
    pub method: Method,
    pub path: &'static str,
    pub route: fn() -> Route,
}

fn def(method: Method, path: &'static str, route: fn() -> Route) -> RouteDef {
    RouteDef {
        method,
        path,
        route,
    }
}

/// Every route the gateway serves. More specific paths come before parameterised ones.
pub fn route_table() -> Vec<RouteDef> {
    vec![
        def(Method::GET, "/fhir/metadata", || {
            web::get().to(api::metadata::capability_statement)
        }),
        def(Method::POST, "/fhir/Bundle", || {
            web::post().to(api::bundle::submit_document)
        }),
        def(Method::POST, "/fhir/Bundle/$translate", || {
            web::post().to(api::translate::translate_bundle)
        }),
        def(Method::POST, "/fhir/ConceptMap/$translate", || {
            web::post().to(api::translate::translate_code)
        }),
        def(Method::GET, "/fhir/Bundle/{id}", || {
            web::get().to(api::bundle::read_document)
        }),
        def(Method::POST, "/fhir/Consent", || {
            web::post().to(api::consent::create_consent)
        }),
        def(Method::GET, "/fhir/Consent", || {
            web::get().to(api::consent::search_consents)
        }),
        def(Method::GET, "/fhir/Consent/{id}", || {
            web::get().to(api::consent::read_consent)
        }),
        def(Method::PUT, "/fhir/Consent/{id}", || {
            web::put().to(api::consent::update_consent)
        }),
        def(Method::POST, "/fhir/$sharing-decision", || {
            web::post().to(api::sharing::sharing_decision)
        }),
        def(Method::POST, "/fhir/$validate", || {
            web::post().to(api::validate::validate_resource)
        }),
        def(Method::GET, "/fhir/Patient", || {
            web::get().to(api::patient::search_patients)
        }),
        def(
            Method::POST,
            "/fhir/Patient/$gpc.getstructuredrecord",
            || web::post().to(api::patient::gpc_structured_record),
        ),
        def(Method::GET, "/fhir/Patient/{id}", || {
            web::get().to(api::patient::read_patient)
        }),
        def(Method::GET, "/fhir/Patient/{id}/$everything", || {
            web::get().to(api::patient::everything)
        }),
        def(Method::GET, "/fhir/Task", || {
            web::get().to(api::task::search_tasks)
        }),
        def(Method::GET, "/fhir/Task/{id}", || {
            web::get().to(api::task::read_task)
        }),
        def(Method::GET, "/admin/endpoints", || {
            web::get().to(api::admin::list_endpoints)
        }),
        def(Method::PUT, "/admin/endpoints/{ods}", || {
            web::put().to(api::admin::put_endpoint)
        }),
        def(Method::GET, "/admin/deliveries", || {
            web::get().to(api::admin::list_deliveries)
        }),
        def(Method::POST, "/admin/deliveries/{id}/retry", || {
            web::post().to(api::admin::retry_delivery)
        }),
        def(Method::GET, "/fhir/AuditEvent", || {
            web::get().to(api::audit::search_audit_events)
        }),
        def(Method::GET, "/admin/agreements", || {
            web::get().to(api::admin::list_agreements)
        }),
        def(Method::GET, "/admin/agreements/{id}", || {
            web::get().to(api::admin::read_agreement)
        }),
        def(Method::PUT, "/admin/agreements/{id}", || {
            web::put().to(api::admin::put_agreement)
        }),
        def(Method::DELETE, "/admin/agreements/{id}", || {
            web::delete().to(api::admin::retire_agreement)
        }),
        def(Method::POST, "/oauth2/token", || {
            web::post().to(api::oauth::issue_token)
        }),
        def(Method::GET, "/.well-known/smart-configuration", || {
            web::get().to(api::oauth::smart_configuration)
        }),
        def(Method::GET, "/.well-known/jwks.json", || {
            web::get().to(api::oauth::jwks)
        }),
        def(Method::GET, "/metrics", || {
            web::get().to(api::health::metrics)
        }),
        def(Method::GET, "/healthz", || {
            web::get().to(api::health::healthz)
        }),
        def(Method::GET, "/readyz", || {
            web::get().to(api::health::readyz)
        }),
    ]
}

/// (method, path) of every route, for the CapabilityStatement and the OpenAPI test.
pub fn routes() -> Vec<(Method, &'static str)> {
    route_table()
        .into_iter()
        .map(|r| (r.method, r.path))
        .collect()
}

fn configure(cfg: &mut web::ServiceConfig) {
    // Group by path so that a known path with another method answers 405, not 404.
    let mut paths: Vec<&'static str> = Vec::new();
    let table = route_table();
    for r in &table {
        if !paths.contains(&r.path) {
            paths.push(r.path);
        }
    }
    for path in paths {
        let allow: Vec<&str> = table
            .iter()
            .filter(|r| r.path == path)
            .map(|r| r.method.as_str())
            .collect();
        let allow = allow.join(", ");
        let mut resource = web::resource(path).default_service(web::to(move || {
            let allow = allow.clone();
            async move { method_not_allowed(allow) }
        }));
        for r in table.iter().filter(|r| r.path == path) {
            resource = resource.route((r.route)());
        }
        cfg.service(resource);
    }
}

fn method_not_allowed(allow: String) -> HttpResponse {
    use actix_web::ResponseError;
    let mut response = ApiError::MethodNotAllowed.error_response();
    if let Ok(value) = actix_web::http::header::HeaderValue::from_str(&allow) {
        response
            .headers_mut()
            .insert(actix_web::http::header::ALLOW, value);
    }
    response
}

async fn unknown_route(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound(
        Issue::error(
            "not-supported",
            format!("No route for {} {}.", req.method(), req.path()),
        )
        .with_code(codes::UNKNOWN_ROUTE),
    ))
}

/// Records the verified client certificate's organisation on the connection.
fn on_connect(conn: &dyn std::any::Any, ext: &mut Extensions) {
    type Tls = actix_tls::accept::rustls_0_23::TlsStream<actix_web::rt::net::TcpStream>;
    if let Some(tls) = conn.downcast_ref::<Tls>() {
        let (_, session) = tls.get_ref();
        if let Some(cert) = session.peer_certificates().and_then(|c| c.first()) {
            let organisation = certificate_organisation(cert.as_ref());
            ext.insert(PeerIdentity {
                organisation,
                common_name: None,
            });
        }
    }
}

/// A built, bound gateway.
pub struct Application {
    port: u16,
    server: Server,
    state: web::Data<AppState>,
    checkpoints: tokio::task::JoinHandle<()>,
    workers: Option<tokio::task::JoinHandle<()>>,
}

/// Signs the audit chain head now if it moved; failures are logged (the chain itself is intact).
pub async fn checkpoint(state: &AppState) {
    let now = crate::clock::rfc3339(state.clock.now());
    if let Err(e) = crate::audit::checkpoint::checkpoint_now(
        state.store.as_ref(),
        &state.tokens.gateway_key,
        &state.settings.server.data_dir,
        &now,
    )
    .await
    {
        tracing::error!(error = %e, "Could not sign an audit checkpoint.");
    }
}

/// Options for embedding the gateway (tests, the demo).
#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    /// Leave signal handling to the embedder.
    pub disable_signals: bool,
    /// Use this clock instead of the system clock.
    pub clock: Option<SharedClock>,
    /// Use this validator instead of loading one (tests share one across many gateways).
    pub validator: Option<Arc<crate::validate::Validator>>,
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Application> {
        Application::build_with(settings, BuildOptions::default()).await
    }

    pub async fn build_with(
        settings: Settings,
        options: BuildOptions,
    ) -> anyhow::Result<Application> {
        let clock: SharedClock = options.clock.unwrap_or_else(|| Arc::new(SystemClock));
        let tls = crate::tls::server_config(&settings.tls)?;
        let listener = TcpListener::bind(settings.server.listen)
            .with_context(|| format!("binding {}", settings.server.listen))?;
        let bound: SocketAddr = listener.local_addr()?;
        let public_url = settings.public_url(bound);

        let store: Arc<dyn Store> = Arc::new(
            SqliteStore::open(&settings.server.data_dir, clock.clone())
                .await
                .with_context(|| {
                    format!(
                        "opening the store in {}",
                        settings.server.data_dir.display()
                    )
                })?,
        );
        let audit = Audit::new(store.clone());
        let gateway_key = GatewayKey::load_or_generate(
            settings.auth.signing_key.as_deref(),
            &settings.server.data_dir,
        )?;
        let clients = ClientRegistry::load(&settings.clients)?;
        if clients.is_empty() {
            tracing::warn!("No clients are registered: every protected route will refuse.");
        }
        let tokens = TokenService {
            clients,
            gateway_key,
            settings: settings.auth.clone(),
            issuer: public_url.clone(),
            token_url: format!("{public_url}/oauth2/token"),
        };
        let validator = match options.validator.clone() {
            Some(v) => v,
            None => Arc::new(
                crate::validate::Validator::load(&settings.fhir)
                    .context("loading profiles and packages")?,
            ),
        };
        let translator = Arc::new(
            crate::translate::Translator::load(&settings.fhir.mappings_dir).with_context(|| {
                format!(
                    "loading mappings from {}",
                    settings.fhir.mappings_dir.display()
                )
            })?,
        );
        let report = validator.report();
        tracing::info!(
            profiles = report.profiles,
            value_sets = report.value_sets,
            code_systems = report.code_systems,
            "Profiles loaded."
        );
        for missing in &report.missing_packages {
            tracing::warn!(package = %missing.display(), "FHIR package folder is missing: validation covers only what is loaded.");
        }
        for warning in &report.warnings {
            tracing::debug!(%warning, "Profile loading warning.");
        }
        let capability = crate::fhir::capability::build(&public_url, &routes()).to_string();
        let sharing = crate::sharing::Sharing::load(
            &settings.policy,
            store.as_ref(),
            &crate::clock::rfc3339(clock.now()),
        )
        .await?;
        if sharing.agreements().is_empty() {
            tracing::warn!("No data-sharing agreements are loaded: nothing will be shared.");
        }
        let state = web::Data::new(AppState {
            settings: settings.clone(),
            public_url,
            store,
            audit,
            clock,
            tokens,
            capability,
            sharing,
            delivery_wakeup: Arc::new(tokio::sync::Notify::new()),
            push_client: crate::delivery::worker::push_client(&settings.delivery)?,
            validator,
            metrics: crate::metrics::Metrics::new(),
            translator,
            recipient_tokens: Default::default(),
        });

        let app_state = state.clone();
        let mut server = actix_web::HttpServer::new(move || {
            App::new()
                .app_data(app_state.clone())
                .wrap(tracing_actix())
                .configure(configure)
                .default_service(web::to(unknown_route))
        })
        .on_connect(on_connect)
        .listen_rustls_0_23(listener, tls)?;
        if settings.server.workers > 0 {
            server = server.workers(settings.server.workers);
        }
        if options.disable_signals {
            server = server.disable_signals();
        }
        let server = server.shutdown_timeout(30).run();
        state
            .audit
            .record(AuditEvent::GatewayLifecycle {
                what: "gateway-started",
            })
            .await?;
        let released = state.store.release_claims().await?;
        if released > 0 {
            tracing::info!(released, "Released delivery leases held before a restart.");
        }
        let workers = settings
            .delivery
            .enabled
            .then(|| tokio::spawn(crate::delivery::worker::run(state.clone())));
        let periodic = state.clone();
        let every = std::time::Duration::from_secs(settings.audit.checkpoint_interval_secs.max(1));
        let checkpoints = tokio::spawn(async move {
            let mut interval = tokio::time::interval(every);
            interval.tick().await;
            loop {
                interval.tick().await;
                checkpoint(&periodic).await;
            }
        });
        Ok(Application {
            port: bound.port(),
            server,
            state,
            checkpoints,
            workers,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn public_url(&self) -> &str {
        &self.state.public_url
    }

    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    /// Serves until stopped (SIGTERM, Ctrl-C or the handle), then records the stop and closes
    /// the store.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        self.server.await?;
        self.state
            .audit
            .record_or_log(AuditEvent::GatewayLifecycle {
                what: "gateway-stopped",
            })
            .await;
        self.checkpoints.abort();
        if let Some(w) = &self.workers {
            w.abort();
        }
        checkpoint(&self.state).await;
        self.state.store.close().await;
        Ok(())
    }
}

fn tracing_actix() -> actix_web::middleware::Logger {
    // Method, path (no query string: searches carry NHS numbers) and status only.
    actix_web::middleware::Logger::new("%{method}xi %U %s %Dms")
        .custom_request_replace("method", |req| req.method().to_string())
        .exclude("/healthz")
}
