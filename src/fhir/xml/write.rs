//! FHIR JSON to FHIR XML.

use quick_xml::events::Event;
use quick_xml::reader::Reader;
use serde_json::{Map, Value};

use super::order::{self, Kind, Primitive, Table, Type};
use super::{FHIR_NS, FhirVersion, Path, XHTML_NS, XmlError, bad_char, escape_attr, number};

/// Serialises a FHIR resource (a Bundle with its nested resources, or any other resource) in
/// the JSON form to FHIR XML of `version`: an XML declaration, then the resource in the FHIR
/// namespace, indented by two spaces. See the [module documentation](super) for the rules and
/// for what is refused.
pub fn to_xml(resource: &Value, version: FhirVersion) -> Result<String, XmlError> {
    let table = order::table(version)?;
    let mut w = Writer {
        table,
        version,
        out: String::with_capacity(4096),
    };
    w.out
        .push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let name = resource_type(resource, &Path::root("$"))?;
    w.resource(resource, &Path::root(name), 0, true)?;
    w.out.push('\n');
    Ok(w.out)
}

struct Writer<'t> {
    table: &'t Table,
    version: FhirVersion,
    out: String,
}

fn invalid(path: &Path, message: impl Into<String>) -> XmlError {
    XmlError::Invalid {
        path: path.into(),
        message: message.into(),
    }
}

fn resource_type<'v>(value: &'v Value, path: &Path) -> Result<&'v str, XmlError> {
    value
        .as_object()
        .ok_or_else(|| invalid(path, "a resource must be a JSON object"))?
        .get("resourceType")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid(path, "a resource needs a string resourceType"))
}

/// The items of an element: an array for a repeating element, one value otherwise.
fn items<'v>(
    value: &'v Value,
    many: bool,
    path: &Path,
    name: &str,
) -> Result<&'v [Value], XmlError> {
    match (value, many) {
        (Value::Array(items), true) if items.is_empty() => {
            Err(invalid(&path.child(name, None), "an empty array"))
        }
        (Value::Array(items), true) => Ok(items.as_slice()),
        (_, true) => Err(invalid(
            &path.child(name, None),
            "repeats: it must be an array",
        )),
        (Value::Array(_), false) => Err(invalid(
            &path.child(name, None),
            "does not repeat: it must not be an array",
        )),
        (v, false) => Ok(std::slice::from_ref(v)),
    }
}

impl Writer<'_> {
    fn indent(&mut self, depth: usize) {
        for _ in 0..depth {
            self.out.push_str("  ");
        }
    }

    fn check_text(&self, path: &Path, text: &str) -> Result<(), XmlError> {
        match bad_char(text) {
            Some(c) => Err(invalid(
                path,
                format!(
                    "the character U+{:04X} cannot be written in XML",
                    u32::from(c)
                ),
            )),
            None => Ok(()),
        }
    }

    fn attr(&mut self, name: &str, value: &str) {
        self.out.push(' ');
        self.out.push_str(name);
        self.out.push_str("=\"");
        escape_attr(value, &mut self.out);
        self.out.push('"');
    }

    /// `<Patient>...</Patient>` (with the FHIR namespace at the root).
    fn resource(
        &mut self,
        value: &Value,
        path: &Path,
        depth: usize,
        root: bool,
    ) -> Result<(), XmlError> {
        let name = resource_type(value, path)?;
        let Some(ty) = self.table.resource(name) else {
            return Err(XmlError::UnknownResource {
                path: path.into(),
                name: name.to_string(),
                version: self.version,
            });
        };
        let obj = value
            .as_object()
            .ok_or_else(|| invalid(path, "not an object"))?;
        self.indent(depth);
        self.out.push('<');
        self.out.push_str(name);
        if root {
            self.attr("xmlns", FHIR_NS);
        }
        self.body(obj, ty, path, depth, name)
    }

    /// The attributes already written, the rest of an element: its children and its end tag
    /// (or `/>` when it has none).
    fn body(
        &mut self,
        obj: &Map<String, Value>,
        ty: &Type,
        path: &Path,
        depth: usize,
        tag: &str,
    ) -> Result<(), XmlError> {
        // Every key must be an element of the type (or its `_name` companion).
        for key in obj.keys() {
            let known = match key.as_str() {
                "resourceType" => ty.resource,
                k => {
                    let (base, companion) = match k.strip_prefix('_') {
                        Some(b) => (b, true),
                        None => (k, false),
                    };
                    match ty.element(base) {
                        Some((_, el)) => {
                            !companion
                                || matches!(el.kind, Kind::Primitive(_)) && !ty.is_attribute(base)
                        }
                        None => false,
                    }
                }
            };
            if !known {
                return Err(XmlError::UnknownElement {
                    path: path.into(),
                    name: key.clone(),
                    version: self.version,
                });
            }
        }
        let mut open = true;
        for el in &ty.elements {
            if ty.is_attribute(&el.name) {
                continue;
            }
            let value = obj.get(&el.name);
            let companion = obj.get(&format!("_{}", el.name));
            if value.is_none() && companion.is_none() {
                continue;
            }
            if open {
                self.out.push_str(">\n");
                open = false;
            }
            match &el.kind {
                Kind::Primitive(kind) => {
                    self.primitive(*kind, &el.name, el.many, value, companion, path, depth + 1)?;
                }
                Kind::Xhtml => {
                    let value = value.ok_or_else(|| {
                        invalid(&path.child(&el.name, None), "_div is not allowed")
                    })?;
                    if companion.is_some() {
                        return Err(invalid(&path.child(&el.name, None), "_div is not allowed"));
                    }
                    self.xhtml(value, &path.child(&el.name, None), depth + 1)?;
                }
                Kind::Resource => {
                    let value =
                        value.ok_or_else(|| invalid(&path.child(&el.name, None), "no resource"))?;
                    let list = items(value, el.many, path, &el.name)?;
                    for (i, item) in list.iter().enumerate() {
                        let here = path.child(&el.name, el.many.then_some(i));
                        self.indent(depth + 1);
                        self.out.push('<');
                        self.out.push_str(&el.name);
                        self.out.push_str(">\n");
                        let name = resource_type(item, &here)?;
                        self.resource(item, &here.child(name, None), depth + 2, false)?;
                        self.indent(depth + 1);
                        self.out.push_str("</");
                        self.out.push_str(&el.name);
                        self.out.push_str(">\n");
                    }
                }
                Kind::Complex(type_name) => {
                    let value =
                        value.ok_or_else(|| invalid(&path.child(&el.name, None), "no value"))?;
                    let child_ty = self
                        .table
                        .get(type_name)
                        .ok_or_else(|| XmlError::Table(format!("no type {type_name}")))?;
                    let list = items(value, el.many, path, &el.name)?;
                    for (i, item) in list.iter().enumerate() {
                        let here = path.child(&el.name, el.many.then_some(i));
                        let obj = item
                            .as_object()
                            .ok_or_else(|| invalid(&here, "must be a JSON object"))?;
                        self.indent(depth + 1);
                        self.out.push('<');
                        self.out.push_str(&el.name);
                        for attr in ["id", "url"] {
                            if !child_ty.is_attribute(attr) {
                                continue;
                            }
                            if let Some(v) = obj.get(attr) {
                                let text = v.as_str().ok_or_else(|| {
                                    invalid(&here.child(attr, None), "must be a string")
                                })?;
                                self.check_text(&here.child(attr, None), text)?;
                                self.attr(attr, text);
                            }
                        }
                        self.body(obj, child_ty, &here, depth + 1, &el.name)?;
                    }
                }
            }
        }
        if open {
            self.out.push_str("/>\n");
        } else {
            self.indent(depth);
            self.out.push_str("</");
            self.out.push_str(tag);
            self.out.push_str(">\n");
        }
        Ok(())
    }

    /// A primitive element (or each item of a repeating one) with its `_name` companion.
    #[allow(clippy::too_many_arguments)]
    fn primitive(
        &mut self,
        kind: Primitive,
        name: &str,
        many: bool,
        value: Option<&Value>,
        companion: Option<&Value>,
        path: &Path,
        depth: usize,
    ) -> Result<(), XmlError> {
        let pairs: Vec<(Option<&Value>, Option<&Value>)> = if many {
            let values = match value {
                Some(v) => Some(items(v, true, path, name)?),
                None => None,
            };
            let companions = match companion {
                Some(v) => Some(items(v, true, path, &format!("_{name}"))?),
                None => None,
            };
            let len = match (values, companions) {
                (Some(a), Some(b)) if a.len() != b.len() => {
                    return Err(invalid(
                        &path.child(name, None),
                        format!("{name} and _{name} differ in length"),
                    ));
                }
                (Some(a), _) => a.len(),
                (None, Some(b)) => b.len(),
                (None, None) => 0,
            };
            fn pick(list: Option<&[Value]>, i: usize) -> Option<&Value> {
                list.and_then(|l| l.get(i)).filter(|v| !v.is_null())
            }
            (0..len)
                .map(|i| (pick(values, i), pick(companions, i)))
                .collect()
        } else {
            if let Some(Value::Array(_)) = value {
                items(value.unwrap_or(&Value::Null), false, path, name)?;
            }
            if let Some(Value::Array(_)) = companion {
                items(
                    companion.unwrap_or(&Value::Null),
                    false,
                    path,
                    &format!("_{name}"),
                )?;
            }
            vec![(value, companion)]
        };
        for (i, (value, companion)) in pairs.into_iter().enumerate() {
            let here = path.child(name, many.then_some(i));
            if value.is_none_or(Value::is_null) && companion.is_none_or(Value::is_null) {
                return Err(invalid(&here, "neither a value nor an extension"));
            }
            self.indent(depth);
            self.out.push('<');
            self.out.push_str(name);
            let mut extensions: &[Value] = &[];
            if let Some(c) = companion {
                let obj = c
                    .as_object()
                    .ok_or_else(|| invalid(&here, format!("_{name} must be an object")))?;
                for (key, v) in obj {
                    match key.as_str() {
                        "id" => {
                            let text = v.as_str().ok_or_else(|| {
                                invalid(&here.child("id", None), "must be a string")
                            })?;
                            self.check_text(&here.child("id", None), text)?;
                            self.attr("id", text);
                        }
                        "extension" => extensions = items(v, true, &here, "extension")?,
                        other => {
                            return Err(XmlError::UnknownElement {
                                path: (&here).into(),
                                name: format!("_{name}.{other}"),
                                version: self.version,
                            });
                        }
                    }
                }
                if obj.is_empty() {
                    return Err(invalid(&here, format!("_{name} is empty")));
                }
            }
            if let Some(v) = value.filter(|v| !v.is_null()) {
                let text = self.primitive_text(kind, v, &here)?;
                self.attr("value", &text);
            }
            if extensions.is_empty() {
                self.out.push_str("/>\n");
                continue;
            }
            self.out.push_str(">\n");
            let ext_ty = self
                .table
                .get("Extension")
                .ok_or_else(|| XmlError::Table("no type Extension".into()))?;
            for (j, ext) in extensions.iter().enumerate() {
                let at = here.child("extension", Some(j));
                let obj = ext
                    .as_object()
                    .ok_or_else(|| invalid(&at, "must be a JSON object"))?;
                self.indent(depth + 1);
                self.out.push_str("<extension");
                for attr in ["id", "url"] {
                    if let Some(v) = obj.get(attr) {
                        let text = v
                            .as_str()
                            .ok_or_else(|| invalid(&at.child(attr, None), "must be a string"))?;
                        self.check_text(&at.child(attr, None), text)?;
                        self.attr(attr, text);
                    }
                }
                self.body(obj, ext_ty, &at, depth + 1, "extension")?;
            }
            self.indent(depth);
            self.out.push_str("</");
            self.out.push_str(name);
            self.out.push_str(">\n");
        }
        Ok(())
    }

    /// The `value` attribute's text of a primitive.
    fn primitive_text(&self, kind: Primitive, v: &Value, path: &Path) -> Result<String, XmlError> {
        match (kind, v) {
            (Primitive::Boolean, Value::Bool(b)) => Ok(b.to_string()),
            (Primitive::Boolean, _) => Err(invalid(path, "a boolean must be true or false")),
            (Primitive::String, Value::String(s)) => {
                self.check_text(path, s)?;
                Ok(s.clone())
            }
            (Primitive::String, _) => Err(invalid(path, "must be a JSON string")),
            (_, Value::Number(n)) => {
                let text = n.to_string();
                number(kind, &text).map_err(|m| invalid(path, m))?;
                Ok(text)
            }
            (_, _) => Err(invalid(
                path,
                format!("a {} must be a JSON number", kind.name()),
            )),
        }
    }

    /// The narrative: the XHTML markup of the JSON string, checked and written as it stands.
    fn xhtml(&mut self, value: &Value, path: &Path, depth: usize) -> Result<(), XmlError> {
        let text = value
            .as_str()
            .ok_or_else(|| invalid(path, "the narrative div must be a JSON string"))?;
        let markup = xhtml_markup(text).map_err(|m| invalid(path, m))?;
        self.indent(depth);
        self.out.push_str(&markup);
        self.out.push('\n');
        Ok(())
    }
}

/// Checks that `text` is one well-formed XHTML `div` element (no DOCTYPE, no processing
/// instruction, only the XML entities and character references, only XML characters) and
/// returns the markup to write: `text` trimmed, with line ends as `\n`, and the XHTML namespace
/// declared on the `div` when it is not.
pub(crate) fn xhtml_markup(text: &str) -> Result<String, String> {
    if let Some(c) = bad_char(text) {
        return Err(format!(
            "the narrative holds the character U+{:04X}, which XML cannot carry",
            u32::from(c)
        ));
    }
    let text = text.trim().replace("\r\n", "\n").replace('\r', "\n");
    let mut reader = Reader::from_str(&text);
    let mut depth = 0usize;
    let mut roots = 0usize;
    let mut declares_ns = false;
    loop {
        let event = reader
            .read_event()
            .map_err(|e| format!("the narrative div is not well-formed XHTML: {e}"))?;
        match event {
            Event::Start(ref e) | Event::Empty(ref e) => {
                if depth == 0 {
                    roots += 1;
                    if e.name().0 != "div" {
                        return Err(format!(
                            "the narrative must be one <div> element, not <{}>",
                            e.name().0
                        ));
                    }
                }
                for attr in e.attributes() {
                    let attr = attr.map_err(|e| format!("narrative attribute: {e}"))?;
                    attr.normalized_value(quick_xml::XmlVersion::Implicit1_0)
                        .map_err(|e| format!("narrative attribute: {e}"))?;
                    if depth == 0 && attr.key.0 == "xmlns" {
                        if attr.value != XHTML_NS {
                            return Err(format!(
                                "the narrative div must be in the XHTML namespace, not {}",
                                attr.value
                            ));
                        }
                        declares_ns = true;
                    }
                }
                if matches!(event, Event::Start(_)) {
                    depth += 1;
                }
            }
            Event::End(_) => depth = depth.saturating_sub(1),
            Event::Text(ref t) => {
                if depth == 0 && !t.trim().is_empty() {
                    return Err("text outside the narrative div".into());
                }
            }
            Event::GeneralRef(ref r) => {
                if depth == 0 {
                    return Err("text outside the narrative div".into());
                }
                entity_ok(r).map_err(|name| {
                    format!(
                        "undefined entity reference &{name}; in the narrative (only the five XML entities and character references are allowed)"
                    )
                })?;
            }
            Event::CData(_) | Event::Comment(_) => {
                if depth == 0 {
                    return Err("content outside the narrative div".into());
                }
            }
            Event::DocType(_) => {
                return Err("DOCTYPE and entity declarations are refused in FHIR XML".into());
            }
            Event::Decl(_) | Event::PI(_) => {
                return Err("processing instructions are not allowed in the narrative".into());
            }
            Event::Eof => break,
        }
    }
    if roots != 1 {
        return Err("the narrative must be exactly one <div> element".into());
    }
    if declares_ns {
        Ok(text)
    } else {
        Ok(text.replacen("<div", &format!("<div xmlns=\"{XHTML_NS}\""), 1))
    }
}

/// Whether an entity reference is one XML defines: the five named entities, or a character
/// reference to a character XML can carry. `Err` holds the reference's name.
pub(crate) fn entity_ok(r: &quick_xml::events::BytesRef<'_>) -> Result<(), String> {
    let name: &str = r;
    if matches!(name, "lt" | "gt" | "amp" | "apos" | "quot") {
        return Ok(());
    }
    match r.resolve_char_ref() {
        Ok(Some(c)) if super::xml_char(c) => Ok(()),
        _ => Err(name.to_string()),
    }
}
