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

/// The deepest expression tree compiled (and so evaluated and dropped, both recursively), and
/// the deepest the parser recurses (parentheses, unary minus). The R4 core, UK Core and prison
/// invariants stay far below both; an expression past them fails to compile instead of
/// overflowing the stack (found by `tests/fuzz`).
pub(super) const MAX_DEPTH: usize = 128;

/// Lexes and parses a whole expression; anything left over after it is an error.
pub(super) fn parse(src: &str) -> Result<Node, String> {
    let toks = lex(src)?;
    let mut p = Parser {
        toks,
        pos: 0,
        nesting: 0,
    };
    let (node, _) = p.expr(0)?;
    if p.peek() != &Tok::End {
        return Err(format!("unexpected {:?}", p.peek()));
    }
    Ok(node)
}

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
    /// How deep the parser has recursed.
    nesting: usize,
}

/// A parsed node and the depth of its tree.
type Parsed = (Node, usize);

/// The depth of a node over children of these depths; an error past [`MAX_DEPTH`].
fn over(children: &[usize]) -> Result<usize, String> {
    let depth = children.iter().copied().max().unwrap_or(0) + 1;
    if depth > MAX_DEPTH {
        Err(format!(
            "the expression is nested more than {MAX_DEPTH} levels deep"
        ))
    } else {
        Ok(depth)
    }
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

    /// Runs `parse` one level deeper, refusing past [`MAX_DEPTH`].
    fn nested<T>(
        &mut self,
        parse: impl FnOnce(&mut Self) -> Result<T, String>,
    ) -> Result<T, String> {
        if self.nesting >= MAX_DEPTH {
            return Err(format!(
                "the expression is nested more than {MAX_DEPTH} levels deep"
            ));
        }
        self.nesting += 1;
        let result = parse(self);
        self.nesting -= 1;
        result
    }

    fn expr(&mut self, min_bp: u8) -> Result<Parsed, String> {
        self.nested(|p| p.expr_at(min_bp))
    }

    fn expr_at(&mut self, min_bp: u8) -> Result<Parsed, String> {
        let (mut lhs, mut depth) = self.unary()?;
        loop {
            // `is` / `as` bind at level 7.
            if let Tok::Ident(w) = self.peek()
                && (w == "is" || w == "as")
                && min_bp <= 7
            {
                let is = w == "is";
                self.pos += 1;
                let name = self.type_name()?;
                depth = over(&[depth])?;
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
            let (rhs, rhs_depth) = self.expr(bp + 1)?;
            depth = over(&[depth, rhs_depth])?;
            lhs = Node::Binary(op, Box::new(lhs), Box::new(rhs));
        }
        Ok((lhs, depth))
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

    fn unary(&mut self) -> Result<Parsed, String> {
        if self.eat_sym("-") {
            let (operand, depth) = self.nested(Self::unary)?;
            return Ok((Node::Neg(Box::new(operand)), over(&[depth])?));
        }
        if self.eat_sym("+") {
            return self.nested(Self::unary);
        }
        self.postfix()
    }

    fn postfix(&mut self) -> Result<Parsed, String> {
        let (mut node, mut depth) = self.term()?;
        loop {
            if self.eat_sym(".") {
                let Tok::Ident(name) = self.next() else {
                    return Err("expected a name after '.'".into());
                };
                if self.eat_sym("(") {
                    (node, depth) = self.call(Some((node, depth)), &name)?;
                } else {
                    depth = over(&[depth])?;
                    node = Node::Member(Box::new(node), name);
                }
            } else if self.eat_sym("[") {
                let (idx, idx_depth) = self.expr(0)?;
                self.expect_sym("]")?;
                depth = over(&[depth, idx_depth])?;
                node = Node::Index(Box::new(node), Box::new(idx));
            } else {
                break;
            }
        }
        Ok((node, depth))
    }

    fn call(&mut self, target: Option<Parsed>, name: &str) -> Result<Parsed, String> {
        let func = func_by_name(name).ok_or_else(|| format!("unsupported function {name}()"))?;
        let mut depths = vec![target.as_ref().map_or(0, |(_, d)| *d)];
        let target = target.map(|(node, _)| node);
        let mut args = Vec::new();
        if !self.eat_sym(")") {
            loop {
                if matches!(func, Func::Is | Func::As | Func::OfType) {
                    args.push(Node::Str(self.type_name()?));
                } else {
                    let (arg, depth) = self.expr(0)?;
                    depths.push(depth);
                    args.push(arg);
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
        let depth = over(&depths)?;
        Ok((
            Node::Call {
                target: target.map(Box::new),
                func,
                args,
                regex,
            },
            depth,
        ))
    }

    fn term(&mut self) -> Result<Parsed, String> {
        let leaf = |node| Ok((node, 1));
        match self.next() {
            Tok::Str(s) => leaf(Node::Str(s)),
            Tok::Int(i) => leaf(Node::Int(i)),
            Tok::Dec(d) => leaf(Node::Dec(d)),
            Tok::Var(v) => leaf(Node::Var(v)),
            Tok::Special(s) if s == "this" => leaf(Node::This),
            Tok::Special(s) => Err(format!("unsupported ${s}")),
            Tok::Sym("(") => {
                let e = self.expr(0)?;
                self.expect_sym(")")?;
                Ok(e)
            }
            Tok::Sym("{") => {
                self.expect_sym("}")?;
                leaf(Node::Empty)
            }
            Tok::Ident(name) => {
                if name == "true" {
                    return leaf(Node::Bool(true));
                }
                if name == "false" {
                    return leaf(Node::Bool(false));
                }
                if self.eat_sym("(") {
                    return self.call(None, &name);
                }
                leaf(Node::Ident(name))
            }
            t => Err(format!("unexpected {t:?}")),
        }
    }
}
