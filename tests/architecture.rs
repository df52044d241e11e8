//! The house rules, read from the source of `src/`: the web framework stays at the edge, handlers
//! neither call the store nor retype access rules, nothing below the edge imports it, the
//! top-level module graph has no circle and runs only downwards through the layers, and exactly
//! one function (`recipient::copy_for`) makes a recipient's copy of a document.
//!
//! The scan is plain std Rust. Comments and the contents of string and character literals are
//! blanked before any rule looks at the code, so prose that names a module or a crate is not a
//! dependency; line numbers are kept. "Test code" is every file named `tests.rs` or
//! `hazard_log_tests.rs` and the item following each `#[cfg(test)]` (a `mod tests;`
//! declaration, or a `mod tests { .. }` block to its closing brace): only that item, so the code
//! after `#[cfg(test)] mod tests;` near the top of a file (as in `src/policy/mod.rs`) is still
//! read. The rules about imports and about who makes a copy skip test code (test modules may use
//! the demo's fixtures); the others read everything.
//!
//! Known blind spots: `super::` paths (none leave a top-level module outside test code today),
//! and a call made through a renamed or stored function value.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layers of `scripts/import-graph.py`, from the edge (high) down to the pure stages and
/// values (low). An import may stay within its layer or go down, never up. Keep the two tables
/// the same.
const LAYERS: &[(u8, &[&str])] = &[
    (4, &["main", "cli", "demo", "startup", "api"]),
    (
        3,
        &[
            "app",
            "intake",
            "pipeline",
            "sharing",
            "pull",
            "consents",
            "delivery",
            "recipient",
            "admin",
            "decisions",
            "custody",
            "preview",
            "error",
        ],
    ),
    (
        2,
        &[
            "audit",
            "store",
            "auth",
            "certs",
            "client",
            "tls",
            "metrics",
            "transport",
        ],
    ),
    (
        1,
        &[
            "policy",
            "translate",
            "validate",
            "routing",
            "document",
            "directory",
            "medicines",
            "itk",
        ],
    ),
    (
        0,
        &[
            "domain",
            "fhir",
            "config",
            "clock",
            "codes",
            "chain",
            "lib",
            "hazard_log_tests",
        ],
    ),
];

/// The top-level modules that make up the edge (HTTP, the CLI, the demo, start-up).
const EDGE: &[&str] = &["api", "startup", "main", "cli", "demo"];

// ---------------------------------------------------------------------------------------------
// The rules
// ---------------------------------------------------------------------------------------------

/// (a) The web framework stays at the edge: no code outside `src/api/**`, `src/startup.rs`,
/// `src/main.rs`, `src/cli.rs` and `src/demo.rs` names an actix crate (`actix_web`,
/// `actix_tls`, `actix_http`, `actix_rt`, ...). Prose in comments may.
#[test]
fn only_the_edge_mentions_actix() {
    let mut offences = Vec::new();
    for file in sources().iter().filter(|f| !f.is_edge()) {
        for (n, line) in file.code.lines().enumerate() {
            if mentions_actix(line) {
                offences.push(format!("{}:{}: {}", file.rel, n + 1, file.raw_line(n + 1)));
            }
        }
    }
    assert_none(
        "outside the edge, these lines name actix (the web framework belongs to src/api, \
         src/startup.rs, src/main.rs, src/cli.rs and src/demo.rs)",
        offences,
    );
}

/// (b) Handlers go through the use cases: no file under `src/api/` touches the store (field
/// access `.store.`, `.store)`, `.store,`, or the `Store` trait). Value types such as
/// `crate::store::DeliveryFilter` are allowed.
#[test]
fn handlers_do_not_call_the_store() {
    let patterns = [
        ".store.",
        ".store)",
        ".store,",
        "dyn Store",
        "Store as _",
        "store::Store",
    ];
    let mut offences = Vec::new();
    for file in sources().iter().filter(|f| f.rel.starts_with("src/api/")) {
        let code = Normalized::of(&file.code);
        for pattern in patterns {
            for line in code.find(pattern) {
                offences.push(format!("{}:{line}: `{pattern}`", file.rel));
            }
        }
    }
    assert_none(
        "handlers under src/api/ reach the store directly (call a use case instead)",
        offences,
    );
}

/// (c) Nothing below the edge depends on it: no non-edge module uses `crate::api`,
/// `crate::startup`, `crate::cli` or `crate::demo` outside test code (tests may use the demo's
/// fixtures).
#[test]
fn nothing_below_the_edge_imports_the_edge() {
    let mut offences = Vec::new();
    for file in sources()
        .iter()
        .filter(|f| !f.is_edge() && !f.is_test_file())
    {
        for (target, line) in crate_references(&file.production) {
            if ["api", "startup", "cli", "demo"].contains(&target.as_str()) {
                offences.push(format!("{}:{line}: uses crate::{target}", file.rel));
            }
        }
    }
    assert_none(
        "modules below the edge import the edge (api, startup, cli, demo)",
        offences,
    );
}

/// (d) Access rules are written once, in the route table: no file under `src/api/` other than
/// `routes.rs` and `principal.rs` calls `check_access(` or names a `Role::`.
#[test]
fn handlers_do_not_retype_access_rules() {
    let allowed = ["src/api/routes.rs", "src/api/principal.rs"];
    let mut offences = Vec::new();
    for file in sources()
        .iter()
        .filter(|f| f.rel.starts_with("src/api/") && !allowed.contains(&f.rel.as_str()))
    {
        let code = Normalized::of(&file.code);
        for pattern in ["check_access(", "Role::"] {
            for line in code.find(pattern) {
                offences.push(format!(
                    "{}:{line}: `{pattern}` in `{}`",
                    file.rel,
                    file.raw_line(line)
                ));
            }
        }
    }
    assert_none(
        "handlers retype access rules (roles belong to src/api/routes.rs and src/api/principal.rs)",
        offences,
    );
}

/// (e) The top-level module graph (`crate::x` in `use` lines, `use crate::{..}` groups and inline
/// paths, outside test code) has no circle.
#[test]
fn the_module_graph_has_no_circle() {
    let graph = module_graph();
    let circles = strongly_connected(&graph);
    let report: Vec<String> = circles
        .iter()
        .map(|members| {
            let inside: Vec<String> = graph
                .iter()
                .filter(|((a, b), _)| members.contains(a) && members.contains(b))
                .map(|((a, b), at)| format!("{a} -> {b} ({at})"))
                .collect();
            format!(
                "circle {{{}}}, e.g. {}; its edges: {}",
                members.iter().cloned().collect::<Vec<_>>().join(", "),
                shortest_cycle(&graph, members).join(" -> "),
                inside.join("; ")
            )
        })
        .collect();
    assert_none("the top-level module graph has circles", report);
}

/// (e) Imports run down the layers of `scripts/import-graph.py`, never from a lower layer up to
/// a higher one; and every top-level module has a layer (else the rule would skip it).
#[test]
fn no_import_runs_from_a_lower_layer_up_to_a_higher_one() {
    let modules = top_level_modules();
    let mut offences: Vec<String> = modules
        .iter()
        .filter(|m| layer_of(m).is_none())
        .map(|m| {
            format!(
                "module {m} has no layer (add it to LAYERS here and in scripts/import-graph.py)"
            )
        })
        .collect();
    offences.extend(module_graph().iter().filter_map(|((from, to), at)| {
        let (low, high) = (layer_of(from)?, layer_of(to)?);
        (low < high).then(|| format!("{from} (layer {low}) -> {to} (layer {high}) at {at}"))
    }));
    assert_none(
        "imports run from a lower layer up to a higher one, or a module has no layer",
        offences,
    );
}

/// (f) Exactly one place makes a recipient's copy: outside `src/recipient.rs` no non-test code
/// applies policy (`policy::apply`) or translates a prison document for a recipient
/// (`translate_owned(Source::Prison, ..)`), and outside `src/recipient.rs` and `src/policy/`
/// nothing takes a policy decision (`policy::decide`, `decide(&DecisionRequest ..)`). The preview
/// use case translates a caller's document by its detected source, which is allowed.
#[test]
fn exactly_one_place_makes_a_recipients_copy() {
    let mut offences = Vec::new();
    for file in sources()
        .iter()
        .filter(|f| f.rel != "src/recipient.rs" && !f.is_test_file())
    {
        let in_policy = file.rel.starts_with("src/policy/");
        let code = Normalized::of(&file.production);
        for line in code.find("policy::apply(") {
            offences.push(format!("{}:{line}: calls policy::apply", file.rel));
        }
        for name in ["translate_owned", "translate"] {
            for (line, first) in code.calls(name) {
                if first.ends_with("Source::Prison") {
                    offences.push(format!(
                        "{}:{line}: {name}({first}, ..) translates a prison document",
                        file.rel
                    ));
                }
            }
        }
        if !in_policy {
            for line in code.find("policy::decide(") {
                offences.push(format!("{}:{line}: calls policy::decide", file.rel));
            }
            for (line, first) in code.calls("decide") {
                if first.contains("DecisionRequest") {
                    offences.push(format!(
                        "{}:{line}: decide({first}, ..) takes a policy decision",
                        file.rel
                    ));
                }
            }
        }
        for (path, line) in use_paths(&file.production) {
            let applies = ["crate::policy::apply", "crate::policy::apply::apply"];
            let decides = ["crate::policy::decide", "crate::policy::decision::decide"];
            if applies.contains(&path.as_str()) || (!in_policy && decides.contains(&path.as_str()))
            {
                offences.push(format!("{}:{line}: imports {path}", file.rel));
            }
        }
    }
    assert_none(
        "outside src/recipient.rs, code makes (part of) a recipient's copy; call \
         recipient::copy_for instead",
        offences,
    );
}

/// The scanner reads Rust the way the rules need: through comments, strings, formatting,
/// `use` groups and test modules. (If it did not, the rules above could not fail.)
#[test]
fn the_scanner_reads_rust_as_the_rules_need() {
    let text = r##"
//! Mentions crate::api in prose.
use crate::{api::routes, store};
use crate::policy::{
    Decision, decide as choose,
    labels::{self, views},
};
pub(crate) fn f<'a>(x: &'a str) -> char {
    let _ = "crate::startup::x"; let _ = r#"crate::cli"#; /* crate::demo /* nested */ */
    let _ = app
        .translator
        .translate_owned(
            crate::translate::Source::Prison, target, doc);
    let _ = '"'; crate::domain::thing(); '\''
}
#[cfg(test)]
mod tests {
    use crate::demo::SAMPLE;
}
use crate::intake::Receipt;
"##;
    let code = blank_comments_and_strings(text);
    assert_eq!(code.lines().count(), text.lines().count(), "lines are kept");
    let production = blank_test_items(&code);
    let refs: BTreeSet<(String, usize)> = crate_references(&production).into_iter().collect();
    let expected: BTreeSet<(String, usize)> = [
        ("api", 3),
        ("store", 3),
        ("policy", 4),
        ("translate", 13),
        ("domain", 14),
        ("intake", 20),
    ]
    .into_iter()
    .map(|(m, l)| (m.to_string(), l))
    .collect();
    assert_eq!(refs, expected);
    let paths: Vec<String> = use_paths(&production).into_iter().map(|(p, _)| p).collect();
    assert!(
        paths.contains(&"crate::policy::decide".to_string()),
        "{paths:?}"
    );
    assert!(
        paths.contains(&"crate::policy::labels".to_string()),
        "{paths:?}"
    );
    assert!(
        paths.contains(&"crate::policy::labels::views".to_string()),
        "{paths:?}"
    );
    let calls = Normalized::of(&production).calls("translate_owned");
    assert_eq!(
        calls,
        vec![(12, "crate::translate::Source::Prison".to_string())]
    );
    assert!(mentions_actix("use actix_web::web;") && !mentions_actix("transactix_web"));
    assert_eq!(
        Normalized::of("x . store\n  . get()").find(".store."),
        vec![1]
    );
    assert!(
        Normalized::of("DataStore as _")
            .find("Store as _")
            .is_empty()
    );
    assert!(Normalized::of("UserRole::X").find("Role::").is_empty());
    let graph = BTreeMap::from([
        (("a".to_string(), "b".to_string()), String::new()),
        (("b".to_string(), "c".to_string()), String::new()),
        (("c".to_string(), "a".to_string()), String::new()),
        (("c".to_string(), "d".to_string()), String::new()),
    ]);
    assert_eq!(
        strongly_connected(&graph),
        vec![BTreeSet::from([
            "a".to_string(),
            "b".to_string(),
            "c".to_string()
        ])]
    );
    assert_eq!(
        shortest_cycle(&graph, &strongly_connected(&graph)[0]),
        ["a", "b", "c", "a"]
    );
}

// ---------------------------------------------------------------------------------------------
// Reading the source
// ---------------------------------------------------------------------------------------------

/// One file of `src/`.
struct SourceFile {
    /// Relative to the crate root, with `/`: `src/api/bundle.rs`.
    rel: String,
    /// The top-level module the file belongs to (`src/x.rs` or `src/x/**`).
    module: String,
    raw: String,
    /// `raw` with comments and literal contents blanked.
    code: String,
    /// `code` with test items blanked as well.
    production: String,
}

impl SourceFile {
    fn is_edge(&self) -> bool {
        EDGE.contains(&self.module.as_str())
    }

    fn is_test_file(&self) -> bool {
        self.rel.ends_with("/tests.rs") || self.rel.ends_with("/hazard_log_tests.rs")
    }

    fn raw_line(&self, line: usize) -> &str {
        self.raw.lines().nth(line - 1).unwrap_or_default().trim()
    }
}

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `src/`, in path order.
fn sources() -> Vec<SourceFile> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut paths = Vec::new();
    walk(&src_dir(), &mut paths);
    paths.sort();
    assert!(paths.len() > 20, "src/ should hold the gateway's sources");
    paths
        .into_iter()
        .map(|path| {
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join("/");
            let raw = std::fs::read_to_string(&path).unwrap();
            let code = blank_comments_and_strings(&raw);
            let production = blank_test_items(&code);
            SourceFile {
                module: module_of(&rel),
                rel,
                raw,
                code,
                production,
            }
        })
        .collect()
}

/// `src/x.rs` and `src/x/**` belong to the top-level module `x`.
fn module_of(rel: &str) -> String {
    let inside = rel.strip_prefix("src/").unwrap();
    let first = inside.split('/').next().unwrap();
    first.strip_suffix(".rs").unwrap_or(first).to_string()
}

/// The top-level modules: `src/x.rs` and `src/x/`.
fn top_level_modules() -> BTreeSet<String> {
    std::fs::read_dir(src_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter_map(|p| {
            let name = p.file_name()?.to_string_lossy().into_owned();
            if p.is_dir() {
                Some(name)
            } else {
                name.strip_suffix(".rs").map(str::to_string)
            }
        })
        .collect()
}

fn layer_of(module: &str) -> Option<u8> {
    LAYERS
        .iter()
        .find(|(_, names)| names.contains(&module))
        .map(|(n, _)| *n)
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Whether a line names an actix crate (`actix`, `actix_web`, `actix_tls`, ...).
fn mentions_actix(line: &str) -> bool {
    let chars: Vec<char> = line.chars().collect();
    let word: Vec<char> = "actix".chars().collect();
    (0..chars.len()).any(|i| {
        chars[i..].starts_with(&word)
            && (i == 0 || !is_ident(chars[i - 1]))
            && chars
                .get(i + word.len())
                .is_none_or(|&c| c == '_' || !is_ident(c))
    })
}

/// `text` with every comment and the contents of every string and character literal replaced
/// by spaces; newlines (and so line numbers) are kept.
fn blank_comments_and_strings(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = chars.clone();
    let blank = |out: &mut Vec<char>, from: usize, to: usize| {
        for c in &mut out[from..to.min(chars.len())] {
            if *c != '\n' {
                *c = ' ';
            }
        }
    };
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        let prev_ident = i > 0 && is_ident(chars[i - 1]);
        if c == '/' && next == Some('/') {
            let end = (i..chars.len())
                .find(|&j| chars[j] == '\n')
                .unwrap_or(chars.len());
            blank(&mut out, i, end);
            i = end;
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            let mut j = i;
            while j < chars.len() {
                if chars[j] == '/' && chars.get(j + 1) == Some(&'*') {
                    depth += 1;
                    j += 2;
                } else if chars[j] == '*' && chars.get(j + 1) == Some(&'/') {
                    depth -= 1;
                    j += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    j += 1;
                }
            }
            blank(&mut out, i, j);
            i = j;
        } else if c == 'r'
            && (!prev_ident || (i == 1 || !is_ident(chars[i - 2])) && "bc".contains(chars[i - 1]))
            && matches!(next, Some('"' | '#'))
        {
            // A raw string: r"..", r#".."#, br".." (or a raw identifier r#name, left alone).
            let hashes = chars[i + 1..].iter().take_while(|&&h| h == '#').count();
            let open = i + 1 + hashes;
            if chars.get(open) != Some(&'"') {
                i += 1;
                continue;
            }
            let mut j = open + 1;
            while j < chars.len() {
                if chars[j] == '"'
                    && chars[j + 1..]
                        .iter()
                        .take(hashes)
                        .filter(|&&h| h == '#')
                        .count()
                        == hashes
                {
                    break;
                }
                j += 1;
            }
            blank(&mut out, open + 1, j);
            i = j + 1 + hashes;
        } else if c == '"' {
            let mut j = i + 1;
            while j < chars.len() && chars[j] != '"' {
                j += if chars[j] == '\\' { 2 } else { 1 };
            }
            blank(&mut out, i + 1, j);
            i = j + 1;
        } else if c == '\'' {
            // A character literal ('x', '\n', '\u{..}'), or else a lifetime or label ('a).
            if next == Some('\\') {
                let mut j = i + 2;
                while j < chars.len() && chars[j] != '\'' {
                    j += 1;
                }
                blank(&mut out, i + 1, j);
                i = j + 1;
            } else if chars.get(i + 2) == Some(&'\'') {
                blank(&mut out, i + 1, i + 2);
                i += 3;
            } else {
                i += 1;
            }
        } else {
            i += 1;
        }
    }
    out.into_iter().collect()
}

/// `code` (already without comments and literals) with the item after each `#[cfg(test)]`
/// blanked: to its `;` (`mod tests;`) or to the brace closing its body (`mod tests { .. }`).
fn blank_test_items(code: &str) -> String {
    let mut chars: Vec<char> = code.chars().collect();
    let marker: Vec<char> = "#[cfg(test)]".chars().collect();
    let mut i = 0;
    while i + marker.len() <= chars.len() {
        if chars[i..].starts_with(&marker) {
            let mut depth = 0i32;
            let mut j = i + marker.len();
            while j < chars.len() {
                match chars[j] {
                    '(' | '[' => depth += 1,
                    ')' | ']' => depth -= 1,
                    ';' if depth == 0 => break,
                    '{' if depth == 0 => {
                        let mut braces = 0;
                        while j < chars.len() {
                            match chars[j] {
                                '{' => braces += 1,
                                '}' => {
                                    braces -= 1;
                                    if braces == 0 {
                                        break;
                                    }
                                }
                                _ => {}
                            }
                            j += 1;
                        }
                        break;
                    }
                    _ => {}
                }
                j += 1;
            }
            let end = (j + 1).min(chars.len());
            for c in &mut chars[i..end] {
                if *c != '\n' {
                    *c = ' ';
                }
            }
            i = end;
        } else {
            i += 1;
        }
    }
    chars.into_iter().collect()
}

/// Code as a stream of characters without layout: whitespace is dropped except one space
/// between two identifier characters, so `x\n    .store\n    .get()` reads `x.store.get()`.
/// Each character keeps its line.
struct Normalized {
    chars: Vec<char>,
    lines: Vec<usize>,
}

impl Normalized {
    fn of(code: &str) -> Normalized {
        let mut chars = Vec::new();
        let mut lines = Vec::new();
        let mut line = 1;
        let mut gap = false;
        for c in code.chars() {
            if c.is_whitespace() {
                gap = true;
                if c == '\n' {
                    line += 1;
                }
                continue;
            }
            if gap && is_ident(c) && chars.last().is_some_and(|&p| is_ident(p)) {
                chars.push(' ');
                lines.push(line);
            }
            gap = false;
            chars.push(c);
            lines.push(line);
        }
        Normalized { chars, lines }
    }

    /// The lines where `pattern` (itself normalized) occurs as whole identifiers: not inside a
    /// longer identifier at either end.
    fn find(&self, pattern: &str) -> Vec<usize> {
        let p = Normalized::of(pattern).chars;
        let mut out = Vec::new();
        for i in 0..self.chars.len() {
            if !self.chars[i..].starts_with(&p) {
                continue;
            }
            let before = i.checked_sub(1).map(|b| self.chars[b]);
            let after = self.chars.get(i + p.len()).copied();
            let starts_word = is_ident(p[0]) && before.is_some_and(is_ident);
            let ends_word = is_ident(p[p.len() - 1]) && after.is_some_and(is_ident);
            if !starts_word && !ends_word {
                out.push(self.lines[i]);
            }
        }
        out
    }

    /// Calls of the function or method `name`: the line and the first argument of each.
    fn calls(&self, name: &str) -> Vec<(usize, String)> {
        let mut out = Vec::new();
        let p: Vec<char> = format!("{name}(").chars().collect();
        for i in 0..self.chars.len() {
            if !self.chars[i..].starts_with(&p) || (i > 0 && is_ident(self.chars[i - 1])) {
                continue;
            }
            // Not a definition: `fn name(`.
            let before: String = self.chars[i.saturating_sub(3)..i].iter().collect();
            if before == "fn " {
                continue;
            }
            let mut depth = 0i32;
            let mut arg = String::new();
            for &c in &self.chars[i + p.len()..] {
                match c {
                    '(' | '[' | '{' => depth += 1,
                    ')' | ']' | '}' if depth > 0 => depth -= 1,
                    ')' | ',' if depth == 0 => break,
                    _ => {}
                }
                arg.push(c);
            }
            out.push((self.lines[i], arg));
        }
        out
    }
}

/// Every path a `use crate::..` declaration brings in, groups expanded
/// (`use crate::x::{a, b::{c}}` gives `crate::x::a` and `crate::x::b::c`), with its line.
fn use_paths(code: &str) -> Vec<(String, usize)> {
    let n = Normalized::of(code);
    let mut out = Vec::new();
    let keyword: Vec<char> = "use ".chars().collect();
    for i in 0..n.chars.len() {
        if !n.chars[i..].starts_with(&keyword) || (i > 0 && is_ident(n.chars[i - 1])) {
            continue;
        }
        let tree: String = n.chars[i + keyword.len()..]
            .iter()
            .take_while(|&&c| c != ';')
            .collect();
        let tree = tree.strip_prefix("::").unwrap_or(&tree);
        if tree == "crate" || tree.starts_with("crate::") {
            let mut paths = Vec::new();
            expand_use_tree("", tree, &mut paths);
            out.extend(paths.into_iter().map(|p| (p, n.lines[i])));
        }
    }
    out
}

/// Expands a use tree under `prefix` into full paths (`self` names the prefix; `as` renames
/// are dropped; a glob names its module).
fn expand_use_tree(prefix: &str, tree: &str, out: &mut Vec<String>) {
    let join = |a: &str, b: &str| {
        if a.is_empty() {
            b.to_string()
        } else if b.is_empty() {
            a.to_string()
        } else {
            format!("{a}::{b}")
        }
    };
    let tree = tree.trim();
    if let Some(open) = tree.find('{') {
        let base = join(prefix, tree[..open].trim_end_matches("::"));
        let inner = tree[open + 1..]
            .strip_suffix('}')
            .unwrap_or(&tree[open + 1..]);
        let mut depth = 0;
        let mut start = 0;
        for (k, c) in inner.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    expand_use_tree(&base, &inner[start..k], out);
                    start = k + 1;
                }
                _ => {}
            }
        }
        expand_use_tree(&base, &inner[start..], out);
    } else {
        let item = tree.split(" as ").next().unwrap_or(tree).trim();
        match item {
            "" => {}
            "self" | "*" => out.push(prefix.to_string()),
            _ => out.push(join(prefix, item.trim_end_matches("::*"))),
        }
    }
}

/// The top-level modules `code` refers to through `crate::` (use declarations with their groups,
/// and inline paths), with the line of each reference.
fn crate_references(code: &str) -> Vec<(String, usize)> {
    let modules = top_level_modules();
    let mut out = Vec::new();
    for (path, line) in use_paths(code) {
        if let Some(first) = path
            .strip_prefix("crate::")
            .and_then(|p| p.split("::").next())
        {
            out.push((first.to_string(), line));
        }
    }
    let n = Normalized::of(code);
    let word: Vec<char> = "crate::".chars().collect();
    for i in 0..n.chars.len() {
        let before = i.checked_sub(1).map(|b| n.chars[b]);
        if !n.chars[i..].starts_with(&word)
            || before.is_some_and(|c| is_ident(c) || c == ':' || c == '$')
        {
            continue;
        }
        let name: String = n.chars[i + word.len()..]
            .iter()
            .take_while(|&&c| is_ident(c))
            .collect();
        if !name.is_empty() {
            out.push((name, n.lines[i]));
        }
    }
    out.retain(|(m, _)| modules.contains(m));
    out.sort();
    out.dedup();
    out
}

/// The edges between top-level modules, outside test code, each with the first place it is
/// made (`src/x.rs:12`).
fn module_graph() -> BTreeMap<(String, String), String> {
    let mut edges = BTreeMap::new();
    for file in sources().iter().filter(|f| !f.is_test_file()) {
        for (target, line) in crate_references(&file.production) {
            if target != file.module {
                edges
                    .entry((file.module.clone(), target))
                    .or_insert_with(|| format!("{}:{line}", file.rel));
            }
        }
    }
    edges
}

/// The strongly connected components of more than one node (Tarjan).
fn strongly_connected(edges: &BTreeMap<(String, String), String>) -> Vec<BTreeSet<String>> {
    struct Tarjan<'a> {
        next: BTreeMap<&'a str, Vec<&'a str>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        out: Vec<BTreeSet<String>>,
    }
    impl<'a> Tarjan<'a> {
        fn visit(&mut self, v: &'a str) {
            let n = self.index.len();
            self.index.insert(v, n);
            self.low.insert(v, n);
            self.stack.push(v);
            self.on_stack.insert(v);
            for w in self.next.get(v).cloned().unwrap_or_default() {
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let low = self.low[v].min(self.low[w]);
                    self.low.insert(v, low);
                } else if self.on_stack.contains(w) {
                    let low = self.low[v].min(self.index[w]);
                    self.low.insert(v, low);
                }
            }
            if self.low[v] == self.index[v] {
                let mut component = BTreeSet::new();
                while let Some(w) = self.stack.pop() {
                    self.on_stack.remove(w);
                    component.insert(w.to_string());
                    if w == v {
                        break;
                    }
                }
                if component.len() > 1 {
                    self.out.push(component);
                }
            }
        }
    }
    let mut next: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (a, b) in edges.keys() {
        next.entry(a.as_str()).or_default().push(b.as_str());
        next.entry(b.as_str()).or_default();
    }
    let nodes: Vec<&str> = next.keys().copied().collect();
    let mut t = Tarjan {
        next,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in nodes {
        if !t.index.contains_key(v) {
            t.visit(v);
        }
    }
    t.out
}

/// The shortest cycle through the members of a strongly connected component, as a path that
/// ends where it starts.
fn shortest_cycle(
    edges: &BTreeMap<(String, String), String>,
    members: &BTreeSet<String>,
) -> Vec<String> {
    let mut best: Option<Vec<String>> = None;
    for start in members {
        // Breadth first from `start` back to it, inside the component.
        let mut parent: BTreeMap<&str, &str> = BTreeMap::new();
        let mut queue = std::collections::VecDeque::from([start.as_str()]);
        'search: while let Some(v) = queue.pop_front() {
            for (a, b) in edges.keys() {
                if a != v || !members.contains(b) {
                    continue;
                }
                if b == start {
                    let mut path = vec![start.clone()];
                    let mut at = v;
                    while at != start.as_str() {
                        path.push(at.to_string());
                        at = parent[at];
                    }
                    path.push(start.clone());
                    path.reverse();
                    if best.as_ref().is_none_or(|p| path.len() < p.len()) {
                        best = Some(path);
                    }
                    break 'search;
                }
                if !parent.contains_key(b.as_str()) {
                    parent.insert(b.as_str(), v);
                    queue.push_back(b.as_str());
                }
            }
        }
    }
    best.unwrap_or_default()
}

/// Fails listing every offence, one a line.
fn assert_none(what: &str, offences: Vec<String>) {
    assert!(
        offences.is_empty(),
        "{what}:\n  {}\n",
        offences.join("\n  ")
    );
}
