//! The command line: `serve`, `demo` (`--mesh`), `audit verify`, `deliveries --at-risk`, `certs generate`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use crate::store::Store as _;

use clap::{Parser, Subcommand};

use crate::config::{Overrides, Settings};

#[derive(Debug, Parser)]
#[command(
    name = "throughcare",
    version,
    about = "Prison-to-community FHIR gateway"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the gateway over HTTPS.
    Serve {
        /// Configuration file (default: ./throughcare.toml when present).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Address to listen on, such as 127.0.0.1:8443.
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Directory for the SQLite store and the signing key.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Start even when a FHIR package is missing or unreadable (development only: the
        /// gateway then validates against less than its profiles need).
        #[arg(long)]
        allow_missing_packages: bool,
    },
    /// Run a release end to end on the embedded defaults, printing each step.
    Demo {
        /// Deliver to the GP practice over MESH (ITK3 Transfer of Care, acknowledged by a
        /// built-in GP system) through NHS Digital's MESH sandbox; needs python3 with venv.
        #[arg(long)]
        mesh: bool,
        /// With --mesh: the MESH sandbox's folder (its start.sh); default MESH_SANDBOX_DIR.
        #[arg(long, requires = "mesh")]
        sandbox: Option<PathBuf>,
    },
    /// Validate a FHIR resource (JSON) against a profile; exits 1 when it has errors.
    Validate {
        file: PathBuf,
        /// Canonical URL of the profile (default: the prison profiles for a prison document, else
        /// the resource's meta.profile or UK Core).
        #[arg(long)]
        profile: Option<String>,
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Translate a prison document (or a GP Connect structured record) to another profile; prints
    /// the result, and the loss report on stderr.
    Translate {
        /// uk-core-r4, gp-connect-stu3, prison or itk-edischarge-stu3.
        #[arg(long = "to")]
        to: String,
        file: PathBuf,
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Audit log tools.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// List deliveries from the store: with `--at-risk`, those with an open escalation (held,
    /// failed, dead-lettered, or undelivered within the lead time before release).
    Deliveries {
        /// Only the deliveries at risk (an alert was raised and the escalation is open).
        #[arg(long)]
        at_risk: bool,
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Development certificates.
    Certs {
        #[command(subcommand)]
        command: CertsCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check the audit hash chain; exits non-zero and names the first broken entry.
    Verify {
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum CertsCommand {
    /// Write a development CA, server and sample client certificates.
    Generate {
        #[arg(long, default_value = "certs-example")]
        out: PathBuf,
    },
    /// Issue one more development client certificate signed by an existing development CA
    /// (`<ca-dir>/ca.crt`, `ca.key`), into `<ca-dir>/clients`, leaving the others as they are.
    IssueClient {
        #[arg(long, default_value = "certs-example")]
        ca_dir: PathBuf,
        /// The client id (certificate CN, file name).
        #[arg(long)]
        id: String,
        /// The organisation's ODS code (certificate O).
        #[arg(long)]
        ods: String,
        /// The organisation's name (certificate OU).
        #[arg(long)]
        organisation: String,
    },
}

/// Runs a command; the returned code is the process exit code.
pub async fn run(cli: Cli) -> anyhow::Result<i32> {
    match cli.command {
        Command::Serve {
            config,
            listen,
            data_dir,
            allow_missing_packages,
        } => {
            let mut settings = Settings::load(config.as_deref(), &Overrides { listen, data_dir })?;
            if allow_missing_packages {
                tracing::warn!(
                    "--allow-missing-packages: the gateway may validate against less than its profiles need (development only)."
                );
                settings.fhir.allow_missing_packages = true;
            }
            let app = crate::startup::Application::build(settings).await?;
            tracing::info!(url = app.public_url(), "Gateway listening.");
            app.run_until_stopped().await?;
            tracing::info!("Gateway stopped.");
            Ok(0)
        }
        Command::Validate {
            file,
            profile,
            config,
        } => {
            let settings = Settings::load(config.as_deref(), &Overrides::default())?;
            let validator = crate::validate::Validator::load(&settings.fhir)?;
            for missing in &validator.report().missing_packages {
                eprintln!("warning: package folder {} is missing", missing.display());
            }
            let text = std::fs::read(&file)?;
            let resource: serde_json::Value = serde_json::from_slice(&text)
                .map_err(|e| anyhow::anyhow!("{} is not JSON: {e}", file.display()))?;
            let set = crate::validate::choose_set(&resource);
            let issues = validator.validate(&resource, profile.as_deref(), set);
            let outcome = crate::fhir::outcome::operation_outcome(&issues);
            println!("{}", serde_json::to_string_pretty(&outcome)?);
            let errors = issues.iter().any(|i| {
                matches!(
                    i.severity,
                    crate::fhir::outcome::Severity::Error | crate::fhir::outcome::Severity::Fatal
                )
            });
            Ok(if errors { 1 } else { 0 })
        }
        Command::Translate { to, file, config } => {
            let settings = Settings::load(config.as_deref(), &Overrides::default())?;
            let translator = crate::translate::Translator::load(&settings.fhir.mappings_dir)?;
            let target: crate::translate::Target = to.parse().map_err(|_| {
                anyhow::anyhow!(
                    "--to must be uk-core-r4, gp-connect-stu3, prison or itk-edischarge-stu3"
                )
            })?;
            let text = std::fs::read(&file)?;
            let document: serde_json::Value = serde_json::from_slice(&text)
                .map_err(|e| anyhow::anyhow!("{} is not JSON: {e}", file.display()))?;
            let source = crate::translate::Source::detect(&document).ok_or_else(|| {
                anyhow::anyhow!(
                    "{} is neither a prison document nor a GP Connect structured record",
                    file.display()
                )
            })?;
            let translation = translator.translate(source, target, &document)?;
            println!("{}", serde_json::to_string_pretty(&translation.output)?);
            for loss in &translation.losses {
                eprintln!(
                    "{}: {} {}: {}",
                    if loss.is_assumption() {
                        "assumed"
                    } else {
                        "not mapped"
                    },
                    loss.path,
                    loss.code.as_deref().unwrap_or(""),
                    loss.reason
                );
            }
            Ok(0)
        }
        Command::Demo { mesh: false, .. } => {
            crate::demo::run().await?;
            Ok(0)
        }
        Command::Demo {
            mesh: true,
            sandbox,
        } => match crate::demo::mesh::run(&crate::demo::mesh::Options::from_env(sandbox)).await {
            Ok(()) => Ok(0),
            Err(e) if e.is::<crate::demo::mesh::SandboxMissing>() => {
                eprintln!("error: {e}");
                Ok(crate::demo::mesh::EXIT_SANDBOX_MISSING)
            }
            Err(e) => Err(e),
        },
        Command::Audit {
            command: AuditCommand::Verify { config, data_dir },
        } => {
            let settings = Settings::load(
                config.as_deref(),
                &Overrides {
                    listen: None,
                    data_dir,
                },
            )?;
            let dir = &settings.server.data_dir;
            if !dir.join(crate::store::sqlite_file_name()).exists() {
                anyhow::bail!("no audit log in {}", dir.display());
            }
            let store =
                crate::store::SqliteStore::open(dir, Arc::new(crate::clock::SystemClock)).await?;
            let keys = crate::audit::checkpoint::CheckpointKeys::load(&settings, dir)?;
            let report = crate::audit::verify_all(
                &store,
                dir,
                &keys,
                settings.audit.checkpoint_interval_secs,
            )
            .await?;
            store.close().await;
            match report.broken {
                None => {
                    let head = report
                        .head
                        .map(|(s, h)| format!("head #{s} {h}"))
                        .unwrap_or_default();
                    let legacy = match report.legacy_checkpoints {
                        0 => String::new(),
                        n => {
                            format!(" ({n} signed with the token key before the audit key existed)")
                        }
                    };
                    let signed = match report.last_checkpoint {
                        Some(seq) => format!(
                            "{} signed checkpoints{legacy}, the newest at #{seq}",
                            report.checkpoints
                        ),
                        None => "no signed checkpoint yet".to_string(),
                    };
                    println!(
                        "audit chain intact: {} entries; {head}; {signed}",
                        report.entries
                    );
                    Ok(0)
                }
                Some(b) => {
                    println!("audit chain BROKEN at entry {}: {}", b.seq, b.reason);
                    Ok(1)
                }
            }
        }
        Command::Deliveries {
            at_risk,
            config,
            data_dir,
        } => {
            let settings = Settings::load(
                config.as_deref(),
                &Overrides {
                    listen: None,
                    data_dir,
                },
            )?;
            let dir = &settings.server.data_dir;
            if !dir.join(crate::store::sqlite_file_name()).exists() {
                anyhow::bail!("no store in {}", dir.display());
            }
            let store =
                crate::store::SqliteStore::open(dir, Arc::new(crate::clock::SystemClock)).await?;
            let filter = crate::store::DeliveryFilter {
                escalated: at_risk.then_some(true),
                limit: 1000,
                ..Default::default()
            };
            let rows = store.deliveries(&filter).await;
            store.close().await;
            let rows = rows?;
            println!(
                "{:<36}  {:<24}  {:<11}  {:<16}  {:<10}  {:>4}  {:<24}  STATUS",
                "TASK", "ALERT", "SENDER", "RECIPIENT", "RELEASE", "LEAD", "ALERTED"
            );
            for d in &rows {
                let lead = d
                    .lead_time_days
                    .unwrap_or(i64::from(settings.alerts.lead_time_days));
                println!(
                    "{:<36}  {:<24}  {:<11}  {:<16}  {:<10}  {:>3}d  {:<24}  {}/{}{}",
                    d.id,
                    d.alert_state.as_deref().unwrap_or("-"),
                    d.sender_ods,
                    format!("{} ({})", d.recipient_ods, d.recipient_role),
                    d.release_date.as_deref().unwrap_or("-"),
                    lead,
                    d.alerted_at.as_deref().unwrap_or("-"),
                    d.status,
                    d.business_status,
                    if d.continuity_critical {
                        " continuity-critical"
                    } else {
                        ""
                    },
                );
            }
            eprintln!(
                "{} deliver{}{}",
                rows.len(),
                if rows.len() == 1 { "y" } else { "ies" },
                if at_risk { " at risk" } else { "" }
            );
            Ok(0)
        }
        Command::Certs {
            command:
                CertsCommand::IssueClient {
                    ca_dir,
                    id,
                    ods,
                    organisation,
                },
        } => {
            crate::certs::issue_client_files(&ca_dir, &id, &ods, &organisation)?;
            println!(
                "wrote {0}/clients/{id}.crt and {id}.key, signed by the development CA in {0} (NOT for production)",
                ca_dir.display()
            );
            Ok(0)
        }
        Command::Certs {
            command: CertsCommand::Generate { out },
        } => {
            crate::certs::generate(&out)?;
            println!(
                "wrote development certificates to {} (NOT for production)",
                out.display()
            );
            Ok(0)
        }
    }
}
