//! FHIRPath: `validate::fhirpath::Expr::compile` on arbitrary strings, token soups and
//! expressions generated from the grammar (deeply nested ones too), and `Expr::check` of what
//! compiles on generated JSON and on the resources of real documents.

use proptest::prelude::*;
use proptest::sample::select;
use serde_json::Value;
use throughcare::validate::fhirpath::Expr;

use crate::arb;
use crate::intake::SEEDS;
use crate::{fuzz, reached};

const NAMES: &[&str] = &[
    "Patient",
    "Bundle",
    "entry",
    "resource",
    "name",
    "given",
    "family",
    "identifier",
    "system",
    "value",
    "code",
    "coding",
    "display",
    "extension",
    "url",
    "status",
    "reference",
    "text",
    "div",
    "period",
    "start",
    "end",
    "meta",
    "profile",
    "valueQuantity",
    "unit",
    "contained",
];

const FUNCTIONS: &[&str] = &[
    "empty",
    "exists",
    "not",
    "count",
    "first",
    "last",
    "tail",
    "single",
    "hasValue",
    "children",
    "descendants",
    "where",
    "select",
    "all",
    "allTrue",
    "anyTrue",
    "iif",
    "is",
    "as",
    "ofType",
    "matches",
    "replaceMatches",
    "startsWith",
    "endsWith",
    "contains",
    "substring",
    "length",
    "upper",
    "lower",
    "toInteger",
    "toDecimal",
    "toString",
    "trace",
    "isDistinct",
    "resolve",
    "memberOf",
    "conformsTo",
    "repeat",
    "union",
    "combine",
    "htmlChecks",
];

const OPERATORS: &[&str] = &[
    "*", "/", "div", "mod", "+", "-", "&", "|", "<", ">", "<=", ">=", "=", "!=", "~", "!~", "in",
    "contains", "and", "or", "xor", "implies",
];

const LITERALS: &[&str] = &[
    "true",
    "false",
    "{}",
    "0",
    "-1",
    "1.5",
    "9223372036854775807",
    "9223372036854775808",
    "'text'",
    "''",
    "'\\u0041'",
    "'\\''",
    "@2026-11-30",
    "@2026-11-30T10:00:00Z",
    "@T10:00",
    "@2026",
    "1 'mg'",
    "$this",
    "$index",
    "$total",
    "%resource",
    "%context",
    "%rootResource",
    "%ucum",
    "%`vs-x`",
    "`div`",
    "'[a-z'",
    "'(a*)*b'",
    "'.*'",
    "'^\\\\d{3}$'",
];

/// An expression from the grammar, as text.
fn expression() -> BoxedStrategy<String> {
    let term = prop_oneof![
        select(NAMES).prop_map(String::from),
        select(LITERALS).prop_map(String::from),
        (select(FUNCTIONS), prop::option::of(select(LITERALS)))
            .prop_map(|(f, a)| format!("{f}({})", a.unwrap_or(""))),
    ];
    term.prop_recursive(6, 48, 4, |inner| {
        prop_oneof![
            (inner.clone(), select(OPERATORS), inner.clone())
                .prop_map(|(a, op, b)| format!("{a} {op} {b}")),
            (inner.clone(), select(NAMES)).prop_map(|(a, n)| format!("{a}.{n}")),
            (
                inner.clone(),
                select(FUNCTIONS),
                prop::collection::vec(inner.clone(), 0..3)
            )
                .prop_map(|(a, f, args)| format!("{a}.{f}({})", args.join(", "))),
            inner.clone().prop_map(|a| format!("({a})")),
            inner.clone().prop_map(|a| format!("-{a}")),
            (inner.clone(), inner.clone()).prop_map(|(a, i)| format!("{a}[{i}]")),
            (inner.clone(), select(NAMES)).prop_map(|(a, t)| format!("{a} is {t}")),
            (inner.clone(), select(NAMES)).prop_map(|(a, t)| format!("{a} as FHIR.{t}")),
        ]
    })
    .boxed()
}

/// Tokens of the language in any order.
fn soup() -> BoxedStrategy<String> {
    prop::collection::vec(
        prop_oneof![
            select(NAMES),
            select(FUNCTIONS),
            select(OPERATORS),
            select(LITERALS),
            select(
                &[
                    "(", ")", "[", "]", ".", ",", "'", "`", "%", "$", "@", "/*", "*/", "//", "\\"
                ][..]
            ),
        ],
        0..24,
    )
    .prop_map(|tokens| tokens.concat())
    .boxed()
}

/// Nesting far past anything a profile writes.
fn deep() -> BoxedStrategy<String> {
    (1usize..100_000, 0usize..6)
        .prop_map(|(n, shape)| match shape {
            0 => format!("{}a{}", "(".repeat(n), ")".repeat(n)),
            1 => format!("{}1", "-".repeat(n)),
            2 => format!("a{}", ".b".repeat(n)),
            3 => format!("a{}", "[0]".repeat(n)),
            4 => vec!["1"; n.max(1)].join(" + "),
            _ => format!("{}true{}", "iif(".repeat(n), ", 1, 2)".repeat(n)),
        })
        .boxed()
}

fn source() -> BoxedStrategy<String> {
    prop_oneof![
        5 => expression(),
        2 => soup(),
        1 => any::<String>(),
        1 => deep(),
    ]
    .boxed()
}

/// What an expression is evaluated on: generated JSON, or a resource of a real document.
fn focus() -> BoxedStrategy<Value> {
    prop_oneof![
        arb::json(5),
        (0..SEEDS.len(), any::<usize>()).prop_map(|(seed, i)| {
            let entries = SEEDS[seed]["entry"].as_array().cloned().unwrap_or_default();
            if entries.is_empty() {
                SEEDS[seed].clone()
            } else {
                entries[i % entries.len()]["resource"].clone()
            }
        }),
    ]
    .boxed()
}

#[test]
fn fuzz_fhirpath() {
    fuzz("fhirpath", (source(), focus()), |(src, focus)| {
        match Expr::compile(&src) {
            Ok(expr) => {
                reached("fhirpath", "compiled");
                if matches!(expr.check(&focus, &focus, &focus, None), Ok(Some(_))) {
                    reached("fhirpath", "boolean");
                }
            }
            Err(message) => prop_assert!(!message.is_empty()),
        }
        Ok(())
    });
}
