//! The MESH sandbox for these tests: NHS Digital's `mesh-sandbox`, started through
//! `../shared/tools/mesh-sandbox/start.sh VENV PORT` on a free loopback port.
//!
//! - The venv is `target/mesh-venv` (beside `CARGO_TARGET_TMPDIR`), kept between runs: `start.sh`
//!   creates it and pip-installs the pinned dependencies the first time (about 10-20 s, needs
//!   PyPI), later starts take about 2 s.
//! - One sandbox serves the whole test binary ([`shared`], started once); each test uses its own
//!   mailboxes (`MESH_EXTRA_MAILBOXES`) so tests running at once never read each other's inbox.
//!   Tests that stop a sandbox or change its data start their own ([`Sandbox::start`]), stopped
//!   when dropped. Starts are serialised (one pip install, never two at once on the venv).
//! - The shared sandbox outlives no test run: a watchdog shell started with it kills the
//!   sandbox's own pid (read from `start.sh`'s pid file) once this test process has gone.
//! - Without `../shared/tools/mesh-sandbox` (or `MESH_SANDBOX_DIR`) the tests are skipped with a
//!   loud message, except under `CI=true`, where they fail.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use throughcare::config::{MeshSettings, Secret};
use throughcare::transport::mesh::MeshClient;

/// The sandbox's shared key (its `start.sh` default).
pub const SHARED_KEY: &str = "TestKey";
/// The password of every sandbox mailbox.
pub const PASSWORD: &str = "password";
/// The mailboxes the shared sandbox adds, one recipient per test.
pub const MAILBOXES: &[&str] = &[
    "PRISON01", "GPRECV01", "GPRECV02", "GPRECV03", "GPRECV04", "GPRECV05", "GPRECV06", "GPRECV07",
    "GPRECV08",
];

static STARTS: Mutex<()> = Mutex::new(());

/// Where the sandbox source is, if it is here. Under `CI=true` its absence fails the test.
pub fn sandbox_source() -> Option<PathBuf> {
    let dir = std::env::var_os("MESH_SANDBOX_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/tools/mesh-sandbox")
        });
    if dir.join("start.sh").is_file() {
        return Some(dir);
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!(
            "CI=true and the MESH sandbox is absent at {}: the MESH tests cannot run",
            dir.display()
        );
    }
    eprintln!(
        "\n##############################################################################\n\
         # WARNING: the MESH sandbox is absent ({}):\n\
         # this MESH test is SKIPPED. Set MESH_SANDBOX_DIR or check out ../shared.\n\
         ##############################################################################\n",
        dir.display()
    );
    None
}

/// The sandbox the whole binary shares, started at first use; `None` (skip) when absent.
pub fn shared() -> Option<&'static Sandbox> {
    static SHARED: OnceLock<Option<Sandbox>> = OnceLock::new();
    SHARED
        .get_or_init(|| {
            let source = sandbox_source()?;
            let sandbox =
                Sandbox::start(&source, &[("MESH_EXTRA_MAILBOXES", &MAILBOXES.join(" "))]);
            sandbox.watch_parent();
            Some(sandbox)
        })
        .as_ref()
}

/// The sandbox's venv (`target/mesh-venv`), which `demo --mesh` in the tests shares.
pub fn venv() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("../mesh-venv")
}

/// The CA of the sandbox's certificate under `MESH_TLS=1`: the development CA of
/// `certs-example/`. (`start.sh` makes a self-signed certificate only when the venv has none;
/// it is marked CA:TRUE, which rustls refuses as a server certificate, so the harness puts the
/// development server certificate, for `localhost` and `127.0.0.1`, and its chain in its
/// place.)
pub fn tls_ca() -> PathBuf {
    certs_example().join("ca.crt")
}

fn certs_example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("certs-example")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// One running sandbox.
pub struct Sandbox {
    pub base: String,
    source: PathBuf,
    port: u16,
    env: Vec<(String, String)>,
}

impl Sandbox {
    /// Starts the sandbox in `source` (its `start.sh`) on a free port with `env` added.
    pub fn start(source: &Path, env: &[(&str, &str)]) -> Sandbox {
        let mut sandbox = Sandbox {
            base: String::new(),
            source: source.to_path_buf(),
            port: free_port(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        sandbox.base = sandbox.run_start();
        sandbox
    }

    fn run_start(&self) -> String {
        let _one_at_a_time = STARTS.lock().unwrap_or_else(|e| e.into_inner());
        let venv = venv();
        std::fs::create_dir_all(&venv).unwrap();
        // Starts on the venv are serialised across processes too: `demo --mesh` (run by
        // tests/api/demo.rs) takes the same lock, so two never install into it at once.
        let lock = std::fs::File::create(venv.join(".start.lock")).unwrap();
        lock.lock().unwrap();
        if self.env.iter().any(|(k, v)| k == "MESH_TLS" && v == "1") {
            // The chain (server, then CA): uvicorn serves it, and start.sh's health check
            // trusts the file as its CA bundle.
            let read = |name: &str| std::fs::read_to_string(certs_example().join(name)).unwrap();
            let chain = format!("{}{}", read("server.crt"), read("ca.crt"));
            std::fs::write(venv.join("mesh-sandbox-cert.pem"), chain).unwrap();
            std::fs::write(venv.join("mesh-sandbox-key.pem"), read("server.key")).unwrap();
        }
        let began = Instant::now();
        let output = Command::new(self.source.join("start.sh"))
            .arg(&venv)
            .arg(self.port.to_string())
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .output()
            .expect("running the sandbox's start.sh");
        let base = String::from_utf8_lossy(&output.stdout).trim().to_string();
        if !output.status.success() || !base.starts_with("http") {
            panic!(
                "the MESH sandbox did not start ({}):\n{}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            );
        }
        eprintln!(
            "mesh sandbox up at {base} in {:.1} s",
            began.elapsed().as_secs_f64()
        );
        base
    }

    fn pid_file(&self) -> PathBuf {
        venv().join(format!("mesh-sandbox-{}.pid", self.port))
    }

    /// Stops the sandbox: `kill $(cat VENV/mesh-sandbox-PORT.pid)`.
    pub fn stop(&self) {
        let Ok(pid) = std::fs::read_to_string(self.pid_file()) else {
            return;
        };
        let pid = pid.trim();
        if pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
            return;
        }
        let _ = Command::new("kill").arg(pid).status();
        // Wait until it has let go of the port.
        for _ in 0..100 {
            let alive = Command::new("kill")
                .args(["-0", pid])
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if !alive {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let _ = std::fs::remove_file(self.pid_file());
    }

    /// Starts it again on the same port (a fresh, empty message store).
    pub fn restart(&self) {
        let base = self.run_start();
        assert_eq!(base, self.base, "restarted on the same port");
    }

    /// Kills the sandbox when this test process is gone (the shared one is never dropped).
    fn watch_parent(&self) {
        let script = format!(
            "while kill -0 {parent} 2>/dev/null; do sleep 1; done; \
             pid=$(cat '{pidfile}' 2>/dev/null) && \
             ps -p \"$pid\" -o args= | grep -q mesh_sandbox.api && kill \"$pid\"",
            parent = std::process::id(),
            pidfile = self.pid_file().display()
        );
        let _ = Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
    }

    /// Settings for `mailbox` on this sandbox (secrets inline: a loopback sandbox).
    pub fn settings(&self, mailbox: &str) -> MeshSettings {
        let mut settings = MeshSettings::new(&self.base, mailbox);
        settings.password = Some(Secret::new(PASSWORD));
        settings.shared_key = Some(Secret::new(SHARED_KEY));
        settings.timeout_secs = 30;
        settings
    }

    pub fn client(&self, mailbox: &str) -> MeshClient {
        MeshClient::from_settings(&self.settings(mailbox)).expect("a MESH client")
    }

    /// `POST /messageexchange/admin/report` (test-only, no auth): a MESH REPORT in `mailbox`.
    pub async fn inject_report(&self, report: serde_json::Value) -> String {
        let response = admin_http()
            .post(format!("{}/messageexchange/admin/report", self.base))
            .json(&report)
            .send()
            .await
            .expect("the admin endpoint");
        assert!(response.status().is_success(), "{}", response.status());
        let body: serde_json::Value = response.json().await.unwrap();
        body["message_id"].as_str().unwrap().to_string()
    }

    /// What the sandbox stored for a message (`GET /messageexchange/admin/message/{id}`).
    pub async fn stored(&self, message_id: &str) -> serde_json::Value {
        admin_http()
            .get(format!(
                "{}/messageexchange/admin/message/{message_id}",
                self.base
            ))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

/// A plain client for the sandbox's test-only admin endpoints.
fn admin_http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .unwrap()
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A copy of the sandbox source in a temporary folder, for tests that change its data
/// (`src/mesh_sandbox/store/data/*.jsonl`); `../shared` is never edited.
pub struct SandboxCopy {
    pub dir: tempfile::TempDir,
}

impl SandboxCopy {
    pub fn of(source: &Path) -> SandboxCopy {
        let dir = tempfile::tempdir().unwrap();
        let status = Command::new("cp")
            .arg("-R")
            .arg(format!("{}/.", source.display()))
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(status.success(), "copying the sandbox");
        SandboxCopy { dir }
    }

    /// Appends a JSON line to `src/mesh_sandbox/store/data/{file}` (the shipped files may end
    /// without a newline).
    pub fn add_line(&self, file: &str, line: &serde_json::Value) {
        let path = self
            .dir
            .path()
            .join("src/mesh_sandbox/store/data")
            .join(file);
        let mut text = std::fs::read_to_string(&path).unwrap();
        if !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(&line.to_string());
        text.push('\n');
        std::fs::write(&path, text).unwrap();
    }
}
