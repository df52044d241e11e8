//! Applies compiled operations to one resource. Each operation reports what it could not carry
//! as a `Loss` whose path is the FHIRPath of the element in the source document.
//!
//! [`apply`] dispatches each [`Op`] (declared in `rules.rs`) to one function in the file of its
//! family; a new operation is a variant of `Op`, one arm here and one function there:
//!
//! | file | operations (`mappings/` name) |
//! |---|---|
//! | `conditions.rs` | `when:` / `unless:` beside an operation (and `set`'s own `when`) |
//! | `elements.rs` | `remove`, `keep`, `set`, `profile`, `move` |
//! | `reshape.rs` | `toCode`, `toCodeableConcept`, `wrap`, `unwrap` |
//! | `recode.rs` | `recode`, `recodeEverywhere`, `map`, and the ConceptMap helpers they share |
//! | `extensions.rs` | `toExtension`, `fromExtension`, `renameExtension`, `addExtension`, `keepExtensions` |
//!
//! This file keeps [`Cx`], [`apply`] and [`coding_of`], which every family (and `structure.rs`)
//! uses; the unit tests are in `tests.rs`.

mod conditions;
mod elements;
pub(crate) use elements::AbsentShape;
mod extensions;
mod recode;
mod reshape;
#[cfg(test)]
mod tests;

use std::collections::HashMap;

use serde_json::Value;

use super::Loss;
use super::path;

use super::conceptmap::ConceptMap;
use super::rules::Op;

/// What operations need besides the resource: the ConceptMaps and the loss report.
pub(crate) struct Cx<'a> {
    pub maps: &'a HashMap<String, ConceptMap>,
    /// The document's Composition as the sender wrote it (`set`'s `fromDocument`).
    pub composition: Option<&'a Value>,
    pub losses: &'a mut Vec<Loss>,
}

impl Cx<'_> {
    fn loss(&mut self, path: &str, code: Option<String>, reason: impl Into<String>) {
        self.losses.push(Loss::new(path, code, reason));
    }

    /// Records the assumption `reason` for the element `element` of the resource at `origin`.
    fn assume(&mut self, origin: &str, element: &str, reason: &str) {
        let path = if element.is_empty() {
            origin.to_owned()
        } else {
            format!("{origin}.{element}")
        };
        self.losses.push(Loss::assumption(&path, reason));
    }
}

/// Applies `op` to `resource`, whose FHIRPath in the source document is `origin`.
/// `p` is a reusable buffer for the FHIRPath under construction.
pub(crate) fn apply(op: &Op, resource: &mut Value, origin: &str, p: &mut String, cx: &mut Cx<'_>) {
    p.clear();
    p.push_str(origin);
    match op {
        Op::When {
            path,
            equals,
            negate,
            op,
        } => {
            if conditions::found(resource, path, equals) != *negate {
                apply(op, resource, origin, p, cx);
            }
        }
        Op::Remove {
            path,
            reason,
            report,
        } => elements::remove(resource, path, reason.as_deref(), *report, p, cx),
        Op::Keep {
            path,
            elements,
            reason,
        } => elements::keep(resource, path, elements, reason.as_deref(), p, cx),
        Op::Recode {
            path,
            concept_map,
            unmapped,
            mode,
            system,
        } => recode::recode(
            resource,
            path,
            concept_map,
            *unmapped,
            *mode,
            system.as_deref(),
            p,
            cx,
        ),
        Op::Map {
            path,
            values,
            lossy,
            reason,
        } => recode::map(resource, path, values, lossy, reason.as_deref(), p, cx),
        Op::Set {
            path,
            value,
            from,
            from_document,
            if_absent,
            when,
            assume,
        } => {
            let source = match (from, from_document) {
                (Some(f), _) => elements::SetSource::Resource(f),
                (None, Some(f)) => elements::SetSource::Document(f, cx.composition),
                (None, None) => elements::SetSource::Value(value),
            };
            let wrote = elements::set(resource, path, source, *if_absent, when.as_ref());
            if wrote && let Some(reason) = assume {
                cx.assume(origin, &path.text, reason);
            }
        }
        Op::Absent {
            path,
            reason,
            shape,
            assume,
        } => {
            if elements::mark_absent(resource, path, reason, *shape) {
                cx.assume(origin, &path.text, assume);
            }
        }
        Op::Profile { urls } => elements::profile(resource, urls),
        Op::Move {
            from,
            to,
            prefix,
            reason,
        } => elements::move_(resource, from, to, *prefix, reason.as_deref(), p, cx),
        Op::ToCode { path, system } => {
            reshape::to_code(resource, path, system.as_deref(), p, cx);
        }
        Op::ToCodeableConcept { path, system } => {
            reshape::to_codeable_concept(resource, path, system, p);
        }
        Op::Wrap { path, key } => reshape::wrap(resource, path, key, p),
        Op::Unwrap { path, key } => reshape::unwrap(resource, path, key, p, cx),
        Op::ToExtension {
            path,
            url,
            value_type,
        } => extensions::to_extension(resource, path, url, value_type, p),
        Op::FromExtension { url, sub, to } => {
            extensions::from_extension(resource, url, sub.as_deref(), to, origin, cx);
        }
        Op::RenameExtensions { renames } => extensions::rename_extensions(resource, renames),
        Op::RecodeEverywhere {
            concept_map,
            report,
        } => recode::recode_everywhere(resource, concept_map, *report, p, cx),
        Op::AddExtension {
            url,
            value,
            if_absent,
            on,
            where_,
            assume,
        } => {
            let added = match on {
                None => extensions::add_extension(resource, url, value, *if_absent),
                Some(on) => {
                    let mut any = false;
                    path::visit_mut(resource, &on.segs, p, &mut |node, _| {
                        if where_
                            .as_ref()
                            .is_none_or(|(w, eq)| conditions::found(node, w, eq))
                        {
                            any |= extensions::add_extension(node, url, value, *if_absent);
                        }
                    });
                    any
                }
            };
            if added && let Some(reason) = assume {
                let at = on.as_ref().map(|o| o.text.as_str()).unwrap_or_default();
                cx.assume(origin, at, reason);
            }
        }
        Op::KeepExtensions { prefixes, reason } => {
            extensions::keep_extensions(resource, prefixes, reason.as_deref(), p, cx);
        }
    }
}

/// `system|code` of a Coding-like value (or of the first coding of a CodeableConcept).
pub(crate) fn coding_of(v: &Value) -> Option<String> {
    let c = if v.get("coding").is_some() {
        v.get("coding")?.as_array()?.first()?
    } else {
        v
    };
    let code = c.get("code").and_then(Value::as_str)?;
    Some(match c.get("system").and_then(Value::as_str) {
        Some(s) => format!("{s}|{code}"),
        None => code.to_owned(),
    })
}
