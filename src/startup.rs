//! `Application`: builds state, binds the TLS listener, holds the route table, runs until stopped.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;

use actix_web::body::MessageBody;
use actix_web::dev::{Extensions, Server, ServerHandle, ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{App as HttpApp, web};
use anyhow::Context;

use crate::api;
use crate::app::App;
use crate::audit::{Audit, AuditEvent};
use crate::auth::keys::{GatewayKey, certificate_organisation};
use crate::auth::limits::{FailureSampler, RateLimits};
use crate::auth::token::{ClientRegistry, TokenService};
use crate::auth::{PeerIdentity, certificate_thumbprint};
use crate::clock::{SharedClock, SystemClock};
use crate::config::Settings;
use crate::store::{SqliteStore, Store};

/// (method, path) of every route, for the CapabilityStatement and the OpenAPI test.
pub use crate::api::routes::routes;

/// Records the verified client certificate's organisation and thumbprint on the connection.
fn on_connect(conn: &dyn std::any::Any, ext: &mut Extensions) {
    type Tls = actix_tls::accept::rustls_0_23::TlsStream<actix_web::rt::net::TcpStream>;
    if let Some(tls) = conn.downcast_ref::<Tls>() {
        let (_, session) = tls.get_ref();
        if let Some(cert) = session.peer_certificates().and_then(|c| c.first()) {
            let organisation = certificate_organisation(cert.as_ref());
            ext.insert(PeerIdentity {
                organisation,
                thumbprint: Some(certificate_thumbprint(cert.as_ref())),
            });
        }
    }
}

/// A built, bound gateway.
pub struct Application {
    port: u16,
    server: Server,
    state: web::Data<App>,
    checkpoints: tokio::task::JoinHandle<()>,
    failures: tokio::task::JoinHandle<()>,
    workers: Option<tokio::task::JoinHandle<()>>,
}

/// Signs the audit chain head with the audit key now if it moved.
async fn try_checkpoint(state: &App) -> Result<(), crate::store::StoreError> {
    let now = crate::clock::rfc3339(state.clock.now());
    crate::audit::checkpoint::checkpoint_now(
        state.store.as_ref(),
        &state.audit_key,
        &state.settings.server.data_dir,
        &now,
    )
    .await
    .map(|_| ())
}

/// Signs the audit chain head now if it moved; failures are logged (the chain itself is intact,
/// and `audit verify` reports the uncovered entries).
pub async fn checkpoint(state: &App) {
    if let Err(e) = try_checkpoint(state).await {
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
    /// Wraps the opened store (tests inject failures this way).
    pub store_wrapper: Option<StoreWrapper>,
}

/// A function that wraps the store the gateway opens, for example with one that fails on cue.
#[derive(Clone)]
pub struct StoreWrapper(pub Arc<WrapStore>);

/// The function inside a [`StoreWrapper`].
pub type WrapStore = dyn Fn(Arc<dyn Store>) -> Arc<dyn Store> + Send + Sync;

impl std::fmt::Debug for StoreWrapper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StoreWrapper")
    }
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
        let store = match &options.store_wrapper {
            Some(wrap) => (wrap.0)(store),
            None => store,
        };
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
        let medicines = crate::medicines::ContinuityCritical::load_dir(
            &settings.fhir.mappings_dir.join("medicines"),
        )
        .context("loading the continuity-critical medicines")?;
        let clinical = crate::validate::clinical::ClinicalContent::load_dir(
            &settings
                .fhir
                .mappings_dir
                .join(crate::validate::clinical::DIR),
        )
        .context("loading the clinical-content lists")?;
        let report = validator.report();
        tracing::info!(
            profiles = report.profiles,
            value_sets = report.value_sets,
            code_systems = report.code_systems,
            "Profiles loaded."
        );
        // Fail closed: without its packages the gateway would accept documents it cannot check.
        let broken: Vec<String> = report
            .missing_packages
            .iter()
            .map(|p| format!("FHIR package folder is missing: {}", p.display()))
            .chain(
                report
                    .unreadable_files
                    .iter()
                    .map(|p| format!("FHIR package file cannot be read: {}", p.display())),
            )
            .collect();
        if !broken.is_empty() {
            if !settings.fhir.allow_missing_packages {
                anyhow::bail!(
                    "{}; the gateway will not start without its FHIR packages (packages/ ships them; --allow-missing-packages is for development only)",
                    broken.join("; ")
                );
            }
            for b in &broken {
                tracing::error!(
                    "{b}: validation covers only what is loaded (--allow-missing-packages; development only)."
                );
            }
        }
        for warning in &report.warnings {
            tracing::debug!(%warning, "Profile loading warning.");
        }
        let table = api::routes::route_table();
        let route_list: Vec<(&str, &str)> =
            table.iter().map(|r| (r.method.as_str(), r.path)).collect();
        let capability = crate::fhir::capability::build(&public_url, &route_list).to_string();
        let sharing = crate::sharing::Sharing::load(
            &settings.policy,
            store.as_ref(),
            &crate::clock::rfc3339(clock.now()),
            &translator.code_pairs(),
        )
        .await?;
        if sharing.agreements().is_empty() {
            tracing::warn!("No data-sharing agreements are loaded: nothing will be shared.");
        }
        // The audit key signs checkpoints only; it must not be the token signing key, so that a
        // leaked token key cannot forge the audit log's checkpoints.
        let audit_key = GatewayKey::load_or_generate_file(
            settings.audit.signing_key.as_deref(),
            &settings.server.data_dir,
            crate::auth::keys::AUDIT_KEY_FILE,
        )
        .context("loading the audit signing key")?;
        if audit_key.kid == tokens.gateway_key.kid {
            anyhow::bail!(
                "audit.signing_key is the token signing key: the audit log needs a key of its own"
            );
        }
        let prisons = crate::directory::PrisonRegister::load(&settings.policy.prison_register)?;
        tracing::info!(units = prisons.active_units(), "Prison register loaded.");
        for c in &settings.clients {
            if c.role == crate::domain::Role::Prison && !prisons.is_prison_healthcare(&c.ods) {
                tracing::warn!(client = %c.id, ods = %c.ods, "A client registered as a prison is not an active prison healthcare unit on the prison register: no transfer will be routed to it.");
            }
        }
        let state = web::Data::new(App {
            settings: settings.clone(),
            public_url,
            store,
            audit,
            clock,
            tokens,
            audit_key,
            capability,
            sharing,
            delivery_wakeup: Arc::new(tokio::sync::Notify::new()),
            alert_wakeup: Arc::new(tokio::sync::Notify::new()),
            transports: crate::transport::Transports::from_settings(&settings)?,
            validator,
            metrics: crate::metrics::Metrics::new(),
            translator,
            medicines,
            clinical,
            limits: RateLimits::new(&settings.rate_limits),
            failed_authentications: FailureSampler::new(
                settings.rate_limits.failure_audit_interval_secs,
            ),
            prisons,
        });
        let access = web::Data::new(api::routes::AccessTable::from_table());

        let app_state = state.clone();
        let in_flight = web::Data::new(api::in_flight::InFlight::new(
            settings.server.max_in_flight_per_ip,
        ));
        let mut server = actix_web::HttpServer::new(move || {
            HttpApp::new()
                .app_data(app_state.clone())
                .app_data(access.clone())
                .app_data(in_flight.clone())
                .wrap(actix_web::middleware::from_fn(api::audit_rejections))
                .wrap(actix_web::middleware::from_fn(
                    api::mtls::require_client_certificate,
                ))
                .wrap(actix_web::middleware::from_fn(
                    api::in_flight::cap_in_flight,
                ))
                .wrap(actix_web::middleware::from_fn(access_log))
                .configure(api::routes::configure)
                .default_service(web::to(api::routes::unknown_route))
        })
        .on_connect(on_connect)
        .client_request_timeout(std::time::Duration::from_millis(
            settings.server.request_head_timeout_ms.max(100),
        ))
        .client_disconnect_timeout(std::time::Duration::from_secs(5))
        .tls_handshake_timeout(std::time::Duration::from_millis(
            settings.server.request_head_timeout_ms.max(100),
        ))
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
        // Sign the head before serving: a data directory the gateway has served always holds a
        // checkpoint signed with the audit key (`audit verify` relies on it).
        try_checkpoint(&state)
            .await
            .context("signing the start-up audit checkpoint")?;
        let released = state.store.release_claims().await?;
        if released > 0 {
            tracing::info!(released, "Released delivery leases held before a restart.");
        }
        let workers = settings.delivery.enabled.then(|| {
            // The delivery workers (which also escalate) and the alert webhook's sender.
            let app = state.clone().into_inner();
            tokio::spawn(async move {
                tokio::join!(
                    crate::delivery::worker::run(app.clone()),
                    crate::delivery::webhook::run(app.clone()),
                    // The MESH inbox (ITK3 acknowledgements), when [mesh] is configured.
                    crate::delivery::mesh::run_inbox(app)
                );
            })
        });
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
        // Failed authentications folded into a count are audited when their interval ends.
        let sampled = state.clone();
        let every =
            std::time::Duration::from_secs(settings.rate_limits.failure_audit_interval_secs.max(1));
        let failures = tokio::spawn(async move {
            let mut interval = tokio::time::interval(every);
            interval.tick().await;
            loop {
                interval.tick().await;
                sampled.flush_failed_authentications(false).await;
            }
        });
        Ok(Application {
            port: bound.port(),
            server,
            state,
            checkpoints,
            failures,
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
        self.failures.abort();
        self.state.flush_failed_authentications(true).await;
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

/// The access log: method, path and status, with anything that may be an NHS number masked
/// (paths such as `/fhir/Patient/{nhs number}` carry one) and never the query string (searches
/// carry them too). `/healthz` is not logged.
async fn access_log(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    if req.path() == "/healthz" {
        return next.call(req).await;
    }
    let started = std::time::Instant::now();
    let method = req.method().clone();
    let path = access_log_path(req.path());
    let result = next.call(req).await;
    let status = match &result {
        Ok(res) => res.status(),
        Err(e) => e.as_response_error().status_code(),
    };
    tracing::info!(
        target: "throughcare::access",
        "{method} {path} {} {}ms",
        status.as_u16(),
        started.elapsed().as_millis()
    );
    result
}

/// The path as the access log shows it: NHS numbers masked.
pub fn access_log_path(path: &str) -> String {
    crate::domain::mask_nhs_numbers(path).into_owned()
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use actix_web::{App as HttpApp, HttpResponse, test, web};

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[actix_web::test]
    async fn access_log_masks_nhs_numbers_in_paths_and_never_logs_the_query() {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);
        let app = test::init_service(
            HttpApp::new()
                .wrap(actix_web::middleware::from_fn(super::access_log))
                .route(
                    "/fhir/Patient/{id}",
                    web::get().to(|| async { HttpResponse::Ok().finish() }),
                )
                .route(
                    "/fhir/Patient/{id}/$everything",
                    web::get().to(|| async { HttpResponse::Ok().finish() }),
                )
                .route(
                    "/fhir/Patient",
                    web::get().to(|| async { HttpResponse::Ok().finish() }),
                ),
        )
        .await;
        for uri in [
            "/fhir/Patient/9990000018",
            "/fhir/Patient/9990000018/$everything",
            "/fhir/Patient?identifier=https://fhir.nhs.uk/Id/nhs-number%7C9990000018",
        ] {
            let res =
                test::call_service(&app, test::TestRequest::get().uri(uri).to_request()).await;
            assert_eq!(res.status().as_u16(), 200, "{uri}");
        }
        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        assert!(
            text.contains("GET /fhir/Patient/********** 200"),
            "the read is logged, masked: {text}"
        );
        assert!(
            text.contains("GET /fhir/Patient/**********/$everything 200"),
            "{text}"
        );
        assert!(text.contains("GET /fhir/Patient 200"), "{text}");
        assert!(
            !text.contains("9990000018"),
            "no NHS number is logged: {text}"
        );
    }
}
