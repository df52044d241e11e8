//! The XHTML rules FHIR R4 sets for narrative (`Narrative.div`, invariants txt-1 and txt-2, the
//! `htmlChecks()` FHIRPath function): a `div` in the XHTML namespace as the root, only the basic
//! formatting elements and attributes of HTML 4 (text, lists, tables, images, links), no
//! scripts, forms, frames, objects or style sheets, no event-handler attributes, no `javascript:`
//! links, and some non-whitespace content.

/// Elements narrative may use.
const ELEMENTS: &[&str] = &[
    "div",
    "p",
    "br",
    "hr",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "ul",
    "ol",
    "li",
    "dl",
    "dt",
    "dd",
    "table",
    "thead",
    "tbody",
    "tfoot",
    "tr",
    "td",
    "th",
    "caption",
    "colgroup",
    "col",
    "a",
    "img",
    "span",
    "b",
    "i",
    "u",
    "s",
    "em",
    "strong",
    "small",
    "big",
    "tt",
    "code",
    "pre",
    "blockquote",
    "q",
    "cite",
    "abbr",
    "acronym",
    "sub",
    "sup",
    "address",
    "dfn",
    "kbd",
    "samp",
    "var",
    "del",
    "ins",
    "bdo",
];

/// Attributes narrative may use (event handlers, `on*`, never).
const ATTRIBUTES: &[&str] = &[
    "xmlns",
    "id",
    "class",
    "style",
    "title",
    "lang",
    "xml:lang",
    "dir",
    "href",
    "name",
    "src",
    "alt",
    "width",
    "height",
    "border",
    "cellpadding",
    "cellspacing",
    "colspan",
    "rowspan",
    "align",
    "valign",
    "summary",
    "span",
    "abbr",
    "scope",
    "headers",
    "axis",
    "char",
    "charoff",
    "rules",
    "frame",
    "datetime",
    "cite",
    "start",
    "type",
    "value",
    "compact",
];

const XHTML: &str = "http://www.w3.org/1999/xhtml";

/// Checks a narrative `div`; the error says what is not allowed.
pub fn check(div: &str) -> Result<(), String> {
    let mut rest = div.trim_start();
    if !rest.starts_with("<div") {
        return Err("the narrative must be a <div>".into());
    }
    let mut first = true;
    let mut content = false;
    while let Some(open) = rest.find('<') {
        if !rest[..open].trim().is_empty() {
            content = true;
        }
        let after = &rest[open + 1..];
        // Comments and processing instructions are not allowed in narrative.
        if after.starts_with('!') || after.starts_with('?') {
            return Err(
                "comments, declarations and processing instructions are not allowed".into(),
            );
        }
        let Some(close) = find_tag_end(after) else {
            return Err("a tag is not closed".into());
        };
        let tag = &after[..close];
        rest = &after[close + 1..];
        if let Some(name) = tag.strip_prefix('/') {
            check_name(name.trim())?;
            continue;
        }
        let tag = tag.strip_suffix('/').unwrap_or(tag);
        let (name, attrs) = match tag.find(|c: char| c.is_whitespace()) {
            Some(i) => (&tag[..i], &tag[i..]),
            None => (tag, ""),
        };
        check_name(name)?;
        if name.eq_ignore_ascii_case("img") {
            content = true;
        }
        let attributes = parse_attributes(attrs)?;
        for (attr, value) in &attributes {
            let lower = attr.to_ascii_lowercase();
            if lower.starts_with("on") {
                return Err(format!("the event handler attribute {attr} is not allowed"));
            }
            if !ATTRIBUTES.contains(&lower.as_str()) && !lower.starts_with("xmlns:") {
                return Err(format!("the attribute {attr} is not allowed"));
            }
            let v = value.trim().to_ascii_lowercase();
            if (lower == "href" || lower == "src")
                && (v.starts_with("javascript:")
                    || v.starts_with("vbscript:")
                    || v.starts_with("data:text/html"))
            {
                return Err(format!("{attr} may not run a script"));
            }
        }
        if first {
            first = false;
            let ns = attributes
                .iter()
                .find(|(a, _)| a == "xmlns")
                .map(|(_, v)| v.as_str());
            if ns != Some(XHTML) {
                return Err(format!(
                    "the <div> must be in the XHTML namespace ({XHTML})"
                ));
            }
        }
    }
    if !rest.trim().is_empty() {
        content = true;
    }
    if !content {
        return Err("the narrative has no content".into());
    }
    Ok(())
}

fn check_name(name: &str) -> Result<(), String> {
    let lower = name.to_ascii_lowercase();
    if ELEMENTS.contains(&lower.as_str()) {
        Ok(())
    } else {
        Err(format!("the element <{name}> is not allowed in narrative"))
    }
}

/// The end of a tag (`>` outside quoted attribute values).
fn find_tag_end(s: &str) -> Option<usize> {
    let mut quote: Option<char> = None;
    for (i, c) in s.char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, '>') => return Some(i),
            _ => {}
        }
    }
    None
}

fn parse_attributes(s: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    let mut rest = s.trim();
    while !rest.is_empty() {
        let eq = rest
            .find('=')
            .ok_or_else(|| format!("an attribute without a value: {rest}"))?;
        let name = rest[..eq].trim().to_string();
        let after = rest[eq + 1..].trim_start();
        let q = after.chars().next().filter(|c| *c == '"' || *c == '\'');
        let Some(q) = q else {
            return Err(format!("the value of {name} is not quoted"));
        };
        let end = after[1..]
            .find(q)
            .ok_or_else(|| format!("the value of {name} is not closed"))?;
        out.push((name, after[1..1 + end].to_string()));
        rest = after[end + 2..].trim_start();
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::check;

    #[test]
    fn ordinary_narrative_passes() {
        assert_eq!(
            check(
                r#"<div xmlns="http://www.w3.org/1999/xhtml"><p>Ramipril <b>2.5 mg</b></p><ul><li>one</li></ul><a href="https://example.org/x">link</a><img src="pic.png" alt="x"/></div>"#
            ),
            Ok(())
        );
    }

    #[test]
    fn scripts_handlers_and_foreign_markup_are_refused() {
        let bad = [
            r#"<div xmlns="http://www.w3.org/1999/xhtml"><script>alert(1)</script></div>"#,
            r#"<div xmlns="http://www.w3.org/1999/xhtml"><p onclick="x()">a</p></div>"#,
            r#"<div xmlns="http://www.w3.org/1999/xhtml"><a href="javascript:x()">a</a></div>"#,
            r#"<div xmlns="http://www.w3.org/1999/xhtml"><iframe src="https://x"></iframe></div>"#,
            r#"<div xmlns="http://www.w3.org/1999/xhtml"><form>a</form></div>"#,
            r#"<div><p>no namespace</p></div>"#,
            r#"<p xmlns="http://www.w3.org/1999/xhtml">not a div</p>"#,
            r#"<div xmlns="http://www.w3.org/1999/xhtml">   </div>"#,
            r#"<div xmlns="http://www.w3.org/1999/xhtml"><!-- hidden --><p>a</p></div>"#,
        ];
        for b in bad {
            assert!(check(b).is_err(), "{b}");
        }
    }
}
