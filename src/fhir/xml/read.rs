//! FHIR XML to FHIR JSON.

use quick_xml::errors::Error as QxError;
use quick_xml::escape::EscapeError;
use quick_xml::events::{BytesStart, Event};
use quick_xml::name::{Namespace, ResolveResult};
use quick_xml::reader::NsReader;
use serde_json::{Map, Value};

use super::order::{self, Kind, Primitive, Table, Type};
use super::write::entity_ok;
use super::{FHIR_NS, FhirVersion, Path, XHTML_NS, XmlError, XmlLimits, bad_char, number};

/// Parses a FHIR XML document of `version` into the FHIR JSON form, with the default
/// [`XmlLimits`] (10 MiB, depth 64). See the [module documentation](super) for what is refused.
pub fn from_xml(bytes: &[u8], version: FhirVersion) -> Result<Value, XmlError> {
    from_xml_with(bytes, version, &XmlLimits::default())
}

/// [`from_xml`] with other limits.
pub fn from_xml_with(
    bytes: &[u8],
    version: FhirVersion,
    limits: &XmlLimits,
) -> Result<Value, XmlError> {
    if bytes.len() > limits.max_bytes {
        return Err(XmlError::TooLarge {
            size: bytes.len(),
            limit: limits.max_bytes,
        });
    }
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let text = std::str::from_utf8(bytes).map_err(|e| XmlError::Encoding(e.to_string()))?;
    let mut parser = Parser {
        reader: NsReader::from_str(text),
        src: text,
        table: order::table(version)?,
        version,
        limits: *limits,
        depth: 0,
        event_start: 0,
    };
    parser.document()
}

/// Where an element's name is bound.
#[derive(Debug, PartialEq, Eq)]
enum Ns {
    Fhir,
    Xhtml,
    Other(String),
}

/// The events the FHIR structure is made of (comments, processing instructions and whitespace
/// dropped; text refused).
enum Ev<'i> {
    Start(BytesStart<'i>, Ns, bool),
    End,
    Eof,
}

struct Parser<'i> {
    reader: NsReader<&'i [u8]>,
    src: &'i str,
    table: &'static Table,
    version: FhirVersion,
    limits: XmlLimits,
    depth: usize,
    /// Where the last event read began.
    event_start: usize,
}

/// One primitive element: its value and its `_name` companion.
type PrimitiveItem = (Option<Value>, Option<Map<String, Value>>);

/// What the children of one element have given for one of its elements.
enum Acc {
    Primitive(Vec<PrimitiveItem>),
    Values(Vec<Value>),
}

impl Acc {
    fn len(&self) -> usize {
        match self {
            Acc::Primitive(v) => v.len(),
            Acc::Values(v) => v.len(),
        }
    }
}

fn invalid(path: &Path, message: impl Into<String>) -> XmlError {
    XmlError::Invalid {
        path: path.into(),
        message: message.into(),
    }
}

impl<'i> Parser<'i> {
    fn syntax(&self, e: &QxError) -> XmlError {
        XmlError::Syntax {
            position: self.reader.error_position(),
            message: e.to_string(),
        }
    }

    /// The next raw event, with the namespace of an element, counting depth.
    fn raw(&mut self, path: &Path) -> Result<(Event<'i>, Option<Ns>), XmlError> {
        self.event_start = usize::try_from(self.reader.buffer_position()).unwrap_or(usize::MAX);
        let (ns, event) = match self.reader.read_resolved_event() {
            Ok((res, event)) => {
                let ns = match (&event, res) {
                    (Event::Start(_) | Event::Empty(_), ResolveResult::Bound(Namespace(ns))) => {
                        Some(match ns {
                            FHIR_NS => Ns::Fhir,
                            XHTML_NS => Ns::Xhtml,
                            other => Ns::Other(other.to_string()),
                        })
                    }
                    (Event::Start(_) | Event::Empty(_), ResolveResult::Unbound) => {
                        Some(Ns::Other("no namespace".into()))
                    }
                    (Event::Start(_) | Event::Empty(_), ResolveResult::Unknown(p)) => {
                        Some(Ns::Other(format!("undeclared prefix {p}")))
                    }
                    _ => None,
                };
                (ns, event)
            }
            Err(e) => return Err(self.syntax(&e)),
        };
        match &event {
            Event::Start(_) | Event::Empty(_) => {
                if self.depth + 1 > self.limits.max_depth {
                    return Err(XmlError::TooDeep {
                        path: path.into(),
                        limit: self.limits.max_depth,
                    });
                }
                if matches!(event, Event::Start(_)) {
                    self.depth += 1;
                }
            }
            Event::End(_) => self.depth = self.depth.saturating_sub(1),
            Event::DocType(_) => return Err(XmlError::Doctype),
            Event::Decl(d) => {
                if let Some(encoding) = d.encoding() {
                    let encoding = encoding.map_err(|e| XmlError::Encoding(e.to_string()))?;
                    if !encoding.eq_ignore_ascii_case("utf-8") {
                        return Err(XmlError::Encoding(format!("declared {encoding}")));
                    }
                }
            }
            _ => {}
        }
        Ok((event, ns))
    }

    /// The next structural event.
    fn next(&mut self, path: &Path) -> Result<Ev<'i>, XmlError> {
        loop {
            let (event, ns) = self.raw(path)?;
            return Ok(match event {
                Event::Start(e) => Ev::Start(e, ns.unwrap_or(Ns::Other(String::new())), false),
                Event::Empty(e) => Ev::Start(e, ns.unwrap_or(Ns::Other(String::new())), true),
                Event::End(_) => Ev::End,
                Event::Eof => Ev::Eof,
                Event::Text(t) if t.trim().is_empty() => continue,
                Event::Comment(_) | Event::PI(_) | Event::Decl(_) => continue,
                Event::GeneralRef(r) => {
                    if let Err(name) = entity_ok(&r) {
                        return Err(XmlError::Entity {
                            path: path.into(),
                            name,
                        });
                    }
                    return Err(XmlError::Text { path: path.into() });
                }
                Event::Text(_) | Event::CData(_) => {
                    return Err(XmlError::Text { path: path.into() });
                }
                Event::DocType(_) => return Err(XmlError::Doctype),
            });
        }
    }

    fn document(&mut self) -> Result<Value, XmlError> {
        let top = Path::root("$");
        let (start, ns, empty) = match self.next(&top)? {
            Ev::Start(e, ns, empty) => (e, ns, empty),
            Ev::End | Ev::Eof => return Err(invalid(&top, "no root element")),
        };
        let name = start.local_name().into_inner().to_string();
        let path = Path::root(&name);
        self.expect_fhir(&ns, &path, &name)?;
        let value = self.resource(&start, empty, &path)?;
        match self.next(&top)? {
            Ev::Eof => Ok(value),
            _ => Err(invalid(&top, "content after the root element")),
        }
    }

    fn expect_fhir(&self, ns: &Ns, path: &Path, name: &str) -> Result<(), XmlError> {
        match ns {
            Ns::Fhir => Ok(()),
            Ns::Xhtml => Err(XmlError::Namespace {
                path: path.into(),
                name: name.to_string(),
                found: XHTML_NS.to_string(),
            }),
            Ns::Other(found) => Err(XmlError::Namespace {
                path: path.into(),
                name: name.to_string(),
                found: found.clone(),
            }),
        }
    }

    /// A resource element (its start already read): `{"resourceType": ..., ...}`.
    fn resource(
        &mut self,
        start: &BytesStart<'i>,
        empty: bool,
        path: &Path,
    ) -> Result<Value, XmlError> {
        let name = start.local_name().into_inner();
        let Some(ty) = self.table.resource(name) else {
            return Err(XmlError::UnknownResource {
                path: path.into(),
                name: name.to_string(),
                version: self.version,
            });
        };
        self.attributes(start, path, &[])?;
        let mut obj = Map::new();
        obj.insert("resourceType".into(), Value::String(name.to_string()));
        if !empty {
            self.children(&mut obj, ty, path)?;
        }
        Ok(Value::Object(obj))
    }

    /// The FHIR attributes of an element among `allowed` (namespace declarations and attributes
    /// in other namespaces are skipped; any other is refused).
    fn attributes(
        &self,
        start: &BytesStart<'i>,
        path: &Path,
        allowed: &[&'static str],
    ) -> Result<Vec<(&'static str, String)>, XmlError> {
        let mut found = Vec::new();
        for attr in start.attributes() {
            let attr = attr.map_err(|e| XmlError::Syntax {
                position: self.reader.buffer_position(),
                message: e.to_string(),
            })?;
            if attr.key.as_namespace_binding().is_some() || attr.key.prefix().is_some() {
                continue;
            }
            let Some(name) = allowed.iter().find(|a| **a == attr.key.0) else {
                return Err(XmlError::Attribute {
                    path: path.into(),
                    name: attr.key.0.to_string(),
                });
            };
            let value = self.attribute_value(&attr, path)?;
            found.push((*name, value));
        }
        Ok(found)
    }

    fn attribute_value(
        &self,
        attr: &quick_xml::events::attributes::Attribute<'_>,
        path: &Path,
    ) -> Result<String, XmlError> {
        let value = attr
            .normalized_value(quick_xml::XmlVersion::Implicit1_0)
            .map_err(|e| match e {
                QxError::Escape(EscapeError::UnrecognizedEntity(_, name)) => XmlError::Entity {
                    path: path.into(),
                    name,
                },
                other => invalid(path, format!("attribute {}: {other}", attr.key.0)),
            })?;
        if let Some(c) = bad_char(&value) {
            return Err(invalid(
                path,
                format!("the character U+{:04X} is not allowed in XML", u32::from(c)),
            ));
        }
        Ok(value.into_owned())
    }

    /// The children of an element of type `ty`, until its end tag, into `obj` (in definition
    /// order).
    fn children(
        &mut self,
        obj: &mut Map<String, Value>,
        ty: &'static Type,
        path: &Path,
    ) -> Result<(), XmlError> {
        let mut acc: Vec<Option<Acc>> = Vec::new();
        acc.resize_with(ty.elements.len(), || None);
        loop {
            let (start, ns, empty) = match self.next(path)? {
                Ev::End => break,
                Ev::Eof => return Err(invalid(path, "the document ends inside this element")),
                Ev::Start(start, ns, empty) => (start, ns, empty),
            };
            let local = start.local_name().into_inner();
            let Some((idx, el)) = ty.element(local).filter(|_| !ty.is_attribute(local)) else {
                return Err(XmlError::UnknownElement {
                    path: path.into(),
                    name: local.to_string(),
                    version: self.version,
                });
            };
            let count = acc[idx].as_ref().map_or(0, Acc::len);
            if !el.many && count > 0 {
                return Err(XmlError::Repeated {
                    path: path.into(),
                    name: local.to_string(),
                });
            }
            let here = path.child(local, el.many.then_some(count));
            if el.kind == Kind::Xhtml {
                let div = self.xhtml(&start, &ns, empty, &here)?;
                acc[idx] = Some(Acc::Values(vec![Value::String(div)]));
                continue;
            }
            self.expect_fhir(&ns, &here, local)?;
            match &el.kind {
                Kind::Primitive(kind) => {
                    let item = self.primitive(&start, empty, *kind, &here)?;
                    match acc[idx].get_or_insert_with(|| Acc::Primitive(Vec::new())) {
                        Acc::Primitive(items) => items.push(item),
                        Acc::Values(_) => unreachable_acc(&here)?,
                    }
                }
                Kind::Resource => {
                    let value = self.wrapped_resource(&start, empty, &here)?;
                    push_value(&mut acc[idx], value, &here)?;
                }
                Kind::Complex(type_name) => {
                    let value = self.complex(&start, empty, type_name, &here)?;
                    push_value(&mut acc[idx], value, &here)?;
                }
                Kind::Xhtml => {}
            }
        }
        for (el, got) in ty.elements.iter().zip(acc) {
            match got {
                None => {}
                Some(Acc::Values(mut values)) => {
                    let value = if el.many {
                        Value::Array(values)
                    } else {
                        values.pop().unwrap_or(Value::Null)
                    };
                    obj.insert(el.name.clone(), value);
                }
                Some(Acc::Primitive(mut items)) => {
                    let companion = format!("_{}", el.name);
                    if el.many {
                        // The values array is always there (`[null]` for an item with only
                        // an extension, as the gateway's own documents write it); the
                        // companion only when an item has an id or extensions.
                        let any_ext = items.iter().any(|(_, e)| e.is_some());
                        let (values, exts): (Vec<Value>, Vec<Value>) = items
                            .into_iter()
                            .map(|(v, e)| {
                                (
                                    v.unwrap_or(Value::Null),
                                    e.map_or(Value::Null, Value::Object),
                                )
                            })
                            .unzip();
                        obj.insert(el.name.clone(), Value::Array(values));
                        if any_ext {
                            obj.insert(companion, Value::Array(exts));
                        }
                    } else if let Some((v, e)) = items.pop() {
                        if let Some(v) = v {
                            obj.insert(el.name.clone(), v);
                        }
                        if let Some(e) = e {
                            obj.insert(companion, Value::Object(e));
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// A datatype or backbone element: `id` (and `url` for Extension) from its attributes, the
    /// rest from its children.
    fn complex(
        &mut self,
        start: &BytesStart<'i>,
        empty: bool,
        type_name: &str,
        path: &Path,
    ) -> Result<Value, XmlError> {
        let ty = self
            .table
            .get(type_name)
            .ok_or_else(|| XmlError::Table(format!("no type {type_name}")))?;
        let allowed: &[&'static str] = if ty.is_attribute("url") {
            &["id", "url"]
        } else {
            &["id"]
        };
        let mut obj = Map::new();
        for (name, value) in self.attributes(start, path, allowed)? {
            obj.insert(name.to_string(), Value::String(value));
        }
        if !empty {
            self.children(&mut obj, ty, path)?;
        }
        Ok(Value::Object(obj))
    }

    /// A primitive element: its value, and its `_name` companion (`id`, `extension`).
    fn primitive(
        &mut self,
        start: &BytesStart<'i>,
        empty: bool,
        kind: Primitive,
        path: &Path,
    ) -> Result<PrimitiveItem, XmlError> {
        let mut value = None;
        let mut companion = Map::new();
        for (name, text) in self.attributes(start, path, &["id", "value"])? {
            if name == "id" {
                companion.insert("id".into(), Value::String(text));
                continue;
            }
            value = Some(match kind {
                Primitive::String => Value::String(text),
                Primitive::Boolean => match text.as_str() {
                    "true" => Value::Bool(true),
                    "false" => Value::Bool(false),
                    _ => return Err(invalid(path, format!("{text:?} is not a valid boolean"))),
                },
                _ => Value::Number(number(kind, &text).map_err(|m| invalid(path, m))?),
            });
        }
        if !empty {
            let mut extensions = Vec::new();
            loop {
                let (child, ns, child_empty) = match self.next(path)? {
                    Ev::End => break,
                    Ev::Eof => return Err(invalid(path, "the document ends inside this element")),
                    Ev::Start(child, ns, child_empty) => (child, ns, child_empty),
                };
                let local = child.local_name().into_inner();
                if local != "extension" {
                    return Err(XmlError::UnknownElement {
                        path: path.into(),
                        name: local.to_string(),
                        version: self.version,
                    });
                }
                let here = path.child("extension", Some(extensions.len()));
                self.expect_fhir(&ns, &here, local)?;
                extensions.push(self.complex(&child, child_empty, "Extension", &here)?);
            }
            if !extensions.is_empty() {
                companion.insert("extension".into(), Value::Array(extensions));
            }
        }
        if value.is_none() && companion.is_empty() {
            return Err(invalid(path, "neither a value nor an extension"));
        }
        Ok((value, (!companion.is_empty()).then_some(companion)))
    }

    /// `<resource><Patient>...</Patient></resource>`: the one resource inside.
    fn wrapped_resource(
        &mut self,
        start: &BytesStart<'i>,
        empty: bool,
        path: &Path,
    ) -> Result<Value, XmlError> {
        self.attributes(start, path, &[])?;
        if empty {
            return Err(invalid(path, "holds no resource"));
        }
        let (inner, ns, inner_empty) = match self.next(path)? {
            Ev::Start(inner, ns, inner_empty) => (inner, ns, inner_empty),
            _ => return Err(invalid(path, "holds no resource")),
        };
        let name = inner.local_name().into_inner();
        let here = path.child(name, None);
        self.expect_fhir(&ns, &here, name)?;
        let value = self.resource(&inner, inner_empty, &here)?;
        match self.next(path)? {
            Ev::End => Ok(value),
            _ => Err(invalid(path, "holds more than one resource")),
        }
    }

    /// The narrative `div`: checked (XHTML namespace declared on the `div`, only XML entities
    /// and character references, depth) and returned as the markup it stands as in the document.
    fn xhtml(
        &mut self,
        start: &BytesStart<'i>,
        ns: &Ns,
        empty: bool,
        path: &Path,
    ) -> Result<String, XmlError> {
        let from = self.event_start;
        if *ns != Ns::Xhtml || start.name().0 != "div" {
            return Err(invalid(
                path,
                "the narrative must be a <div> that declares xmlns=\"http://www.w3.org/1999/xhtml\"",
            ));
        }
        self.xhtml_attributes(start, path)?;
        if !empty {
            let mut depth = 0usize;
            loop {
                let (event, _) = self.raw(path)?;
                match event {
                    Event::Start(ref e) => {
                        self.xhtml_attributes(e, path)?;
                        depth += 1;
                    }
                    Event::Empty(ref e) => self.xhtml_attributes(e, path)?,
                    Event::End(_) if depth == 0 => break,
                    Event::End(_) => depth -= 1,
                    Event::GeneralRef(ref r) => {
                        entity_ok(r).map_err(|name| XmlError::Entity {
                            path: path.into(),
                            name,
                        })?;
                    }
                    Event::Text(_) | Event::CData(_) | Event::Comment(_) => {}
                    Event::DocType(_) => return Err(XmlError::Doctype),
                    Event::PI(_) | Event::Decl(_) => {
                        return Err(invalid(
                            path,
                            "processing instructions are not allowed in the narrative",
                        ));
                    }
                    Event::Eof => {
                        return Err(invalid(path, "the document ends inside the narrative"));
                    }
                }
            }
        }
        let to = usize::try_from(self.reader.buffer_position()).unwrap_or(usize::MAX);
        let markup = self
            .src
            .get(from..to)
            .ok_or_else(|| invalid(path, "cannot take the narrative's markup"))?;
        Ok(markup.replace("\r\n", "\n").replace('\r', "\n"))
    }

    fn xhtml_attributes(&self, start: &BytesStart<'i>, path: &Path) -> Result<(), XmlError> {
        for attr in start.attributes() {
            let attr = attr.map_err(|e| XmlError::Syntax {
                position: self.reader.buffer_position(),
                message: e.to_string(),
            })?;
            self.attribute_value(&attr, path)?;
        }
        Ok(())
    }
}

fn push_value(slot: &mut Option<Acc>, value: Value, path: &Path) -> Result<(), XmlError> {
    match slot.get_or_insert_with(|| Acc::Values(Vec::new())) {
        Acc::Values(values) => {
            values.push(value);
            Ok(())
        }
        Acc::Primitive(_) => unreachable_acc(path),
    }
}

fn unreachable_acc(path: &Path) -> Result<(), XmlError> {
    Err(XmlError::Table(format!("{path}: mixed element kinds")))
}
