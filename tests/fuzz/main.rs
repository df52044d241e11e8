//! Fuzz targets on the stable toolchain (issue 11): one per parser that reads what a client
//! sends, driven by proptest with structure-aware generators (JSON trees mutated from real
//! documents, FHIRPath from its grammar, signed client assertions). The property of every
//! target: no panic, and every refusal is the parser's typed error.
//!
//! `cargo test` runs each target for a few cases (`PROPTEST_CASES`, default 64), so that CI
//! keeps them compiling and passing in seconds; `scripts/fuzz.sh` runs each for a bounded time
//! (`FUZZ_SECONDS`), in batches of `PROPTEST_CASES`, and prints the cases run per target. A
//! crash found is fixed in the module concerned and gets a regression test in [`regressions`].
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod arb;
mod consent;
mod fhirpath;
mod intake;
mod regressions;
mod token;
mod translate;
mod xml;

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use proptest::strategy::Strategy;
use proptest::test_runner::{Config, TestCaseResult, TestRunner};

/// Cases per batch: `PROPTEST_CASES`, 64 by default.
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64)
}

/// How long a target runs (`FUZZ_SECONDS`): unset, one batch.
fn budget() -> Option<Duration> {
    std::env::var("FUZZ_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map(Duration::from_secs)
}

/// Runs `test` on values of `strategy`: one batch of [`cases`], or batches until the
/// [`budget`] is spent. A failing case is shrunk and reported with the target's name.
pub fn fuzz<S>(name: &str, strategy: S, test: impl Fn(S::Value) -> TestCaseResult)
where
    S: Strategy,
    S::Value: std::fmt::Debug,
{
    let started = Instant::now();
    let batch = cases();
    let mut total: u64 = 0;
    loop {
        let mut runner = TestRunner::new(Config {
            cases: batch,
            failure_persistence: None,
            max_shrink_iters: 4096,
            ..Config::default()
        });
        if let Err(failure) = runner.run(&strategy, &test) {
            panic!("fuzz target {name} failed after {total} cases: {failure}");
        }
        total += u64::from(batch);
        match budget() {
            Some(budget) if started.elapsed() < budget => continue,
            _ => break,
        }
    }
    let reached: Vec<String> = REACHED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .iter()
        .filter(|((target, _), _)| target == name)
        .map(|((_, stage), n)| format!("{stage} {n}"))
        .collect();
    eprintln!(
        "fuzz {name}: {total} cases in {:.1} s (reached: {})",
        started.elapsed().as_secs_f64(),
        reached.join(", ")
    );
}

/// How many cases reached each stage of each target (printed with the target's totals), to see
/// that the generators get past the first refusal.
static REACHED: Mutex<BTreeMap<(String, &'static str), u64>> = Mutex::new(BTreeMap::new());

/// Counts one case of `target` reaching `stage`.
pub fn reached(target: &str, stage: &'static str) {
    *REACHED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .entry((target.to_string(), stage))
        .or_default() += 1;
}

/// `<CARGO_MANIFEST_DIR>/<path>`.
pub fn repo(path: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// The settings the gateway starts with from the example configuration's folders.
pub fn settings() -> throughcare::config::Settings {
    let mut settings = throughcare::config::Settings::default();
    settings.resolve_paths(std::path::Path::new(env!("CARGO_MANIFEST_DIR")));
    settings
}
