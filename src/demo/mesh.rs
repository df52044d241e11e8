//! `throughcare demo --mesh`: the same release, delivered to the GP practice the way GP systems
//! receive, as an ITK3 Transfer of Care message over MESH, and completed by the practice's
//! acknowledgements.
//!
//! It needs NHS Digital's MESH sandbox (MIT), which is not part of the product: its folder is
//! given by `--sandbox DIR` (or `MESH_SANDBOX_DIR`). Nothing else the product runs reads outside
//! the repository. Its `start.sh` installs the sandbox into
//! a Python venv (`target/mesh-venv` when run from the repository, else under the system
//! temporary folder, or `MESH_SANDBOX_VENV`; kept between runs, so only the first run installs)
//! and starts it on a free loopback port with a mailbox for the gateway and one for the practice.
//! The sandbox is stopped at the end, whatever happened (and on Ctrl-C).
//!
//! The practice's clinical system is played by a small built-in responder: a tokio task with a
//! [`MeshClient`] on the practice's mailbox, which reads the ITK3 message, answers it with an
//! infrastructure acknowledgement (`20013`), then a business acknowledgement (`30001`, asking
//! for an infrastructure acknowledgement in return, the Full Acknowledgement pattern), and reads
//! the gateway's answer. The demo cues it step by step so that the output follows the Task:
//! `in-progress` (sent, awaiting acknowledgement), `in-progress` (accepted by the practice
//! system), `completed`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};

use super::{
    Gateway, print_task, push_document, release_in_two_weeks, sample_client, sample_recipient,
    settings_in, step, tasks_of, verify_audit,
};
use crate::config::{MeshSettings, Secret};
use crate::fhir::xml::{FhirVersion, from_xml, to_xml};
use crate::itk::message::HeaderOrganisation;
use crate::itk::response::{ResponseParams, build_response, parse_response};
use crate::itk::{WORKFLOW_IP_DISCHARGE, WORKFLOW_IP_DISCHARGE_ACK, response_code};
use crate::transport::mesh::{InboxMessage, MeshClient, OutboundMessage};

/// The gateway's mailbox in the sandbox.
pub const GATEWAY_MAILBOX: &str = "THRUGATE";
/// The GP practice's mailbox in the sandbox.
pub const PRACTICE_MAILBOX: &str = "GPPRAC01";
/// The sample GP practice.
const PRACTICE_ODS: &str = "A99001";
/// Every mailbox `MESH_EXTRA_MAILBOXES` adds has this password.
const SANDBOX_PASSWORD: &str = "password";
/// The sandbox's HMAC shared key (passed to `start.sh` as `MESH_SHARED_KEY`).
const SANDBOX_SHARED_KEY: &str = "TestKey";
/// How long the demo waits for any one thing to happen.
const PATIENCE: Duration = Duration::from_secs(30);

/// The process exit code of `demo --mesh` when the sandbox is absent.
pub const EXIT_SANDBOX_MISSING: i32 = 3;

/// `demo --mesh` without the sandbox.
#[derive(Debug, thiserror::Error)]
#[error(
    "demo --mesh needs NHS Digital's MESH sandbox (mesh-sandbox, MIT): give its folder with --sandbox DIR or MESH_SANDBOX_DIR; the plain demo needs nothing\n(no start.sh in {})",
    .0.display()
)]
pub struct SandboxMissing(pub PathBuf);

/// Where the sandbox and its venv are.
#[derive(Debug, Clone)]
pub struct Options {
    /// The sandbox folder (with `start.sh`).
    pub sandbox_dir: PathBuf,
    /// The Python venv `start.sh` installs it into (created the first time, then reused).
    pub venv: PathBuf,
}

impl Options {
    /// `sandbox` (the `--sandbox` flag), else `MESH_SANDBOX_DIR` (neither: an empty path, which
    /// the demo reports as missing); `MESH_SANDBOX_VENV`, or `target/mesh-venv` when there is a
    /// `target/` folder here (the one the MESH tests use), or `throughcare-mesh-venv` in the
    /// system temporary folder.
    pub fn from_env(sandbox: Option<PathBuf>) -> Options {
        let sandbox_dir = sandbox
            .or_else(|| std::env::var_os("MESH_SANDBOX_DIR").map(PathBuf::from))
            .unwrap_or_default();
        let venv = std::env::var_os("MESH_SANDBOX_VENV")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                if Path::new("target").is_dir() {
                    PathBuf::from("target/mesh-venv")
                } else {
                    std::env::temp_dir().join("throughcare-mesh-venv")
                }
            });
        Options { sandbox_dir, venv }
    }
}

/// Runs the MESH demo; the sandbox is stopped before it returns, and on Ctrl-C.
pub async fn run(options: &Options) -> anyhow::Result<()> {
    if !options.sandbox_dir.join("start.sh").is_file() {
        return Err(SandboxMissing(options.sandbox_dir.clone()).into());
    }
    tokio::select! {
        result = demo(options) => result,
        _ = tokio::signal::ctrl_c() => Err(anyhow!("interrupted; the MESH sandbox is stopped")),
    }
}

async fn demo(options: &Options) -> anyhow::Result<()> {
    println!(
        "Throughcare demo over MESH: a release summary from HMP Bristol healthcare (Y02307) \
         reaching GP practice {PRACTICE_ODS} as an ITK3 Transfer of Care message."
    );
    step(
        1,
        "Starting NHS Digital's MESH sandbox (its start.sh, MIT) on a free loopback port.",
    );
    println!(
        "      venv {} (the first run installs the sandbox from PyPI, about 20 s)",
        options.venv.display()
    );
    let mut sandbox = Sandbox::start(options).await?;
    println!(
        "      {} with mailboxes {GATEWAY_MAILBOX} (the gateway) and {PRACTICE_MAILBOX} (GP practice {PRACTICE_ODS})",
        sandbox.base
    );
    let result = with_sandbox(&sandbox.base).await;
    match &result {
        Ok(()) => {
            step(13, "Stopping the MESH sandbox.");
            sandbox.stop();
            println!("      stopped");
            println!("\nDemo complete.");
        }
        Err(_) => {
            eprintln!("the MESH sandbox's log: {}", sandbox.log.display());
            sandbox.keep_log = true;
        }
    }
    result
}

/// Steps 2 to 12 with the sandbox at `mesh_url`.
async fn with_sandbox(mesh_url: &str) -> anyhow::Result<()> {
    let dir = tempfile::tempdir().context("creating a temporary folder")?;
    step(
        2,
        "Generating a development PKI (CA, gateway certificate, sample client certificates).",
    );
    crate::certs::generate(&dir.path().join("certs"))?;

    step(
        3,
        "Starting the gateway with a MESH mailbox ([mesh]: loopback sandbox, inbox polled every second).",
    );
    let mut settings = settings_in(dir.path());
    let mut mesh = MeshSettings::new(mesh_url, GATEWAY_MAILBOX);
    // Inline secrets are accepted for a loopback sandbox only; in production they come from
    // files or THROUGHCARE__MESH__PASSWORD / THROUGHCARE__MESH__SHARED_KEY.
    mesh.password = Some(Secret::new(SANDBOX_PASSWORD));
    mesh.shared_key = Some(Secret::new(SANDBOX_SHARED_KEY));
    mesh.poll_interval_secs = 1;
    mesh.timeout_secs = 30;
    settings.mesh = Some(mesh);
    let gateway = Gateway::start(settings.clone()).await?;
    println!(
        "      listening at {}; MESH mailbox {GATEWAY_MAILBOX} at {mesh_url}",
        gateway.base
    );

    let practice = MeshClient::from_settings(&practice_settings(mesh_url))?;
    let (gp_system, responder) = GpSystem::spawn(practice);
    let result = exchange(dir.path(), &gateway.base, &gp_system).await;
    drop(gp_system);
    let _ = responder.await;
    gateway.stop().await?;
    result?;
    verify_audit(12, &settings).await
}

/// The practice's mailbox settings, as its clinical system would have them.
fn practice_settings(mesh_url: &str) -> MeshSettings {
    let mut settings = MeshSettings::new(mesh_url, PRACTICE_MAILBOX);
    settings.password = Some(Secret::new(SANDBOX_PASSWORD));
    settings.shared_key = Some(Secret::new(SANDBOX_SHARED_KEY));
    settings.timeout_secs = 30;
    settings
}

/// Steps 4 to 11: the release sent, and the practice's acknowledgements moving the Task.
async fn exchange(dir: &Path, base: &str, gp: &mpsc::Sender<Request>) -> anyhow::Result<()> {
    let (http, prison) = sample_client(dir, base, "prison")?;
    step(
        4,
        "The prison gets an access token: a signed ES384 assertion, over mutual TLS.",
    );
    let token = prison.token().await?;
    println!(
        "      token issued ({} characters, valid 5 minutes)",
        token.len()
    );

    step(
        5,
        "The ICB registers GP practice A99001 as a MESH endpoint (its mailbox, ITK3 eDischarge) and the drug service as a push endpoint.",
    );
    let (icb_http, icb) = sample_client(dir, base, "icb")?;
    let icb_token = icb.token().await?;
    let (drug_url, drug_inbox) = sample_recipient().await?;
    for (ods, body) in [
        (
            PRACTICE_ODS,
            json!({"kind": "mesh", "mailbox": PRACTICE_MAILBOX, "profile": "itk-edischarge-stu3"}),
        ),
        ("X99001", json!({"url": drug_url, "profile": "uk-core-r4"})),
    ] {
        let response = icb_http
            .put(format!("{base}/admin/endpoints/{ods}"))
            .bearer_auth(&icb_token)
            .json(&body)
            .send()
            .await?;
        let status = response.status();
        println!("      {ods} -> {body}: {status}");
        if !status.is_success() {
            anyhow::bail!(
                "the endpoint was not registered: {}",
                response.text().await?
            );
        }
    }

    step(
        6,
        "The prison pushes the release summary (POST /fhir/Bundle).",
    );
    let (_, document_id) = push_document(
        &http,
        base,
        &token,
        release_in_two_weeks(time::OffsetDateTime::now_utc().date()),
    )
    .await?;
    let watch = TaskWatch {
        http: &http,
        token: &token,
        base,
        document_id: &document_id,
    };

    step(
        7,
        "The gateway sends A99001's copy to the practice's mailbox as an ITK3 message (FHIR STU3 XML, workflow TOC_FHIR_IP_DISCH); its Task awaits the acknowledgements.",
    );
    let sent = watch
        .until(PRACTICE_ODS, "sent to MESH", |t| {
            t["status"] == "in-progress"
                && t.pointer("/businessStatus/coding/0/code")
                    == Some(&json!("awaiting-acknowledgement"))
        })
        .await?;
    let drug = watch
        .until("X99001", "delivered to the drug service", |t| {
            t["status"] == "completed"
        })
        .await?;
    show_task(&sent);
    print_task(&drug);
    let pushed = drug_inbox.lock().map(|v| v.len()).unwrap_or_default();
    println!("      (the drug service's copy was pushed over FHIR REST: {pushed} document)");
    let mut history = vec![summary(&sent)];

    step(
        8,
        "The GP system (a built-in responder on mailbox GPPRAC01) reads its MESH inbox.",
    );
    ask(gp, Cue::ReadDischarge).await?;

    step(
        9,
        "The GP system accepts the message: an ITK3 infrastructure acknowledgement, 20013.",
    );
    ask(
        gp,
        Cue::Answer {
            code: "20013",
            ask_for_ack: false,
        },
    )
    .await?;
    let accepted = watch
        .until(PRACTICE_ODS, "accepted by the practice system", |t| {
            t["status"] == "in-progress"
                && t.pointer("/statusReason/text")
                    .and_then(Value::as_str)
                    .is_some_and(|r| r.contains("accepted by the practice system"))
        })
        .await?;
    show_task(&accepted);
    history.push(summary(&accepted));

    step(
        10,
        "The GP system files the document: an ITK3 business acknowledgement, 30001, asking for an infrastructure acknowledgement in return.",
    );
    ask(
        gp,
        Cue::Answer {
            code: "30001",
            ask_for_ack: true,
        },
    )
    .await?;
    let completed = watch
        .until(PRACTICE_ODS, "completed", |t| t["status"] == "completed")
        .await?;
    show_task(&completed);
    history.push(summary(&completed));

    step(
        11,
        "The GP system reads the gateway's infrastructure acknowledgement of its business response.",
    );
    ask(gp, Cue::ReadAcknowledgement).await?;
    println!(
        "      Task/{} to {PRACTICE_ODS}:",
        str_of(&completed, "/id")
    );
    println!("        {}", history.join("\n        → "));
    println!(
        "      completed on the business acknowledgement (ITK 30001) over MESH: {}",
        completed["status"] == "completed"
    );
    Ok(())
}

/// Reads the Tasks of a document until one is as wanted.
struct TaskWatch<'a> {
    http: &'a reqwest::Client,
    token: &'a str,
    base: &'a str,
    document_id: &'a str,
}

impl TaskWatch<'_> {
    /// Waits until the Task owned by `ods` satisfies `wanted`; fails after [`PATIENCE`] with
    /// the Task as it stands.
    async fn until(
        &self,
        ods: &str,
        what: &str,
        wanted: impl Fn(&Value) -> bool,
    ) -> anyhow::Result<Value> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let task = tasks_of(self.http, self.token, self.base, self.document_id)
                .await?
                .into_iter()
                .find(|t| {
                    t.pointer("/owner/identifier/value").and_then(Value::as_str) == Some(ods)
                });
            match task {
                Some(t) if wanted(&t) => return Ok(t),
                Some(t) if Instant::now() > deadline => {
                    print_task(&t);
                    anyhow::bail!(
                        "{ods}'s Task was not {what} in time: {}",
                        str_of(&t, "/statusReason/text")
                    );
                }
                None if Instant::now() > deadline => anyhow::bail!("no Task for {ods}"),
                _ => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }
}

fn str_of<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

/// The Task line and its reason.
fn show_task(t: &Value) {
    print_task(t);
    println!("        reason: {}", str_of(t, "/statusReason/text"));
}

/// `status (business status): reason`, for the Task's history.
fn summary(t: &Value) -> String {
    format!(
        "{} ({}): {}",
        str_of(t, "/status"),
        str_of(t, "/businessStatus/coding/0/code"),
        str_of(t, "/statusReason/text")
    )
}

// ---------------------------------------------------------------------------------------------
// The GP system
// ---------------------------------------------------------------------------------------------

/// What the demo asks of the GP system next.
#[derive(Debug)]
enum Cue {
    /// Wait for the ITK3 message, download it, acknowledge it on MESH, check it and say what
    /// arrived.
    ReadDischarge,
    /// Answer the message with ITK response `code`; `ask_for_ack`: request an infrastructure
    /// acknowledgement of the answer.
    Answer {
        code: &'static str,
        ask_for_ack: bool,
    },
    /// Wait for the gateway's infrastructure acknowledgement of the business response.
    ReadAcknowledgement,
}

type Request = (Cue, oneshot::Sender<anyhow::Result<()>>);

/// Asks the GP system to do `cue` and waits until it has.
async fn ask(gp: &mpsc::Sender<Request>, cue: Cue) -> anyhow::Result<()> {
    let (done, outcome) = oneshot::channel();
    gp.send((cue, done))
        .await
        .map_err(|_| anyhow!("the GP system has stopped"))?;
    outcome
        .await
        .map_err(|_| anyhow!("the GP system has stopped"))?
}

/// The practice's clinical system: its MESH mailbox, and what it has received and sent.
struct GpSystem {
    client: MeshClient,
    /// The ITK3 message received (FHIR JSON).
    message: Option<Value>,
    /// The id of the business response sent asking for an infrastructure acknowledgement.
    awaiting_ack_of: Option<String>,
}

impl GpSystem {
    /// Starts the GP system as a task; it handles cues until the sender is dropped.
    fn spawn(client: MeshClient) -> (mpsc::Sender<Request>, tokio::task::JoinHandle<()>) {
        let (cues, mut inbox) = mpsc::channel::<Request>(1);
        let task = tokio::spawn(async move {
            let mut gp = GpSystem {
                client,
                message: None,
                awaiting_ack_of: None,
            };
            while let Some((cue, done)) = inbox.recv().await {
                let outcome = match cue {
                    Cue::ReadDischarge => gp.read_discharge().await,
                    Cue::Answer { code, ask_for_ack } => gp.answer(code, ask_for_ack).await,
                    Cue::ReadAcknowledgement => gp.read_acknowledgement().await,
                };
                let _ = done.send(outcome);
            }
        });
        (cues, task)
    }

    /// The next message in the practice's inbox, downloaded and acknowledged on MESH.
    async fn next_message(&self) -> anyhow::Result<InboxMessage> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(id) = self.client.list_inbox().await?.first() {
                let message = self.client.download(id).await?;
                self.client.acknowledge(id).await?;
                return Ok(message);
            }
            if Instant::now() > deadline {
                anyhow::bail!("nothing arrived in mailbox {PRACTICE_MAILBOX}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn read_discharge(&mut self) -> anyhow::Result<()> {
        let m = self.next_message().await?;
        println!(
            "      MESH message {} from mailbox {}, workflow {}, {} ({} bytes{})",
            m.message_id,
            m.from.as_deref().unwrap_or("?"),
            m.workflow_id.as_deref().unwrap_or("?"),
            m.content_type.as_deref().unwrap_or("no content type"),
            m.body.len(),
            if m.compressed {
                ", sent gzip-compressed"
            } else {
                ""
            },
        );
        if m.workflow_id.as_deref() != Some(WORKFLOW_IP_DISCHARGE) {
            anyhow::bail!("the message is not on workflow {WORKFLOW_IP_DISCHARGE}");
        }
        let message = from_xml(&m.body, FhirVersion::Stu3)
            .context("the GP system cannot read the message as FHIR STU3 XML")?;
        let header = &message["entry"][0]["resource"];
        let handling = |key: &str| {
            header
                .pointer("/extension/0/extension")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .find(|e| e["url"] == key)
                .cloned()
                .unwrap_or(Value::Null)
        };
        let kinds: Vec<&str> = entries(&message)
            .filter_map(|r| r["resourceType"].as_str())
            .collect();
        // The header Organizations by reference: who the message is from and for.
        let organisation = |reference: &str| {
            message["entry"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|e| e["fullUrl"] == header.pointer(reference).cloned().unwrap_or_default())
                .map(|e| str_of(&e["resource"], "/identifier/0/value").to_string())
                .unwrap_or_default()
        };
        println!(
            "      an ITK3 message: event {} ({}), {} entries ({}), from {} (mailbox {}) for {}",
            str_of(header, "/event/code"),
            str_of(header, "/event/display"),
            kinds.len(),
            kinds.join(", "),
            organisation("/sender/reference"),
            str_of(header, "/source/endpoint"),
            organisation("/receiver/reference"),
        );
        println!(
            "      acknowledgements requested: infrastructure {}, business {}; recipient type {}",
            handling("InfAckRequested")["valueBoolean"],
            handling("BusAckRequested")["valueBoolean"],
            str_of(&handling("RecipientType"), "/valueCoding/code"),
        );
        if let Some(document) = entries(&message).find(|r| r["resourceType"] == "Bundle") {
            let resources: Vec<&Value> = entries(document).collect();
            let composition = resources
                .iter()
                .find(|r| r["resourceType"] == "Composition")
                .copied()
                .unwrap_or(&Value::Null);
            println!(
                "      the document: \"{}\", {} resources, {} sections",
                str_of(composition, "/title"),
                resources.len(),
                composition["section"].as_array().map_or(0, Vec::len),
            );
        }
        // What the practice must never see: custody data, and the methadone withheld until the
        // patient consents.
        let text = String::from_utf8_lossy(&m.body);
        let custody = ["A1234BC", "HB2-3-014", "custody-cell-location"]
            .iter()
            .any(|s| text.contains(s));
        let methadone = text.contains("322696004") || text.to_lowercase().contains("methadone");
        println!(
            "      in the bytes: prison number or cell location: {}; methadone (withheld without the patient's consent): {}",
            if custody { "PRESENT" } else { "none" },
            if methadone { "PRESENT" } else { "none" },
        );
        if custody || methadone {
            anyhow::bail!("custody-only or withheld content reached the GP practice");
        }
        self.message = Some(message);
        Ok(())
    }

    async fn answer(&mut self, code: &'static str, ask_for_ack: bool) -> anyhow::Result<()> {
        let message = self
            .message
            .as_ref()
            .context("the GP system has no message to answer")?;
        let header = &message["entry"][0]["resource"];
        let sender_reference = header
            .pointer("/extension/0/extension")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .find(|e| e["url"] == "SenderReference")
            .and_then(|e| e["valueString"].as_str())
            .map(str::to_string);
        let response_code =
            response_code(code).with_context(|| format!("{code} is not an ITK response code"))?;
        let id = uuid::Uuid::new_v4().to_string();
        let mut response = build_response(&ResponseParams {
            message_id: id.clone(),
            answering: header["id"].as_str().map(str::to_string),
            code: response_code,
            sender: HeaderOrganisation {
                ods: PRACTICE_ODS.into(),
                name: "Sample GP practice".into(),
            },
            sender_mailbox: PRACTICE_MAILBOX.into(),
            receiver: None,
            sender_reference,
            timestamp: crate::clock::rfc3339(time::OffsetDateTime::now_utc()),
            diagnostics: None,
        });
        if ask_for_ack {
            for key in response
                .pointer_mut("/entry/0/resource/extension/0/extension")
                .and_then(Value::as_array_mut)
                .into_iter()
                .flatten()
            {
                if key["url"] == "InfAckRequested" {
                    key["valueBoolean"] = json!(true);
                }
            }
            self.awaiting_ack_of = Some(id.clone());
        }
        let xml = to_xml(&response, FhirVersion::Stu3)?;
        let sent = self
            .client
            .send(&OutboundMessage {
                content_type: Some("application/fhir+xml"),
                ..OutboundMessage::new(GATEWAY_MAILBOX, WORKFLOW_IP_DISCHARGE_ACK, xml.as_bytes())
            })
            .await?;
        println!(
            "      sent ITK {code} \"{}\" ({} response {id}{}) to {GATEWAY_MAILBOX} on {WORKFLOW_IP_DISCHARGE_ACK}: MESH message {}, {} bytes",
            response_code.display,
            response_code.kind().as_str(),
            if ask_for_ack {
                ", infrastructure acknowledgement requested"
            } else {
                ""
            },
            sent.message_id,
            xml.len(),
        );
        Ok(())
    }

    async fn read_acknowledgement(&mut self) -> anyhow::Result<()> {
        let expected = self
            .awaiting_ack_of
            .clone()
            .context("the GP system asked for no acknowledgement")?;
        let m = self.next_message().await?;
        let message = from_xml(&m.body, FhirVersion::Stu3)
            .context("the gateway's answer is not FHIR STU3 XML")?;
        let response = parse_response(&message)
            .map_err(|e| anyhow!("the gateway's answer is not an ITK3 response: {e}"))?;
        println!(
            "      MESH message {} from {} on {}: ITK {} \"{}\" ({} response), answering {}",
            m.message_id,
            m.from.as_deref().unwrap_or("?"),
            m.workflow_id.as_deref().unwrap_or("?"),
            response.code,
            response.display,
            response.kind.as_str(),
            response.answers_message_id,
        );
        if response.code != "20013" || response.answers_message_id != expected {
            anyhow::bail!("the gateway did not acknowledge the business response {expected}");
        }
        Ok(())
    }
}

/// The resources of a Bundle's entries.
fn entries(bundle: &Value) -> impl Iterator<Item = &Value> {
    bundle["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| &e["resource"])
}

// ---------------------------------------------------------------------------------------------
// The sandbox
// ---------------------------------------------------------------------------------------------

/// A sandbox started by `start.sh`; stopped when dropped.
struct Sandbox {
    base: String,
    pid_file: PathBuf,
    store: PathBuf,
    log: PathBuf,
    /// Keep the log (the demo failed).
    keep_log: bool,
}

impl Sandbox {
    /// `start.sh VENV PORT` with the two mailboxes, on a free port. Starts on one venv are
    /// serialised (a lock file in the venv; the MESH tests take it too), so that two never
    /// install it at once.
    async fn start(options: &Options) -> anyhow::Result<Sandbox> {
        let options = options.clone();
        tokio::task::spawn_blocking(move || Sandbox::start_blocking(&options))
            .await
            .context("starting the MESH sandbox")?
    }

    fn start_blocking(options: &Options) -> anyhow::Result<Sandbox> {
        std::fs::create_dir_all(&options.venv)
            .with_context(|| format!("creating {}", options.venv.display()))?;
        let venv = options.venv.canonicalize()?;
        let lock = std::fs::File::create(venv.join(".start.lock"))?;
        lock.lock()?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let output = Command::new(options.sandbox_dir.join("start.sh"))
            .arg(&venv)
            .arg(port.to_string())
            .env(
                "MESH_EXTRA_MAILBOXES",
                format!("{GATEWAY_MAILBOX} {PRACTICE_MAILBOX}"),
            )
            .env("MESH_SHARED_KEY", SANDBOX_SHARED_KEY)
            .env_remove("MESH_TLS")
            .env_remove("MESH_STORE_DIR")
            .env_remove("MESH_AUTH_MODE")
            .env_remove("MESH_HOST")
            .stdin(Stdio::null())
            .output()
            .context("running the MESH sandbox's start.sh")?;
        drop(lock);
        let mut sandbox = Sandbox {
            base: String::from_utf8_lossy(&output.stdout).trim().to_string(),
            pid_file: venv.join(format!("mesh-sandbox-{port}.pid")),
            store: venv.join(format!("mesh-store-{port}")),
            log: venv.join(format!("mesh-sandbox-{port}.log")),
            keep_log: true,
        };
        if !output.status.success() || !sandbox.base.starts_with("http://") {
            anyhow::bail!(
                "the MESH sandbox did not start ({}; it needs python3 with venv, and PyPI the first time):\n{}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim_end()
            );
        }
        sandbox.keep_log = false;
        Ok(sandbox)
    }

    /// `kill $(cat VENV/mesh-sandbox-PORT.pid)`, waiting until it has gone; then its message
    /// store is removed (and its log, unless the demo failed).
    fn stop(&mut self) {
        let Ok(pid) = std::fs::read_to_string(&self.pid_file) else {
            return;
        };
        let pid = pid.trim().to_string();
        if pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
            return;
        }
        let _ = Command::new("kill")
            .arg(&pid)
            .stderr(Stdio::null())
            .status();
        for _ in 0..50 {
            let alive = Command::new("kill")
                .args(["-0", &pid])
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if !alive {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = std::fs::remove_file(&self.pid_file);
        let _ = std::fs::remove_dir_all(&self.store);
        if !self.keep_log {
            let _ = std::fs::remove_file(&self.log);
        }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn without_the_sandbox_the_mesh_demo_says_what_it_needs() {
        let options = Options {
            sandbox_dir: PathBuf::from("/nonexistent/mesh-sandbox"),
            venv: std::env::temp_dir().join("unused"),
        };
        let err = run(&options).await.unwrap_err();
        assert!(err.is::<SandboxMissing>());
        assert!(err.to_string().starts_with(
            "demo --mesh needs NHS Digital's MESH sandbox (mesh-sandbox, MIT): give its folder with --sandbox DIR or MESH_SANDBOX_DIR; the plain demo needs nothing"
        ));
    }
}
