//! `Application`: builds state, binds the TLS listener, holds the route table, runs until stopped.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;

use actix_web::dev::{Extensions, Server, ServerHandle};
use actix_web::{App as HttpApp, web};
use anyhow::Context;

use crate::api;
use crate::app::App;
use crate::audit::{Audit, AuditEvent};
use crate::auth::PeerIdentity;
use crate::auth::keys::{GatewayKey, certificate_organisation};
use crate::auth::token::{ClientRegistry, TokenService};
use crate::clock::{SharedClock, SystemClock};
use crate::config::Settings;
use crate::store::{SqliteStore, Store};

/// (method, path) of every route, for the CapabilityStatement and the OpenAPI test.
pub use crate::api::routes::routes;

/// Records the verified client certificate's organisation on the connection.
fn on_connect(conn: &dyn std::any::Any, ext: &mut Extensions) {
    type Tls = actix_tls::accept::rustls_0_23::TlsStream<actix_web::rt::net::TcpStream>;
    if let Some(tls) = conn.downcast_ref::<Tls>() {
        let (_, session) = tls.get_ref();
        if let Some(cert) = session.peer_certificates().and_then(|c| c.first()) {
            let organisation = certificate_organisation(cert.as_ref());
            ext.insert(PeerIdentity { organisation });
        }
    }
}

/// A built, bound gateway.
pub struct Application {
    port: u16,
    server: Server,
    state: web::Data<App>,
    checkpoints: tokio::task::JoinHandle<()>,
    workers: Option<tokio::task::JoinHandle<()>>,
}

/// Signs the audit chain head now if it moved; failures are logged (the chain itself is intact).
pub async fn checkpoint(state: &App) {
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
        let table = api::routes::route_table();
        let route_list: Vec<(&str, &str)> =
            table.iter().map(|r| (r.method.as_str(), r.path)).collect();
        let capability = crate::fhir::capability::build(&public_url, &route_list).to_string();
        let sharing = crate::sharing::Sharing::load(
            &settings.policy,
            store.as_ref(),
            &crate::clock::rfc3339(clock.now()),
        )
        .await?;
        if sharing.agreements().is_empty() {
            tracing::warn!("No data-sharing agreements are loaded: nothing will be shared.");
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
            capability,
            sharing,
            delivery_wakeup: Arc::new(tokio::sync::Notify::new()),
            transports: crate::transport::Transports::from_settings(&settings)?,
            validator,
            metrics: crate::metrics::Metrics::new(),
            translator,
            prisons,
        });
        let access = web::Data::new(api::routes::AccessTable::from_table());

        let app_state = state.clone();
        let mut server = actix_web::HttpServer::new(move || {
            HttpApp::new()
                .app_data(app_state.clone())
                .app_data(access.clone())
                .wrap(actix_web::middleware::from_fn(api::audit_rejections))
                .wrap(tracing_actix())
                .configure(api::routes::configure)
                .default_service(web::to(api::routes::unknown_route))
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
            .then(|| tokio::spawn(crate::delivery::worker::run(state.clone().into_inner())));
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
