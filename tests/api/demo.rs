//! `throughcare demo` runs end to end (the README's first command), and `demo --mesh` over NHS
//! Digital's MESH sandbox when the sandbox is here.

use std::process::{Command, Output};

use crate::mesh_delivery::harness;

#[tokio::test]
async fn the_demo_runs_a_release_end_to_end() {
    throughcare::demo::run()
        .await
        .expect("the demo completes every step");
}

/// The binary as a user runs it, from the repository root.
fn demo_mesh(sandbox: &std::path::Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_throughcare"))
        .args(["demo", "--mesh", "--sandbox"])
        .arg(sandbox)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("MESH_SANDBOX_VENV", harness::venv())
        .output()
        .expect("running throughcare demo --mesh")
}

/// `demo --mesh`: the release reaches the sandbox GP mailbox as an ITK3 message and the Task
/// completes on the practice's business acknowledgement. Skipped loudly without the sandbox,
/// failed under `CI=true`.
#[test]
fn the_mesh_demo_completes_the_task_on_the_business_acknowledgement() {
    let Some(source) = harness::sandbox_source() else {
        return;
    };
    let output = demo_mesh(&source);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    for wanted in [
        "event ITK003D",
        "methadone (withheld without the patient's consent): none",
        "in-progress (awaiting-acknowledgement): sent as ",
        "→ in-progress (awaiting-acknowledgement): accepted by the practice system (ITK 20013)",
        "→ completed (delivered): ITK 30001",
        "ITK 20013 \"Success\" (infrastructure response), answering",
        "chain intact",
        "[13] Stopping the MESH sandbox.",
        "Demo complete.",
    ] {
        assert!(stdout.contains(wanted), "{wanted:?} not in:\n{stdout}");
    }
}

/// Without the sandbox, `demo --mesh` says what it needs and exits with code 3.
#[test]
fn the_mesh_demo_without_the_sandbox_says_what_it_needs() {
    let empty = tempfile::tempdir().unwrap();
    let output = demo_mesh(empty.path());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains(
            "demo --mesh needs NHS Digital's MESH sandbox (mesh-sandbox, MIT): give its folder \
             with --sandbox DIR or MESH_SANDBOX_DIR; the plain demo needs nothing"
        ),
        "{stderr}"
    );
}
