//! FHIR XML: a serialiser ([`to_xml`]) and a parser ([`from_xml`]) between the gateway's lossless
//! FHIR JSON tree and the FHIR XML format, for FHIR STU3 (ITK3 Transfer of Care messages and their
//! acknowledgements are STU3 XML only) and R4.
//!
//! The FHIR rules are written here; quick-xml only tokenises. What the module follows
//! (<https://hl7.org/fhir/STU3/xml.html>):
//! - the root element is the resource, in the namespace `http://hl7.org/fhir`;
//! - elements come in definition order, from the element tables of [`order`] (every resource and
//!   datatype of the version, generated from the StructureDefinitions through fhir-model): for a
//!   resource `id`, `meta`, `implicitRules`, `language`, `text`, `contained`, `extension`,
//!   `modifierExtension`, then its own elements; for a datatype or backbone element `extension`
//!   (and `modifierExtension`) first; the JSON key order does not matter;
//! - a primitive is an element with a `value` attribute (`<status value="final"/>`); its JSON
//!   `_name` companion (`id`, `extension`) goes on the same element
//!   (`<birthDate id="b" value="1970-01-01"><extension url="..."/></birthDate>`), and in a
//!   repeating primitive each item is one element (a `null` value with an extension gives an
//!   element with the extension only; the parser always gives the values array, with `null`
//!   for such items, and the `_name` array only when an item has an id or extensions);
//! - `id` of a datatype or backbone element, and `url` of an `Extension`, are attributes; the
//!   `id` of a resource is an element;
//! - a resource inside another (`Bundle.entry.resource`, `contained`,
//!   `Parameters.parameter.resource`, `Bundle.entry.response.outcome`) is wrapped in the element
//!   of its place: `<resource><Patient>...</Patient></resource>`;
//! - the narrative `div` is written as the XHTML element the JSON string holds (checked to be
//!   well-formed XHTML with one `div` root; `xmlns="http://www.w3.org/1999/xhtml"` is added when
//!   the string lacks it) and read back as that markup, exactly as it stands in the document;
//! - decimals are written with the exact text of the JSON number (`2.50` stays `2.50`), and read
//!   back as JSON numbers with the same text; integers, unsignedInt and positiveInt as JSON
//!   integers, booleans as JSON booleans, every other primitive as a string.
//!
//! The parser reads untrusted messages (acknowledgements from GP systems, over MESH):
//! - it refuses any DOCTYPE, and so every entity declaration (internal, external, billion
//!   laughs): only the five XML entities and character references are understood, and an
//!   undefined entity reference is an error;
//! - it bounds the input size ([`XmlLimits::max_bytes`], 10 MiB by default) and the element
//!   depth ([`XmlLimits::max_depth`], 64 by default, XHTML included);
//! - it refuses, with the path of the place, an element that the FHIR version does not define
//!   there, an element that does not repeat given twice, an unknown resource type, text
//!   outside the narrative, an unexpected attribute (attributes in other namespaces, such as
//!   `xsi:schemaLocation`, are ignored), a value that is not valid for its primitive type, and a
//!   primitive element with neither a value nor an extension. Element order is not enforced when
//!   reading (the output is in definition order either way). Comments and processing
//!   instructions outside the narrative are dropped (FHIR JSON has no place for them).
//!
//! The serialiser refuses what would not come back the same from XML: an unknown key, a `null`,
//! an empty array, an array for an element that does not repeat (or a single value for one that
//! does), a value of the wrong JSON type for its primitive, and characters XML 1.0 cannot carry.
//!
//! R4 uses the tables of fhir-model's R4B model, which equal R4 for every resource the gateway
//! exchanges (DESIGN §14).

pub mod order;
mod read;
mod write;

use std::fmt;

pub use read::{from_xml, from_xml_with};
pub use write::to_xml;

/// The FHIR namespace of every FHIR element.
pub const FHIR_NS: &str = "http://hl7.org/fhir";
/// The XHTML namespace of the narrative.
pub const XHTML_NS: &str = "http://www.w3.org/1999/xhtml";

/// The FHIR version of a document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FhirVersion {
    /// FHIR STU3 (3.0.2): GP Connect, ITK3.
    Stu3,
    /// FHIR R4 (4.0.1), through the R4B model.
    R4,
}

/// What the parser accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct XmlLimits {
    /// The largest document, in bytes.
    pub max_bytes: usize,
    /// The deepest element nesting (the root is depth 1; the narrative's XHTML counts).
    pub max_depth: usize,
}

impl Default for XmlLimits {
    fn default() -> Self {
        XmlLimits {
            max_bytes: 10 * 1024 * 1024,
            max_depth: 64,
        }
    }
}

/// Why a document could not be read or written. `path` is where, as element names from the
/// root (`Bundle.entry[1].resource.MessageHeader.event`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum XmlError {
    #[error("the XML document is {size} bytes, over the limit of {limit}")]
    TooLarge { size: usize, limit: usize },
    #[error("{path}: elements nest deeper than the limit of {limit}")]
    TooDeep { path: String, limit: usize },
    #[error("DOCTYPE and entity declarations are refused in FHIR XML")]
    Doctype,
    #[error(
        "{path}: undefined entity reference &{name}; (only the five XML entities and character references are allowed)"
    )]
    Entity { path: String, name: String },
    #[error("the document is not UTF-8 or declares another encoding: {0}")]
    Encoding(String),
    #[error("malformed XML at byte {position}: {message}")]
    Syntax { position: u64, message: String },
    #[error("{path}: element <{name}> is not in the FHIR namespace ({found})")]
    Namespace {
        path: String,
        name: String,
        found: String,
    },
    #[error("{path}: {name} is not a {version:?} resource type")]
    UnknownResource {
        path: String,
        name: String,
        version: FhirVersion,
    },
    #[error("{path}: {name} is not a FHIR {version:?} element here")]
    UnknownElement {
        path: String,
        name: String,
        version: FhirVersion,
    },
    #[error("{path}: {name} does not repeat, but is given more than once")]
    Repeated { path: String, name: String },
    #[error("{path}: unexpected attribute {name}")]
    Attribute { path: String, name: String },
    #[error("{path}: unexpected text content")]
    Text { path: String },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
    #[error("the element table is broken: {0}")]
    Table(String),
}

/// Escapes `text` for an attribute value in double quotes, keeping tabs and line ends (which an
/// XML reader turns into spaces when they stand literally in an attribute).
pub(crate) fn escape_attr(text: &str, out: &mut String) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            '\t' => out.push_str("&#9;"),
            c => out.push(c),
        }
    }
}

/// Whether XML 1.0 can carry `c` at all (its `Char` production).
pub(crate) fn xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

/// The first character of `text` that XML 1.0 cannot carry.
pub(crate) fn bad_char(text: &str) -> Option<char> {
    text.chars().find(|c| !xml_char(*c))
}

/// Checks the lexical form of a number primitive (the JSON number's text when writing, the
/// `value` attribute when reading) and returns the JSON number.
pub(crate) fn number(kind: order::Primitive, text: &str) -> Result<serde_json::Number, String> {
    use order::Primitive as P;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let int_form = |s: &str| {
        let body = s.strip_prefix('-').unwrap_or(s);
        digits(body) && (body == "0" || !body.starts_with('0'))
    };
    let ok = match kind {
        P::Decimal => {
            let (mantissa, exponent) = match text.find(['e', 'E']) {
                Some(i) => (&text[..i], Some(&text[i + 1..])),
                None => (text, None),
            };
            let (int, frac) = match mantissa.split_once('.') {
                Some((i, f)) => (i, Some(f)),
                None => (mantissa, None),
            };
            int_form(int)
                && frac.is_none_or(digits)
                && exponent.is_none_or(|e| digits(e.strip_prefix(['+', '-']).unwrap_or(e)))
        }
        P::Integer | P::UnsignedInt | P::PositiveInt => {
            let min = match kind {
                P::Integer => i64::from(i32::MIN),
                P::UnsignedInt => 0,
                _ => 1,
            };
            int_form(text)
                && text
                    .parse::<i64>()
                    .is_ok_and(|n| n >= min && n <= i64::from(i32::MAX))
        }
        P::Boolean | P::String => false,
    };
    if !ok {
        return Err(format!("{text:?} is not a valid {}", kind.name()));
    }
    serde_json::from_str(text).map_err(|e| format!("{text:?}: {e}"))
}

impl order::Primitive {
    pub(crate) fn name(self) -> &'static str {
        match self {
            order::Primitive::Boolean => "boolean",
            order::Primitive::Decimal => "decimal",
            order::Primitive::Integer => "integer",
            order::Primitive::UnsignedInt => "unsignedInt",
            order::Primitive::PositiveInt => "positiveInt",
            order::Primitive::String => "string",
        }
    }
}

/// A path under construction: `Bundle.entry[1].resource.MessageHeader`.
#[derive(Debug, Clone)]
pub(crate) struct Path(String);

impl Path {
    pub fn root(name: &str) -> Path {
        Path(name.to_string())
    }

    pub fn child(&self, name: &str, index: Option<usize>) -> Path {
        match index {
            Some(i) => Path(format!("{}.{name}[{i}]", self.0)),
            None => Path(format!("{}.{name}", self.0)),
        }
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&Path> for String {
    fn from(p: &Path) -> String {
        p.0.clone()
    }
}

#[cfg(test)]
mod tests;
