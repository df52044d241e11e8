//! The function library: the table of supported functions (`Func`, looked up by name at parse
//! time) and `call`, which applies one to its input collection.

use std::borrow::Cow;

use serde_json::Value;

use super::eval::{
    Coll, Env, Item, boolean, contains_item, eval, is_type, push_json, single, truthy, type_op,
    union,
};
use super::parser::Node;

/// Supported functions.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Func {
    Empty,
    Exists,
    Not,
    Count,
    First,
    Last,
    Tail,
    Single,
    HasValue,
    Children,
    Descendants,
    Where,
    Select,
    All,
    AllTrue,
    AnyTrue,
    Iif,
    Is,
    As,
    OfType,
    Matches,
    ReplaceMatches,
    StartsWith,
    EndsWith,
    ContainsStr,
    Substring,
    Length,
    Upper,
    Lower,
    ToInteger,
    ToDecimal,
    ToStringFn,
    Trace,
    IsDistinct,
    Distinct,
    Combine,
    Union,
    Intersect,
    Exclude,
    Resolve,
    Extension,
    HtmlChecks,
}

pub(super) fn func_by_name(name: &str) -> Option<Func> {
    Some(match name {
        "empty" => Func::Empty,
        "exists" => Func::Exists,
        "not" => Func::Not,
        "count" => Func::Count,
        "first" => Func::First,
        "last" => Func::Last,
        "tail" => Func::Tail,
        "single" => Func::Single,
        "hasValue" => Func::HasValue,
        "children" => Func::Children,
        "descendants" => Func::Descendants,
        "where" => Func::Where,
        "select" => Func::Select,
        "all" => Func::All,
        "allTrue" => Func::AllTrue,
        "anyTrue" => Func::AnyTrue,
        "iif" => Func::Iif,
        "is" => Func::Is,
        "as" => Func::As,
        "ofType" => Func::OfType,
        "matches" => Func::Matches,
        "replaceMatches" => Func::ReplaceMatches,
        "startsWith" => Func::StartsWith,
        "endsWith" => Func::EndsWith,
        "contains" => Func::ContainsStr,
        "substring" => Func::Substring,
        "length" => Func::Length,
        "upper" => Func::Upper,
        "lower" => Func::Lower,
        "toInteger" => Func::ToInteger,
        "toDecimal" => Func::ToDecimal,
        "toString" => Func::ToStringFn,
        "trace" => Func::Trace,
        "isDistinct" => Func::IsDistinct,
        "distinct" => Func::Distinct,
        "combine" => Func::Combine,
        "union" => Func::Union,
        "intersect" => Func::Intersect,
        "exclude" => Func::Exclude,
        "resolve" => Func::Resolve,
        "extension" => Func::Extension,
        "htmlChecks" => Func::HtmlChecks,
        _ => return None,
    })
}

/// Resolves a reference within the resource (`#id`: a contained resource) or the Bundle it is
/// an entry of (by `fullUrl`, or by `Type/id`, absolute or relative). Nothing outside them.
fn resolve<'a>(reference: &str, env: &Env<'a>) -> Option<&'a Value> {
    if let Some(id) = reference.strip_prefix('#') {
        return env
            .resource
            .get("contained")
            .and_then(Value::as_array)?
            .iter()
            .find(|c| c.get("id").and_then(Value::as_str) == Some(id));
    }
    let entries = env.bundle?.get("entry").and_then(Value::as_array)?;
    let relative = |r: &Value| match (
        r.get("resourceType").and_then(Value::as_str),
        r.get("id").and_then(Value::as_str),
    ) {
        (Some(t), Some(id)) => Some(format!("{t}/{id}")),
        _ => None,
    };
    entries.iter().find_map(|e| {
        let r = e.get("resource")?;
        let by_url = e.get("fullUrl").and_then(Value::as_str) == Some(reference);
        let by_id = relative(r)
            .is_some_and(|tid| reference == tid || reference.ends_with(&format!("/{tid}")));
        (by_url || by_id).then_some(r)
    })
}

fn children<'a>(input: &Coll<'a>, out: &mut Coll<'a>) {
    for item in input {
        if let Some(Value::Object(obj)) = item.json() {
            for (k, v) in obj {
                if k == "resourceType" || k.starts_with('_') {
                    continue;
                }
                push_json(out, v);
            }
        }
    }
}

fn str_arg<'a>(
    args: &[Node],
    i: usize,
    focus: &Coll<'a>,
    this: &Coll<'a>,
    env: &Env<'a>,
) -> Result<Option<String>, String> {
    let Some(a) = args.get(i) else {
        return Ok(None);
    };
    let v = eval(a, focus, this, env)?;
    Ok(single(&v)?.and_then(Item::as_str).map(str::to_string))
}

pub(super) fn call<'a>(
    func: Func,
    input: Coll<'a>,
    args: &[Node],
    regex: Option<&regex_lite::Regex>,
    focus: &Coll<'a>,
    this: &Coll<'a>,
    env: &Env<'a>,
) -> Result<Coll<'a>, String> {
    // Evaluates a lambda argument for each input item, with $this bound to that item.
    let per_item = |item: &Item<'a>, arg: &Node| -> Result<Coll<'a>, String> {
        let one = vec![item.clone()];
        eval(arg, &one, &one, env)
    };
    Ok(match func {
        Func::Empty => boolean(Some(input.is_empty())),
        Func::Exists => match args.first() {
            None => boolean(Some(!input.is_empty())),
            Some(crit) => {
                let mut any = false;
                for item in &input {
                    if truthy(&per_item(item, crit)?)? == Some(true) {
                        any = true;
                        break;
                    }
                }
                boolean(Some(any))
            }
        },
        Func::Not => match single(&input)? {
            None => Vec::new(),
            Some(i) => boolean(i.as_bool().map(|b| !b)),
        },
        Func::Count => vec![Item::Int(input.len() as i64)],
        Func::First => input.into_iter().take(1).collect(),
        Func::Last => input.into_iter().last().into_iter().collect(),
        Func::Tail => input.into_iter().skip(1).collect(),
        Func::Single => {
            if input.len() > 1 {
                return Err("single() on several items".into());
            }
            input
        }
        Func::HasValue => boolean(Some(input.len() == 1 && input[0].is_primitive())),
        Func::Children => {
            let mut out = Vec::new();
            children(&input, &mut out);
            out
        }
        Func::Descendants => {
            let mut out = Vec::new();
            let mut frontier = input;
            while !frontier.is_empty() {
                let mut next = Vec::new();
                children(&frontier, &mut next);
                out.extend(next.iter().cloned());
                frontier = next;
            }
            out
        }
        Func::Where => {
            let crit = args.first().ok_or("where() needs an argument")?;
            let mut out = Vec::new();
            for item in input {
                if truthy(&per_item(&item, crit)?)? == Some(true) {
                    out.push(item);
                }
            }
            out
        }
        Func::Select => {
            let proj = args.first().ok_or("select() needs an argument")?;
            let mut out = Vec::new();
            for item in &input {
                out.extend(per_item(item, proj)?);
            }
            out
        }
        Func::All => {
            let crit = args.first().ok_or("all() needs an argument")?;
            let mut all = true;
            for item in &input {
                if truthy(&per_item(item, crit)?)? != Some(true) {
                    all = false;
                    break;
                }
            }
            boolean(Some(all))
        }
        Func::AllTrue => boolean(Some(input.iter().all(|i| i.as_bool() == Some(true)))),
        Func::AnyTrue => boolean(Some(input.iter().any(|i| i.as_bool() == Some(true)))),
        Func::Iif => {
            let crit = args.first().ok_or("iif() needs arguments")?;
            let c = eval(crit, &input, &input, env)?;
            if truthy(&c)? == Some(true) {
                match args.get(1) {
                    Some(a) => eval(a, &input, this, env)?,
                    None => Vec::new(),
                }
            } else {
                match args.get(2) {
                    Some(a) => eval(a, &input, this, env)?,
                    None => Vec::new(),
                }
            }
        }
        Func::Is | Func::As => {
            let Some(Node::Str(name)) = args.first() else {
                return Err("type name expected".into());
            };
            type_op(&input, name, func == Func::Is)?
        }
        Func::OfType => {
            let Some(Node::Str(name)) = args.first() else {
                return Err("type name expected".into());
            };
            input.into_iter().filter(|i| is_type(i, name)).collect()
        }
        Func::Matches => {
            let Some(s) = single(&input)?.and_then(Item::as_str) else {
                return Ok(Vec::new());
            };
            let re = regex.ok_or("no regular expression")?;
            boolean(Some(re.is_match(s)))
        }
        Func::ReplaceMatches => {
            let Some(s) = single(&input)?.and_then(Item::as_str) else {
                return Ok(Vec::new());
            };
            let re = regex.ok_or("no regular expression")?;
            let with = str_arg(args, 1, focus, this, env)?.unwrap_or_default();
            vec![Item::Str(Cow::Owned(
                re.replace_all(s, with.as_str()).into_owned(),
            ))]
        }
        Func::StartsWith | Func::EndsWith | Func::ContainsStr => {
            let Some(s) = single(&input)?.and_then(Item::as_str) else {
                return Ok(Vec::new());
            };
            let Some(arg) = str_arg(args, 0, focus, this, env)? else {
                return Ok(Vec::new());
            };
            boolean(Some(match func {
                Func::StartsWith => s.starts_with(arg.as_str()),
                Func::EndsWith => s.ends_with(arg.as_str()),
                _ => s.contains(arg.as_str()),
            }))
        }
        Func::Substring => {
            let Some(s) = single(&input)?.and_then(Item::as_str) else {
                return Ok(Vec::new());
            };
            let start = match args.first() {
                Some(a) => single(&eval(a, focus, this, env)?)?.and_then(Item::as_int),
                None => None,
            };
            let Some(start) = start.filter(|s| *s >= 0) else {
                return Ok(Vec::new());
            };
            let len = match args.get(1) {
                Some(a) => single(&eval(a, focus, this, env)?)?.and_then(Item::as_int),
                None => None,
            };
            let chars = s.chars().skip(start as usize);
            let out: String = match len {
                Some(l) => chars.take(l.max(0) as usize).collect(),
                None => chars.collect(),
            };
            vec![Item::Str(Cow::Owned(out))]
        }
        Func::Length => match single(&input)?.and_then(Item::as_str) {
            Some(s) => vec![Item::Int(s.chars().count() as i64)],
            None => Vec::new(),
        },
        Func::Upper | Func::Lower => match single(&input)?.and_then(Item::as_str) {
            Some(s) => vec![Item::Str(Cow::Owned(if func == Func::Upper {
                s.to_uppercase()
            } else {
                s.to_lowercase()
            }))],
            None => Vec::new(),
        },
        Func::ToInteger => match single(&input)? {
            None => Vec::new(),
            Some(i) => match (i.as_int(), i.as_str()) {
                (Some(n), _) => vec![Item::Int(n)],
                (_, Some(s)) => s.parse().map(Item::Int).into_iter().collect(),
                _ => Vec::new(),
            },
        },
        Func::ToDecimal => match single(&input)? {
            None => Vec::new(),
            Some(i) => match (i.as_num(), i.as_str()) {
                (Some(n), _) => vec![Item::Dec(n)],
                (_, Some(s)) => s.parse().map(Item::Dec).into_iter().collect(),
                _ => Vec::new(),
            },
        },
        Func::ToStringFn => match single(&input)? {
            None => Vec::new(),
            Some(i) => {
                let s = match i {
                    Item::Json(Value::Number(n)) => n.to_string(),
                    Item::Json(Value::Bool(b)) | Item::Bool(b) => b.to_string(),
                    Item::Int(n) => n.to_string(),
                    Item::Dec(d) => d.to_string(),
                    other => match other.as_str() {
                        Some(s) => s.to_string(),
                        None => return Ok(Vec::new()),
                    },
                };
                vec![Item::Str(Cow::Owned(s))]
            }
        },
        Func::Trace => input,
        Func::IsDistinct => {
            let mut seen: Coll = Vec::new();
            let mut distinct = true;
            for i in &input {
                if contains_item(&seen, i) {
                    distinct = false;
                    break;
                }
                seen.push(i.clone());
            }
            boolean(Some(distinct))
        }
        Func::Distinct => union(input, Vec::new()),
        Func::Combine | Func::Union | Func::Intersect | Func::Exclude => {
            let other = match args.first() {
                Some(a) => eval(a, focus, this, env)?,
                None => Vec::new(),
            };
            match func {
                Func::Combine => input.into_iter().chain(other).collect(),
                Func::Union => union(input, other),
                Func::Intersect => union(
                    input
                        .into_iter()
                        .filter(|i| contains_item(&other, i))
                        .collect(),
                    Vec::new(),
                ),
                _ => input
                    .into_iter()
                    .filter(|i| !contains_item(&other, i))
                    .collect(),
            }
        }
        // No resolution of references in an invariant: unknown, so empty.
        Func::Resolve => {
            let mut out = Vec::new();
            for item in &input {
                let reference = match item.json() {
                    Some(Value::String(s)) => Some(s.as_str()),
                    Some(Value::Object(o)) => o.get("reference").and_then(Value::as_str),
                    _ => None,
                };
                if let Some(found) = reference.and_then(|r| resolve(r, env)) {
                    out.push(Item::Json(found));
                }
            }
            out
        }
        Func::Extension => {
            let Some(url) = str_arg(args, 0, focus, this, env)? else {
                return Ok(Vec::new());
            };
            let mut out = Vec::new();
            for item in &input {
                if let Some(Value::Object(obj)) = item.json()
                    && let Some(Value::Array(exts)) = obj.get("extension")
                {
                    for e in exts {
                        if e.get("url").and_then(Value::as_str) == Some(url.as_str()) {
                            out.push(Item::Json(e));
                        }
                    }
                }
            }
            out
        }
        Func::HtmlChecks => match single(&input)? {
            None => Vec::new(),
            Some(item) => match item.json() {
                Some(Value::String(div)) => {
                    boolean(Some(crate::validate::xhtml::check(div).is_ok()))
                }
                _ => boolean(Some(false)),
            },
        },
    })
}
