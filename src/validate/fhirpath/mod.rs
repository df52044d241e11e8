//! A small FHIRPath engine for invariants (`ElementDefinition.constraint.expression`).
//!
//! Expressions are parsed once at load time into an AST (regular expressions compiled then too)
//! and evaluated synchronously, straight on the `serde_json::Value` tree, with no conversion of
//! the resource. It covers the FHIRPath subset that the R4 core, UK Core and prison invariants
//! use: paths (choice types included), the usual operators with three-valued logic, and the
//! functions listed in [`Func`](functions::Func). Anything else fails to compile, and the
//! constraint is reported at load time as not evaluated, rather than guessed at.
//!
//! Typing is structural (there is no model here): `is`/`as`/`ofType` compare a resource's
//! `resourceType`, or the JSON kind for primitives, and treat any other object as any complex
//! type. That is loose in the lenient direction only.
//!
//! Files: `lexer` (tokens), `parser` (the AST and the parser), `eval` (the evaluator: items and
//! collections, equality, ordering, dates and times, operators), `functions` (the function table
//! and its implementations), `tests` (unit tests). Only [`Expr`] is visible outside this module.

mod eval;
mod functions;
mod lexer;
mod parser;
#[cfg(test)]
mod tests;

use serde_json::Value;

use eval::{Env, Item, eval};
use parser::Node;

/// A compiled expression.
#[derive(Debug)]
pub struct Expr(Node);

impl Expr {
    /// Compiles an expression; unsupported functions or syntax are errors.
    pub fn compile(src: &str) -> Result<Expr, String> {
        parser::parse(src).map(Expr)
    }

    /// Evaluates an invariant at `focus`: `Ok(Some(true/false))`, `Ok(None)` when the result is
    /// empty or not a boolean, or `Err` when evaluation failed (the caller reports it: an
    /// invariant that cannot be evaluated is never passed silently). `bundle` is the Bundle the
    /// resource is an entry of, for `resolve()`.
    pub fn check(
        &self,
        focus: &Value,
        resource: &Value,
        root: &Value,
        bundle: Option<&Value>,
    ) -> Result<Option<bool>, String> {
        let env = Env {
            resource,
            root,
            context: focus,
            bundle,
        };
        let input = vec![Item::Json(focus)];
        let out = eval(&self.0, &input, &input, &env)?;
        Ok(match out.as_slice() {
            [] => None,
            [one] => one.as_bool(),
            // A non-empty collection that is not a single boolean counts as true.
            _ => Some(true),
        })
    }
}
