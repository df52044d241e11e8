//! A small FHIRPath engine for invariants (`ElementDefinition.constraint.expression`).
//!
//! Expressions are parsed once at load time into an AST (regular expressions compiled then too)
//! and evaluated synchronously, straight on the `serde_json::Value` tree, with no conversion of
//! the resource. It covers the FHIRPath subset that the R4 core, UK Core and prison invariants
//! use: paths (choice types included), the usual operators with three-valued logic, and the
//! functions listed in [`Func`]. Anything else fails to compile, and the constraint is reported
//! at load time as not evaluated, rather than guessed at.
//!
//! Typing is structural (there is no model here): `is`/`as`/`ofType` compare a resource's
//! `resourceType`, or the JSON kind for primitives, and treat any other object as any complex
//! type. That is loose in the lenient direction only.

use std::borrow::Cow;
use std::cmp::Ordering;

use serde_json::Value;

/// A compiled expression.
#[derive(Debug)]
pub struct Expr(Node);

#[derive(Debug)]
enum Node {
    Empty,
    Bool(bool),
    Int(i64),
    Dec(f64),
    Str(String),
    This,
    Var(String),
    /// A name read from the focus: `name`, or the resource type at the root.
    Ident(String),
    Member(Box<Node>, String),
    Index(Box<Node>, Box<Node>),
    Call {
        target: Option<Box<Node>>,
        func: Func,
        args: Vec<Node>,
        regex: Option<regex_lite::Regex>,
    },
    Binary(Op, Box<Node>, Box<Node>),
    Neg(Box<Node>),
    TypeTest(bool, Box<Node>, String),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Op {
    Mul,
    Div,
    IntDiv,
    Mod,
    Add,
    Sub,
    Concat,
    Union,
    Lt,
    Gt,
    Le,
    Ge,
    Eq,
    Ne,
    Equiv,
    NotEquiv,
    In,
    Contains,
    And,
    Or,
    Xor,
    Implies,
}

/// Supported functions.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Func {
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

fn func_by_name(name: &str) -> Option<Func> {
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

// ---------------------------------------------------------------------------------------------
// Lexer

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Int(i64),
    Dec(f64),
    Var(String),
    Special(String),
    Sym(&'static str),
    End,
}

fn lex(src: &str) -> Result<Vec<Tok>, String> {
    let chars: Vec<char> = src.chars().collect();
    let mut i = 0;
    let mut out = Vec::new();
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        if c == '/' && chars.get(i + 1) == Some(&'/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
            continue;
        }
        if c == '/' && chars.get(i + 1) == Some(&'*') {
            i += 2;
            while i + 1 < chars.len() && !(chars[i] == '*' && chars[i + 1] == '/') {
                i += 1;
            }
            i += 2;
            continue;
        }
        if c == '\'' || c == '`' {
            let quote = c;
            i += 1;
            let mut s = String::new();
            loop {
                let Some(&ch) = chars.get(i) else {
                    return Err("unterminated string".into());
                };
                i += 1;
                if ch == quote {
                    break;
                }
                if ch == '\\' {
                    let Some(&esc) = chars.get(i) else {
                        return Err("bad escape".into());
                    };
                    i += 1;
                    match esc {
                        'n' => s.push('\n'),
                        'r' => s.push('\r'),
                        't' => s.push('\t'),
                        'f' => s.push('\u{c}'),
                        'u' => {
                            let hex: String = chars.iter().skip(i).take(4).collect();
                            let code = u32::from_str_radix(&hex, 16).map_err(|e| e.to_string())?;
                            s.push(char::from_u32(code).unwrap_or('\u{fffd}'));
                            i += 4;
                        }
                        other => s.push(other),
                    }
                } else {
                    s.push(ch);
                }
            }
            out.push(if quote == '`' {
                Tok::Ident(s)
            } else {
                Tok::Str(s)
            });
            continue;
        }
        if c.is_ascii_digit() {
            let start = i;
            while i < chars.len() && chars[i].is_ascii_digit() {
                i += 1;
            }
            let mut is_dec = false;
            if i + 1 < chars.len() && chars[i] == '.' && chars[i + 1].is_ascii_digit() {
                is_dec = true;
                i += 1;
                while i < chars.len() && chars[i].is_ascii_digit() {
                    i += 1;
                }
            }
            let text: String = chars[start..i].iter().collect();
            out.push(if is_dec {
                Tok::Dec(text.parse().map_err(|_| "bad number")?)
            } else {
                Tok::Int(text.parse().map_err(|_| "bad number")?)
            });
            continue;
        }
        if c.is_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            out.push(Tok::Ident(chars[start..i].iter().collect()));
            continue;
        }
        if c == '%' {
            i += 1;
            if chars.get(i) == Some(&'\'') || chars.get(i) == Some(&'`') {
                let quote = chars[i];
                i += 1;
                let start = i;
                while i < chars.len() && chars[i] != quote {
                    i += 1;
                }
                out.push(Tok::Var(chars[start..i].iter().collect()));
                i += 1;
            } else {
                let start = i;
                while i < chars.len()
                    && (chars[i].is_alphanumeric() || chars[i] == '_' || chars[i] == '-')
                {
                    i += 1;
                }
                out.push(Tok::Var(chars[start..i].iter().collect()));
            }
            continue;
        }
        if c == '$' {
            let start = i + 1;
            i += 1;
            while i < chars.len() && chars[i].is_alphanumeric() {
                i += 1;
            }
            out.push(Tok::Special(chars[start..i].iter().collect()));
            continue;
        }
        let two: String = chars.iter().skip(i).take(2).collect();
        let sym: &'static str = match two.as_str() {
            "<=" => "<=",
            ">=" => ">=",
            "!=" => "!=",
            "!~" => "!~",
            _ => match c {
                '.' => ".",
                '(' => "(",
                ')' => ")",
                '[' => "[",
                ']' => "]",
                '{' => "{",
                '}' => "}",
                ',' => ",",
                '=' => "=",
                '~' => "~",
                '<' => "<",
                '>' => ">",
                '|' => "|",
                '&' => "&",
                '+' => "+",
                '-' => "-",
                '*' => "*",
                '/' => "/",
                _ => return Err(format!("unexpected character {c:?}")),
            },
        };
        i += sym.len();
        out.push(Tok::Sym(sym));
    }
    out.push(Tok::End);
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Parser (precedence climbing)

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> &Tok {
        self.toks.get(self.pos).unwrap_or(&Tok::End)
    }

    fn next(&mut self) -> Tok {
        let t = self.peek().clone();
        self.pos += 1;
        t
    }

    fn eat_sym(&mut self, s: &str) -> bool {
        if matches!(self.peek(), Tok::Sym(x) if *x == s) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect_sym(&mut self, s: &str) -> Result<(), String> {
        if self.eat_sym(s) {
            Ok(())
        } else {
            Err(format!("expected {s}, found {:?}", self.peek()))
        }
    }

    fn peek_op(&self) -> Option<(Op, u8)> {
        // Binding power: higher binds tighter.
        let op = match self.peek() {
            Tok::Sym("*") => (Op::Mul, 9),
            Tok::Sym("/") => (Op::Div, 9),
            Tok::Ident(w) if w == "div" => (Op::IntDiv, 9),
            Tok::Ident(w) if w == "mod" => (Op::Mod, 9),
            Tok::Sym("+") => (Op::Add, 8),
            Tok::Sym("-") => (Op::Sub, 8),
            Tok::Sym("&") => (Op::Concat, 8),
            Tok::Sym("|") => (Op::Union, 6),
            Tok::Sym("<") => (Op::Lt, 5),
            Tok::Sym(">") => (Op::Gt, 5),
            Tok::Sym("<=") => (Op::Le, 5),
            Tok::Sym(">=") => (Op::Ge, 5),
            Tok::Sym("=") => (Op::Eq, 4),
            Tok::Sym("!=") => (Op::Ne, 4),
            Tok::Sym("~") => (Op::Equiv, 4),
            Tok::Sym("!~") => (Op::NotEquiv, 4),
            Tok::Ident(w) if w == "in" => (Op::In, 3),
            Tok::Ident(w) if w == "contains" => (Op::Contains, 3),
            Tok::Ident(w) if w == "and" => (Op::And, 2),
            Tok::Ident(w) if w == "or" => (Op::Or, 1),
            Tok::Ident(w) if w == "xor" => (Op::Xor, 1),
            Tok::Ident(w) if w == "implies" => (Op::Implies, 0),
            _ => return None,
        };
        Some(op)
    }

    fn expr(&mut self, min_bp: u8) -> Result<Node, String> {
        let mut lhs = self.unary()?;
        loop {
            // `is` / `as` bind at level 7.
            if let Tok::Ident(w) = self.peek()
                && (w == "is" || w == "as")
                && min_bp <= 7
            {
                let is = w == "is";
                self.pos += 1;
                let name = self.type_name()?;
                lhs = Node::TypeTest(is, Box::new(lhs), name);
                continue;
            }
            let Some((op, bp)) = self.peek_op() else {
                break;
            };
            if bp < min_bp {
                break;
            }
            self.pos += 1;
            let rhs = self.expr(bp + 1)?;
            lhs = Node::Binary(op, Box::new(lhs), Box::new(rhs));
        }
        Ok(lhs)
    }

    fn type_name(&mut self) -> Result<String, String> {
        let Tok::Ident(mut name) = self.next() else {
            return Err("expected a type name".into());
        };
        while self.eat_sym(".") {
            let Tok::Ident(part) = self.next() else {
                return Err("expected a type name".into());
            };
            name = part;
        }
        Ok(name)
    }

    fn unary(&mut self) -> Result<Node, String> {
        if self.eat_sym("-") {
            return Ok(Node::Neg(Box::new(self.unary()?)));
        }
        if self.eat_sym("+") {
            return self.unary();
        }
        self.postfix()
    }

    fn postfix(&mut self) -> Result<Node, String> {
        let mut node = self.term()?;
        loop {
            if self.eat_sym(".") {
                let Tok::Ident(name) = self.next() else {
                    return Err("expected a name after '.'".into());
                };
                if self.eat_sym("(") {
                    node = self.call(Some(node), &name)?;
                } else {
                    node = Node::Member(Box::new(node), name);
                }
            } else if self.eat_sym("[") {
                let idx = self.expr(0)?;
                self.expect_sym("]")?;
                node = Node::Index(Box::new(node), Box::new(idx));
            } else {
                break;
            }
        }
        Ok(node)
    }

    fn call(&mut self, target: Option<Node>, name: &str) -> Result<Node, String> {
        let func = func_by_name(name).ok_or_else(|| format!("unsupported function {name}()"))?;
        let mut args = Vec::new();
        if !self.eat_sym(")") {
            loop {
                if matches!(func, Func::Is | Func::As | Func::OfType) {
                    args.push(Node::Str(self.type_name()?));
                } else {
                    args.push(self.expr(0)?);
                }
                if self.eat_sym(")") {
                    break;
                }
                self.expect_sym(",")?;
            }
        }
        let regex = match (func, args.first()) {
            (Func::Matches | Func::ReplaceMatches, Some(Node::Str(re))) => Some(
                regex_lite::Regex::new(re).map_err(|e| format!("bad regular expression: {e}"))?,
            ),
            (Func::Matches | Func::ReplaceMatches, _) => {
                return Err("only literal regular expressions are supported".into());
            }
            _ => None,
        };
        Ok(Node::Call {
            target: target.map(Box::new),
            func,
            args,
            regex,
        })
    }

    fn term(&mut self) -> Result<Node, String> {
        match self.next() {
            Tok::Str(s) => Ok(Node::Str(s)),
            Tok::Int(i) => Ok(Node::Int(i)),
            Tok::Dec(d) => Ok(Node::Dec(d)),
            Tok::Var(v) => Ok(Node::Var(v)),
            Tok::Special(s) if s == "this" => Ok(Node::This),
            Tok::Special(s) => Err(format!("unsupported ${s}")),
            Tok::Sym("(") => {
                let e = self.expr(0)?;
                self.expect_sym(")")?;
                Ok(e)
            }
            Tok::Sym("{") => {
                self.expect_sym("}")?;
                Ok(Node::Empty)
            }
            Tok::Ident(name) => {
                if name == "true" {
                    return Ok(Node::Bool(true));
                }
                if name == "false" {
                    return Ok(Node::Bool(false));
                }
                if self.eat_sym("(") {
                    return self.call(None, &name);
                }
                Ok(Node::Ident(name))
            }
            t => Err(format!("unexpected {t:?}")),
        }
    }
}

impl Expr {
    /// Compiles an expression; unsupported functions or syntax are errors.
    pub fn compile(src: &str) -> Result<Expr, String> {
        let toks = lex(src)?;
        let mut p = Parser { toks, pos: 0 };
        let node = p.expr(0)?;
        if p.peek() != &Tok::End {
            return Err(format!("unexpected {:?}", p.peek()));
        }
        Ok(Expr(node))
    }

    /// Evaluates an invariant at `focus`: `Some(true/false)`, or `None` when the result is empty
    /// or not a boolean, or evaluation failed (treated as "not violated" by callers).
    pub fn check(&self, focus: &Value, resource: &Value, root: &Value) -> Option<bool> {
        let env = Env {
            resource,
            root,
            context: focus,
        };
        let input = vec![Item::Json(focus)];
        let out = eval(&self.0, &input, &input, &env).ok()?;
        match out.as_slice() {
            [] => None,
            [one] => one.as_bool(),
            // A non-empty collection that is not a single boolean counts as true.
            _ => Some(true),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Evaluation

struct Env<'a> {
    resource: &'a Value,
    root: &'a Value,
    context: &'a Value,
}

#[derive(Debug, Clone)]
enum Item<'a> {
    Json(&'a Value),
    Bool(bool),
    Int(i64),
    Dec(f64),
    Str(Cow<'a, str>),
}

type Coll<'a> = Vec<Item<'a>>;

impl<'a> Item<'a> {
    fn as_bool(&self) -> Option<bool> {
        match self {
            Item::Bool(b) => Some(*b),
            Item::Json(Value::Bool(b)) => Some(*b),
            _ => None,
        }
    }

    fn as_str(&self) -> Option<&str> {
        match self {
            Item::Str(s) => Some(s),
            Item::Json(Value::String(s)) => Some(s),
            _ => None,
        }
    }

    fn as_num(&self) -> Option<f64> {
        match self {
            Item::Int(i) => Some(*i as f64),
            Item::Dec(d) => Some(*d),
            Item::Json(Value::Number(n)) => n.as_f64(),
            _ => None,
        }
    }

    fn as_int(&self) -> Option<i64> {
        match self {
            Item::Int(i) => Some(*i),
            Item::Json(Value::Number(n)) => n.as_i64(),
            _ => None,
        }
    }

    fn json(&self) -> Option<&'a Value> {
        match self {
            Item::Json(v) => Some(v),
            _ => None,
        }
    }

    fn is_primitive(&self) -> bool {
        !matches!(self, Item::Json(Value::Object(_) | Value::Array(_)))
    }
}

fn push_json<'a>(out: &mut Coll<'a>, v: &'a Value) {
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

fn single<'a, 'c>(c: &'c Coll<'a>) -> Result<Option<&'c Item<'a>>, String> {
    match c.len() {
        0 => Ok(None),
        1 => Ok(c.first()),
        _ => Err("expected a single item".into()),
    }
}

fn truthy(c: &Coll) -> Result<Option<bool>, String> {
    match single(c)? {
        None => Ok(None),
        Some(i) => Ok(Some(i.as_bool().unwrap_or(true))),
    }
}

fn boolean<'a>(b: Option<bool>) -> Coll<'a> {
    b.map(|b| vec![Item::Bool(b)]).unwrap_or_default()
}

fn eval<'a>(
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

fn is_type(item: &Item, name: &str) -> bool {
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

fn type_op<'a>(v: &Coll<'a>, name: &str, is: bool) -> Result<Coll<'a>, String> {
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

fn contains_item(c: &Coll, x: &Item) -> bool {
    c.iter().any(|y| equal(x, y) == Some(true))
}

fn union<'a>(l: Coll<'a>, r: Coll<'a>) -> Coll<'a> {
    let mut out: Coll<'a> = Vec::with_capacity(l.len() + r.len());
    for i in l.into_iter().chain(r) {
        if !contains_item(&out, &i) {
            out.push(i);
        }
    }
    out
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

fn call<'a>(
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
        Func::Resolve => Vec::new(),
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
        // The narrative's XHTML is not parsed here.
        Func::HtmlChecks => boolean(Some(true)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(expr: &str, focus: &Value) -> Option<bool> {
        Expr::compile(expr).unwrap().check(focus, focus, focus)
    }

    #[test]
    fn period_start_must_not_follow_end() {
        let per1 = "start.hasValue().not() or end.hasValue().not() or (start <= end)";
        assert_eq!(
            check(per1, &json!({"start": "2020-01-02", "end": "2020-01-01"})),
            Some(false)
        );
        assert_eq!(
            check(per1, &json!({"start": "2020-01-01", "end": "2020-01-02"})),
            Some(true)
        );
        assert_eq!(
            check(
                per1,
                &json!({"start": "2020-01-01T10:00:00+01:00", "end": "2020-01-01T09:30:00Z"})
            ),
            Some(true)
        );
        assert_eq!(check(per1, &json!({"start": "2020-01-01"})), Some(true));
    }

    #[test]
    fn bundle_document_invariants_evaluate_on_json() {
        let bundle = json!({"resourceType": "Bundle", "type": "document",
            "identifier": {"system": "s"},
            "entry": [{"resource": {"resourceType": "Composition"}}]});
        assert_eq!(
            check(
                "type = 'document' implies (identifier.system.exists() and identifier.value.exists())",
                &bundle
            ),
            Some(false)
        );
        assert_eq!(
            check(
                "type = 'document' implies entry.first().resource.is(Composition)",
                &bundle
            ),
            Some(true)
        );
        assert_eq!(check("Bundle.entry.count() = 1", &bundle), Some(true));
    }

    #[test]
    fn choice_elements_are_found_by_their_short_name() {
        let obs = json!({"resourceType": "Observation", "valueQuantity": {"value": 1}, "dataAbsentReason": {"text": "x"}});
        assert_eq!(
            check("dataAbsentReason.empty() or value.empty()", &obs),
            Some(false)
        );
        assert_eq!(check("value.value > 0", &obs), Some(true));
    }

    #[test]
    fn regular_expressions_and_string_functions_work() {
        let id = json!({"value": "A1234BC"});
        assert_eq!(
            check("value.matches('^[A-Z][0-9]{4}[A-Z]{2}$')", &id),
            Some(true)
        );
        assert_eq!(check("value.matches('^[0-9]+$')", &id), Some(false));
        assert_eq!(check("value.substring(1, 4) = '1234'", &id), Some(true));
        assert_eq!(
            check("value.replaceMatches('[0-9]', '') = 'ABC'", &id),
            Some(true)
        );
    }

    #[test]
    fn three_valued_logic_follows_the_specification() {
        let v = json!({});
        assert_eq!(check("{} or true", &v), Some(true));
        assert_eq!(check("{} and true", &v), None);
        assert_eq!(check("false implies {}", &v), Some(true));
        assert_eq!(check("(1 + 2) = 3 and 'a' & 'b' = 'ab'", &v), Some(true));
        assert_eq!(check("'x' in ('x' | 'y')", &v), Some(true));
    }

    #[test]
    fn contained_resources_must_be_referenced() {
        let dom3 = "contained.where((('#'+id in (%resource.descendants().reference | %resource.descendants().ofType(canonical) | %resource.descendants().ofType(uri) | %resource.descendants().ofType(url))) or descendants().where(reference = '#').exists() or descendants().where(as(canonical) = '#').exists() or descendants().where(as(uri) = '#').exists()).not()).trace('unmatched', id).empty()";
        let ok = json!({"resourceType": "Patient", "contained": [{"resourceType": "Organization", "id": "o"}],
            "managingOrganization": {"reference": "#o"}});
        let bad = json!({"resourceType": "Patient", "contained": [{"resourceType": "Organization", "id": "o"}]});
        assert_eq!(check(dom3, &ok), Some(true));
        assert_eq!(check(dom3, &bad), Some(false));
    }

    #[test]
    fn unsupported_functions_fail_to_compile() {
        assert!(Expr::compile("code.memberOf('http://x')").is_err());
        assert!(Expr::compile("name.where(").is_err());
    }
}
