//! The AST and its precedence-climbing parser. Functions are resolved by name here (an unknown
//! one is a compile error) and literal regular expressions are compiled once.

use super::functions::{Func, func_by_name};
use super::lexer::{Tok, lex};

#[derive(Debug)]
pub(super) enum Node {
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
pub(super) enum Op {
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

/// Lexes and parses a whole expression; anything left over after it is an error.
pub(super) fn parse(src: &str) -> Result<Node, String> {
    let toks = lex(src)?;
    let mut p = Parser { toks, pos: 0 };
    let node = p.expr(0)?;
    if p.peek() != &Tok::End {
        return Err(format!("unexpected {:?}", p.peek()));
    }
    Ok(node)
}

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
