//! Evaluation on the JSON tree: the environment (`%resource`, `%rootResource`, `%context`), items
//! and collections, path navigation (choice types included), equality, equivalence and ordering
//! (dates and times compared by precision, instants across offsets), type tests and the binary
//! operators with three-valued logic.

use std::borrow::Cow;
use std::cmp::Ordering;

use serde_json::Value;

use super::functions::call;
use super::parser::{Node, Op};

pub(super) struct Env<'a> {
    pub(super) resource: &'a Value,
    pub(super) root: &'a Value,
    pub(super) context: &'a Value,
    /// The Bundle the resource is an entry of, for `resolve()`.
    pub(super) bundle: Option<&'a Value>,
}

#[derive(Debug, Clone)]
pub(super) enum Item<'a> {
    Json(&'a Value),
    Bool(bool),
    Int(i64),
    Dec(f64),
    Str(Cow<'a, str>),
}

pub(super) type Coll<'a> = Vec<Item<'a>>;

impl<'a> Item<'a> {
    pub(super) fn as_bool(&self) -> Option<bool> {
        match self {
            Item::Bool(b) => Some(*b),
            Item::Json(Value::Bool(b)) => Some(*b),
            _ => None,
        }
    }

    pub(super) fn as_str(&self) -> Option<&str> {
        match self {
            Item::Str(s) => Some(s),
            Item::Json(Value::String(s)) => Some(s),
            _ => None,
        }
    }

    pub(super) fn as_num(&self) -> Option<f64> {
        match self {
            Item::Int(i) => Some(*i as f64),
            Item::Dec(d) => Some(*d),
            Item::Json(Value::Number(n)) => n.as_f64(),
            _ => None,
        }
    }

    pub(super) fn as_int(&self) -> Option<i64> {
        match self {
            Item::Int(i) => Some(*i),
            Item::Json(Value::Number(n)) => n.as_i64(),
            _ => None,
        }
    }

    pub(super) fn json(&self) -> Option<&'a Value> {
        match self {
            Item::Json(v) => Some(v),
            _ => None,
        }
    }

    pub(super) fn is_primitive(&self) -> bool {
        !matches!(self, Item::Json(Value::Object(_) | Value::Array(_)))
    }
}

pub(super) fn push_json<'a>(out: &mut Coll<'a>, v: &'a Value) {
    match v {
        Value::Array(items) => {
            for i in items {
                if !i.is_null() {
                    out.push(Item::Json(i));
                }
            }
        }
        Value::Null => {}
        other => out.push(Item::Json(other)),
    }
}

fn member<'a>(obj: &'a serde_json::Map<String, Value>, name: &str, out: &mut Coll<'a>) {
    if let Some(v) = obj.get(name) {
        push_json(out, v);
        return;
    }
    // Choice elements: `value` finds `valueQuantity`.
    for (k, v) in obj {
        if k.len() > name.len()
            && k.starts_with(name)
            && k[name.len()..].starts_with(|c: char| c.is_ascii_uppercase())
        {
            push_json(out, v);
            return;
        }
    }
}

pub(super) fn single<'a, 'c>(c: &'c Coll<'a>) -> Result<Option<&'c Item<'a>>, String> {
    match c.len() {
        0 => Ok(None),
        1 => Ok(c.first()),
        _ => Err("expected a single item".into()),
    }
}

pub(super) fn truthy(c: &Coll) -> Result<Option<bool>, String> {
    match single(c)? {
        None => Ok(None),
        Some(i) => Ok(Some(i.as_bool().unwrap_or(true))),
    }
}

pub(super) fn boolean<'a>(b: Option<bool>) -> Coll<'a> {
    b.map(|b| vec![Item::Bool(b)]).unwrap_or_default()
}

pub(super) fn eval<'a>(
    node: &Node,
    focus: &Coll<'a>,
    this: &Coll<'a>,
    env: &Env<'a>,
) -> Result<Coll<'a>, String> {
    Ok(match node {
        Node::Empty => Vec::new(),
        Node::Bool(b) => vec![Item::Bool(*b)],
        Node::Int(i) => vec![Item::Int(*i)],
        Node::Dec(d) => vec![Item::Dec(*d)],
        Node::Str(s) => vec![Item::Str(Cow::Owned(s.clone()))],
        Node::This => this.clone(),
        Node::Var(v) => match v.as_str() {
            "resource" => vec![Item::Json(env.resource)],
            "rootResource" => vec![Item::Json(env.root)],
            "context" => vec![Item::Json(env.context)],
            "ucum" => vec![Item::Str(Cow::Borrowed("http://unitsofmeasure.org"))],
            "sct" => vec![Item::Str(Cow::Borrowed("http://snomed.info/sct"))],
            "loinc" => vec![Item::Str(Cow::Borrowed("http://loinc.org"))],
            other => return Err(format!("unknown variable %{other}")),
        },
        Node::Ident(name) => {
            let mut out = Vec::new();
            for item in focus {
                if let Some(Value::Object(obj)) = item.json() {
                    if name.starts_with(|c: char| c.is_ascii_uppercase())
                        && obj.get("resourceType").and_then(Value::as_str) == Some(name)
                    {
                        out.push(item.clone());
                    } else {
                        member(obj, name, &mut out);
                    }
                }
            }
            out
        }
        Node::Member(target, name) => {
            let base = eval(target, focus, this, env)?;
            let mut out = Vec::new();
            for item in &base {
                if let Some(Value::Object(obj)) = item.json() {
                    member(obj, name, &mut out);
                }
            }
            out
        }
        Node::Index(target, idx) => {
            let base = eval(target, focus, this, env)?;
            let i = eval(idx, focus, this, env)?;
            match single(&i)?.and_then(Item::as_int) {
                Some(i) if i >= 0 => base.into_iter().nth(i as usize).into_iter().collect(),
                _ => Vec::new(),
            }
        }
        Node::Neg(inner) => {
            let v = eval(inner, focus, this, env)?;
            match single(&v)? {
                None => Vec::new(),
                Some(Item::Int(i)) => vec![Item::Int(-i)],
                Some(other) => match other.as_num() {
                    Some(n) => vec![Item::Dec(-n)],
                    None => return Err("cannot negate".into()),
                },
            }
        }
        Node::TypeTest(is, inner, name) => {
            let v = eval(inner, focus, this, env)?;
            type_op(&v, name, *is)?
        }
        Node::Binary(op, l, r) => binary(*op, l, r, focus, this, env)?,
        Node::Call {
            target,
            func,
            args,
            regex,
        } => {
            let input = match target {
                Some(t) => eval(t, focus, this, env)?,
                None => focus.clone(),
            };
            call(*func, input, args, regex.as_ref(), focus, this, env)?
        }
    })
}

pub(super) fn is_type(item: &Item, name: &str) -> bool {
    match item {
        Item::Bool(_) | Item::Json(Value::Bool(_)) => name.eq_ignore_ascii_case("boolean"),
        Item::Int(_) => matches!(name, "integer" | "Integer" | "decimal" | "Decimal"),
        Item::Dec(_) => name.eq_ignore_ascii_case("decimal"),
        Item::Json(Value::Number(n)) => {
            name.eq_ignore_ascii_case("decimal")
                || (n.is_i64() || n.is_u64())
                    && matches!(name, "integer" | "Integer" | "positiveInt" | "unsignedInt")
        }
        Item::Str(_) | Item::Json(Value::String(_)) => {
            name.starts_with(|c: char| c.is_ascii_lowercase())
                && !matches!(name, "boolean" | "integer" | "decimal")
                || matches!(name, "String" | "Date" | "DateTime" | "Time")
        }
        Item::Json(Value::Object(o)) => match o.get("resourceType").and_then(Value::as_str) {
            Some(rt) => rt == name || matches!(name, "Resource" | "DomainResource"),
            None => name.starts_with(|c: char| c.is_ascii_uppercase()),
        },
        Item::Json(_) => false,
    }
}

pub(super) fn type_op<'a>(v: &Coll<'a>, name: &str, is: bool) -> Result<Coll<'a>, String> {
    let Some(item) = single(v)? else {
        return Ok(Vec::new());
    };
    let ok = is_type(item, name);
    Ok(if is {
        vec![Item::Bool(ok)]
    } else if ok {
        vec![item.clone()]
    } else {
        Vec::new()
    })
}

fn equal(a: &Item, b: &Item) -> Option<bool> {
    if let (Some(x), Some(y)) = (a.as_str(), b.as_str()) {
        if looks_temporal(x) && looks_temporal(y) {
            return compare_temporal(x, y).map(|o| o == Ordering::Equal);
        }
        return Some(x == y);
    }
    if let (Some(x), Some(y)) = (a.as_num(), b.as_num()) {
        return Some((x - y).abs() < f64::EPSILON * x.abs().max(1.0));
    }
    if let (Some(x), Some(y)) = (a.as_bool(), b.as_bool()) {
        return Some(x == y);
    }
    match (a.json(), b.json()) {
        (Some(x), Some(y)) => Some(x == y),
        _ => Some(false),
    }
}

fn equivalent(a: &Item, b: &Item) -> bool {
    if let (Some(x), Some(y)) = (a.as_str(), b.as_str()) {
        let norm = |s: &str| {
            s.split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
                .to_lowercase()
        };
        return norm(x) == norm(y);
    }
    equal(a, b).unwrap_or(false)
}

fn collections_equal(l: &Coll, r: &Coll) -> Option<bool> {
    if l.is_empty() || r.is_empty() {
        return None;
    }
    if l.len() != r.len() {
        return Some(false);
    }
    let mut all = true;
    for (a, b) in l.iter().zip(r) {
        match equal(a, b) {
            Some(true) => {}
            Some(false) => all = false,
            None => return None,
        }
    }
    Some(all)
}

fn compare(a: &Item, b: &Item) -> Result<Option<Ordering>, String> {
    if let (Some(x), Some(y)) = (a.as_num(), b.as_num()) {
        return Ok(x.partial_cmp(&y));
    }
    if let (Some(x), Some(y)) = (a.as_str(), b.as_str()) {
        if looks_temporal(x) && looks_temporal(y) {
            return Ok(compare_temporal(x, y));
        }
        return Ok(Some(x.cmp(y)));
    }
    Err("cannot compare these values".into())
}

fn looks_temporal(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 4 && b[..4].iter().all(u8::is_ascii_digit) && (b.len() == 4 || b[4] == b'-')
}

/// Parses a FHIR date/dateTime/instant into (components, precision, offset minutes).
fn parse_temporal(s: &str) -> Option<([i64; 6], usize, Option<i64>, f64)> {
    let (date, time) = match s.split_once('T') {
        Some((d, t)) => (d, Some(t)),
        None => (s, None),
    };
    let mut parts = [0i64, 1, 1, 0, 0, 0];
    let mut precision = 0;
    for (i, p) in date.split('-').enumerate() {
        if i > 2 {
            return None;
        }
        parts[i] = p.parse().ok()?;
        precision = i + 1;
    }
    let mut frac = 0.0;
    let mut offset = None;
    if let Some(t) = time {
        let (clock, tz) = if let Some(stripped) = t.strip_suffix('Z') {
            (stripped, Some(0))
        } else if let Some(pos) = t.rfind(['+', '-']) {
            let (c, z) = t.split_at(pos);
            let sign = if z.starts_with('-') { -1 } else { 1 };
            let (h, m) = z[1..].split_once(':')?;
            (
                c,
                Some(sign * (h.parse::<i64>().ok()? * 60 + m.parse::<i64>().ok()?)),
            )
        } else {
            (t, None)
        };
        offset = tz;
        for (i, p) in clock.split(':').enumerate() {
            if i > 2 {
                return None;
            }
            if i == 2 {
                let (whole, f) = p.split_once('.').unwrap_or((p, ""));
                parts[5] = whole.parse().ok()?;
                if !f.is_empty() {
                    frac = format!("0.{f}").parse().ok()?;
                }
            } else {
                parts[3 + i] = p.parse().ok()?;
            }
            precision = 4 + i;
        }
    }
    Some((parts, precision, offset, frac))
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

fn compare_temporal(a: &str, b: &str) -> Option<Ordering> {
    let (pa, preca, oa, fa) = parse_temporal(a)?;
    let (pb, precb, ob, fb) = parse_temporal(b)?;
    if preca >= 4 && precb >= 4 {
        // Both have a time: compare as instants (a missing offset is taken as UTC).
        let secs = |p: [i64; 6], off: Option<i64>| {
            days_from_civil(p[0], p[1], p[2]) * 86400 + p[3] * 3600 + p[4] * 60 + p[5]
                - off.unwrap_or(0) * 60
        };
        let (x, y) = (secs(pa, oa) as f64 + fa, secs(pb, ob) as f64 + fb);
        return x.partial_cmp(&y);
    }
    let common = preca.min(precb).min(3);
    for i in 0..common {
        match pa[i].cmp(&pb[i]) {
            Ordering::Equal => {}
            other => return Some(other),
        }
    }
    if preca == precb {
        Some(Ordering::Equal)
    } else {
        None
    }
}

fn and3(l: Option<bool>, r: Option<bool>) -> Option<bool> {
    match (l, r) {
        (Some(false), _) | (_, Some(false)) => Some(false),
        (Some(true), Some(true)) => Some(true),
        _ => None,
    }
}

fn or3(l: Option<bool>, r: Option<bool>) -> Option<bool> {
    match (l, r) {
        (Some(true), _) | (_, Some(true)) => Some(true),
        (Some(false), Some(false)) => Some(false),
        _ => None,
    }
}

fn binary<'a>(
    op: Op,
    l: &Node,
    r: &Node,
    focus: &Coll<'a>,
    this: &Coll<'a>,
    env: &Env<'a>,
) -> Result<Coll<'a>, String> {
    let lv = eval(l, focus, this, env)?;
    // Short-circuit the logical operators where the left side decides.
    match op {
        Op::And if truthy(&lv)? == Some(false) => return Ok(boolean(Some(false))),
        Op::Or if truthy(&lv)? == Some(true) => return Ok(boolean(Some(true))),
        Op::Implies if truthy(&lv)? == Some(false) => return Ok(boolean(Some(true))),
        _ => {}
    }
    let rv = eval(r, focus, this, env)?;
    Ok(match op {
        Op::And => boolean(and3(truthy(&lv)?, truthy(&rv)?)),
        Op::Or => boolean(or3(truthy(&lv)?, truthy(&rv)?)),
        Op::Xor => boolean(match (truthy(&lv)?, truthy(&rv)?) {
            (Some(a), Some(b)) => Some(a != b),
            _ => None,
        }),
        Op::Implies => boolean(match (truthy(&lv)?, truthy(&rv)?) {
            (Some(true), r) => r,
            (None, Some(true)) => Some(true),
            _ => None,
        }),
        Op::Eq => boolean(collections_equal(&lv, &rv)),
        Op::Ne => boolean(collections_equal(&lv, &rv).map(|b| !b)),
        Op::Equiv | Op::NotEquiv => {
            let eq = if lv.is_empty() && rv.is_empty() {
                true
            } else {
                lv.len() == rv.len() && lv.iter().zip(&rv).all(|(a, b)| equivalent(a, b))
            };
            boolean(Some(if op == Op::Equiv { eq } else { !eq }))
        }
        Op::Lt | Op::Gt | Op::Le | Op::Ge => {
            let (Some(a), Some(b)) = (single(&lv)?, single(&rv)?) else {
                return Ok(Vec::new());
            };
            boolean(compare(a, b)?.map(|o| match op {
                Op::Lt => o == Ordering::Less,
                Op::Gt => o == Ordering::Greater,
                Op::Le => o != Ordering::Greater,
                _ => o != Ordering::Less,
            }))
        }
        Op::Union => union(lv, rv),
        Op::In | Op::Contains => {
            let (item, coll) = if op == Op::In { (&lv, &rv) } else { (&rv, &lv) };
            match single(item)? {
                None => Vec::new(),
                Some(x) => boolean(Some(coll.iter().any(|y| equal(x, y) == Some(true)))),
            }
        }
        Op::Concat => {
            let a = single(&lv)?.and_then(Item::as_str).unwrap_or("");
            let b = single(&rv)?.and_then(Item::as_str).unwrap_or("");
            vec![Item::Str(Cow::Owned(format!("{a}{b}")))]
        }
        Op::Add | Op::Sub | Op::Mul | Op::Div | Op::IntDiv | Op::Mod => {
            let (Some(a), Some(b)) = (single(&lv)?, single(&rv)?) else {
                return Ok(Vec::new());
            };
            if op == Op::Add
                && let (Some(x), Some(y)) = (a.as_str(), b.as_str())
            {
                return Ok(vec![Item::Str(Cow::Owned(format!("{x}{y}")))]);
            }
            if let (Some(x), Some(y)) = (a.as_int(), b.as_int()) {
                let v = match op {
                    Op::Add => x.checked_add(y),
                    Op::Sub => x.checked_sub(y),
                    Op::Mul => x.checked_mul(y),
                    Op::IntDiv => x.checked_div(y),
                    Op::Mod => x.checked_rem(y),
                    _ => None,
                };
                if let Some(v) = v {
                    return Ok(vec![Item::Int(v)]);
                }
            }
            let (Some(x), Some(y)) = (a.as_num(), b.as_num()) else {
                return Err("arithmetic on non-numbers".into());
            };
            let v = match op {
                Op::Add => x + y,
                Op::Sub => x - y,
                Op::Mul => x * y,
                Op::Div if y != 0.0 => x / y,
                Op::IntDiv if y != 0.0 => (x / y).trunc(),
                Op::Mod if y != 0.0 => x % y,
                _ => return Ok(Vec::new()),
            };
            vec![Item::Dec(v)]
        }
    })
}

pub(super) fn contains_item(c: &Coll, x: &Item) -> bool {
    c.iter().any(|y| equal(x, y) == Some(true))
}

pub(super) fn union<'a>(l: Coll<'a>, r: Coll<'a>) -> Coll<'a> {
    let mut out: Coll<'a> = Vec::with_capacity(l.len() + r.len());
    for i in l.into_iter().chain(r) {
        if !contains_item(&out, &i) {
            out.push(i);
        }
    }
    out
}
