//! Holds `docs/clinical-safety/hazard-log.md` to the code: every test it names must exist.

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// `file::test_name` references in the log's tests column.
fn named_tests(log: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in log.lines().filter(|l| l.starts_with("| H")) {
        let Some(tests) = line.split('|').nth(6) else {
            continue;
        };
        for part in tests.split('`').skip(1).step_by(2) {
            if part.contains("::") {
                out.push(part.to_string());
            }
        }
    }
    out
}

#[test]
fn hazard_log_names_only_tests_that_exist() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let log = std::fs::read_to_string(root.join("docs/clinical-safety/hazard-log.md")).unwrap();
    let names = named_tests(&log);
    assert!(
        names.len() >= 10,
        "the hazard log names too few tests: {names:?}"
    );
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    rust_files(&root.join("tests"), &mut files);
    let sources: Vec<(PathBuf, String)> = files
        .into_iter()
        .filter_map(|f| std::fs::read_to_string(&f).ok().map(|s| (f, s)))
        .collect();
    let mut missing = Vec::new();
    for name in &names {
        let (module, test) = name.rsplit_once("::").unwrap();
        // `x::tests::name` lives in `x.rs` (an inline test module) or in `x/tests.rs`.
        let module = module.strip_suffix("::tests").unwrap_or(module);
        let module_file = module.rsplit("::").next().unwrap();
        let found = sources.iter().any(|(path, text)| {
            let in_module = path.file_stem().is_some_and(|s| s == module_file)
                || path
                    .parent()
                    .and_then(|p| p.file_name())
                    .is_some_and(|d| d == module_file);
            in_module && (text.contains(&format!("fn {test}(")))
        });
        if !found {
            missing.push(name.clone());
        }
    }
    assert!(
        missing.is_empty(),
        "tests named in the hazard log do not exist: {missing:?}"
    );
}

#[test]
fn hazard_log_covers_the_hazards_the_issue_names() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let log = std::fs::read_to_string(root.join("docs/clinical-safety/hazard-log.md")).unwrap();
    for hazard in [
        "Custody data reaches a GP",
        "A withdrawn consent is ignored",
        "Content is shared with no data-sharing agreement",
        "The wrong patient is matched",
        "A sensitive class leaks because it was not labelled",
        "Agreement widened by an ICB",
        "Recipient endpoint redirected to an attacker",
        "Consent choice silently ignored",
        "A document routes custody data to a non-prison by claiming it is a prison",
        "Look-alike ODS code diverts a record",
        "Consent recorded by a prison that does not hold the patient",
    ] {
        assert!(log.contains(hazard), "missing hazard: {hazard}");
    }
}
