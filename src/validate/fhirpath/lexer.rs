//! Tokens and the lexer: comments and whitespace are skipped, `'...'` strings and `` `...` ``
//! delimited identifiers are unescaped, and `%var` / `$this` are single tokens.

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Tok {
    Ident(String),
    Str(String),
    Int(i64),
    Dec(f64),
    Var(String),
    Special(String),
    Sym(&'static str),
    End,
}

pub(super) fn lex(src: &str) -> Result<Vec<Tok>, String> {
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
