//! The instance walker: checks one resource's JSON tree against a compiled profile tree, in a
//! single pass, building expression paths only into a reused buffer (a string is allocated only
//! when an issue is reported).

use serde_json::{Map, Value};

use super::compile::{Compiled, Kind, Node, NodeId, SliceMatch, TreeId, is_primitive};
use crate::fhir::outcome::{Issue, Severity};

/// What the walker needs besides the trees: how to pick a profile for a nested resource.
pub(crate) trait ResourceProfiles {
    /// The trees a resource found inside another (contained, Parameters) is checked against.
    fn nested_trees(&self, resource: &Value) -> Vec<TreeId>;
}

pub(crate) struct Walker<'a, 'v> {
    compiled: &'a Compiled,
    profiles: &'a dyn ResourceProfiles,
    pub issues: &'a mut Vec<Issue>,
    path: String,
    resource: &'v Value,
    root: &'v Value,
    /// The Bundle the resource is an entry of, for `resolve()`.
    bundle: Option<&'v Value>,
    scratch: String,
}

impl<'a, 'v> Walker<'a, 'v> {
    pub fn new(
        compiled: &'a Compiled,
        profiles: &'a dyn ResourceProfiles,
        issues: &'a mut Vec<Issue>,
        path: &str,
        resource: &'v Value,
    ) -> Self {
        Walker {
            compiled,
            profiles,
            issues,
            path: path.to_string(),
            resource,
            root: resource,
            bundle: None,
            scratch: String::new(),
        }
    }

    /// The Bundle the resource is an entry of (references resolve within it).
    pub fn in_bundle(mut self, bundle: Option<&'v Value>) -> Self {
        self.bundle = bundle;
        self
    }

    fn node(&self, t: TreeId, n: NodeId) -> &'a Node {
        &self.compiled.trees[t as usize].nodes[n as usize]
    }

    fn report(&mut self, severity: Severity, code: &'static str, msg: String) {
        self.issues
            .push(Issue::new(severity, code, msg).at(self.path.clone()));
    }

    fn error(&mut self, code: &'static str, msg: String) {
        self.report(Severity::Error, code, msg);
    }

    fn report_at_child(
        &mut self,
        severity: Severity,
        code: &'static str,
        child: &str,
        msg: String,
    ) {
        let expr = format!("{}.{child}", self.path);
        self.issues.push(Issue::new(severity, code, msg).at(expr));
    }

    /// Checks a resource (the walker's path already names it) against tree `t`.
    pub fn resource(&mut self, t: TreeId, res: &'v Value) {
        let tree = &self.compiled.trees[t as usize];
        let Value::Object(obj) = res else {
            self.error("structure", "a resource must be a JSON object".into());
            return;
        };
        if tree.kind == Kind::Resource {
            let rt = obj.get("resourceType").and_then(Value::as_str);
            if rt != Some(tree.type_name.as_str()) {
                self.error(
                    "structure",
                    format!(
                        "profile {} is for {}, not {}",
                        tree.url,
                        tree.type_name,
                        rt.unwrap_or("(no resourceType)")
                    ),
                );
                return;
            }
        }
        self.object(t, 0, None, res, obj, true, true);
    }

    /// Where the children of node `n` are described: its own children, its content reference,
    /// or the root of its type's tree (`true` when delegated to a type).
    fn child_source(
        &self,
        t: TreeId,
        n: NodeId,
        ty: Option<u16>,
    ) -> Option<(TreeId, NodeId, bool)> {
        let node = self.node(t, n);
        if let Some(r) = node.content_ref {
            return Some((t, r, false));
        }
        if !node.children.is_empty() {
            return Some((t, n, false));
        }
        let tyref = match ty {
            Some(i) => node.types.get(i as usize)?,
            None if node.types.len() == 1 => &node.types[0],
            None => return None,
        };
        let tt = tyref.tree?;
        if tt == t && n == 0 {
            return None;
        }
        Some((tt, 0, true))
    }

    #[allow(clippy::too_many_arguments)]
    fn object(
        &mut self,
        t: TreeId,
        n: NodeId,
        ty: Option<u16>,
        value: &'v Value,
        obj: &'v Map<String, Value>,
        is_resource: bool,
        check_constraints: bool,
    ) {
        let Some((st, sn, delegated)) = self.child_source(t, n, ty) else {
            if check_constraints {
                self.constraints(t, n, value);
            }
            return;
        };
        if !is_resource && obj.keys().all(|k| k == "id") {
            self.error(
                "invariant",
                "ele-1: All FHIR elements must have a @value or children".into(),
            );
        }
        let src = self.node(st, sn);
        let mut seen: Vec<(NodeId, u8)> = Vec::with_capacity(obj.len());
        for (key, v) in obj {
            if is_resource && key == "resourceType" {
                continue;
            }
            let (base_key, underscore) = match key.strip_prefix('_') {
                Some(k) => (k, true),
                None => (key.as_str(), false),
            };
            if underscore && obj.contains_key(base_key) {
                continue;
            }
            let Some(&(child, tyidx)) = src.keys.get(base_key) else {
                if key == "fhir_comments" {
                    continue;
                }
                self.report_at_child(
                    Severity::Error,
                    "structure",
                    key,
                    format!("unknown element '{key}'"),
                );
                continue;
            };
            match seen.iter_mut().find(|(c, _)| *c == child) {
                Some(entry) => entry.1 += 1,
                None => seen.push((child, 1)),
            }
            let child_node = self.node(st, child);
            let primitive = tyidx
                .map(|i| child_node.types.get(i as usize))
                .unwrap_or(child_node.types.first())
                .is_some_and(|ty| is_primitive(&ty.code));
            let (prim, ext) = if underscore {
                (None, Some(v))
            } else if primitive {
                self.scratch.clear();
                self.scratch.push('_');
                self.scratch.push_str(key);
                (Some(v), obj.get(self.scratch.as_str()))
            } else {
                (Some(v), None)
            };
            self.element(st, child, tyidx, base_key, prim, ext);
        }
        for &c in &src.children {
            let child = self.node(st, c);
            let display = child.name.strip_suffix("[x]").unwrap_or(&child.name);
            match seen.iter().find(|(s, _)| *s == c) {
                None => {
                    if child.min > 0 {
                        self.report_at_child(
                            Severity::Error,
                            "required",
                            display,
                            format!(
                                "'{display}' is required (minimum {}), but is missing",
                                child.min
                            ),
                        );
                    }
                    for &s in &child.slices {
                        let slice = self.node(st, s);
                        if slice.min > 0 {
                            self.report_at_child(
                                Severity::Error,
                                "required",
                                display,
                                format!(
                                    "slice '{}' of '{display}' requires at least {}, found 0",
                                    slice.slice_name.as_deref().unwrap_or("?"),
                                    slice.min
                                ),
                            );
                        }
                    }
                }
                Some((_, count)) if *count > 1 => {
                    self.report_at_child(
                        Severity::Error,
                        "structure",
                        display,
                        format!("'{}' takes one type only, found {count}", child.name),
                    );
                }
                Some(_) => {}
            }
        }
        if check_constraints {
            self.constraints(t, n, value);
            if delegated {
                self.constraints(st, sn, value);
            }
        }
    }

    fn constraints(&mut self, t: TreeId, n: NodeId, focus: &'v Value) {
        let node = self.node(t, n);
        for c in &node.constraints {
            match c.expr.check(focus, self.resource, self.root, self.bundle) {
                Ok(Some(false)) => {
                    let severity = if c.error {
                        Severity::Error
                    } else {
                        Severity::Warning
                    };
                    self.report(severity, "invariant", format!("{}: {}", c.key, c.human));
                }
                Ok(_) => {}
                // An invariant that cannot be evaluated here is said so, never passed silently.
                Err(why) => self.report(
                    Severity::Warning,
                    "not-supported",
                    format!("{} could not be evaluated ({why}): {}", c.key, c.human),
                ),
            }
        }
    }

    fn element(
        &mut self,
        t: TreeId,
        n: NodeId,
        ty: Option<u16>,
        key: &str,
        prim: Option<&'v Value>,
        ext: Option<&'v Value>,
    ) {
        let node = self.node(t, n);
        let mark = self.path.len();
        self.path.push('.');
        self.path.push_str(key);
        let mut items: Vec<(Option<&'v Value>, Option<&'v Value>)> = Vec::new();
        let mut shape_ok = true;
        if node.is_array {
            let p = match prim {
                Some(Value::Array(a)) => Some(a.as_slice()),
                Some(other) => {
                    self.error(
                        "structure",
                        format!(
                            "'{key}' repeats and must be a JSON array, found {}",
                            kind(other)
                        ),
                    );
                    shape_ok = false;
                    None
                }
                None => None,
            };
            let e = match ext {
                Some(Value::Array(a)) => Some(a.as_slice()),
                Some(_) => {
                    self.error("structure", format!("'_{key}' must be a JSON array"));
                    shape_ok = false;
                    None
                }
                None => None,
            };
            if shape_ok {
                let len = p.map_or(0, <[Value]>::len).max(e.map_or(0, <[Value]>::len));
                for i in 0..len {
                    let pi = p.and_then(|a| a.get(i)).filter(|v| !v.is_null());
                    let ei = e.and_then(|a| a.get(i)).filter(|v| !v.is_null());
                    if pi.is_none() && ei.is_none() {
                        self.error("structure", format!("'{key}[{i}]' is null"));
                        continue;
                    }
                    items.push((pi, ei));
                }
                if len == 0 {
                    self.error("structure", format!("'{key}' is an empty array"));
                }
            }
        } else {
            match prim {
                Some(Value::Array(_)) => {
                    self.error(
                        "structure",
                        format!("'{key}' does not repeat (maximum 1) but is a JSON array"),
                    );
                    shape_ok = false;
                }
                Some(Value::Null) => {
                    self.error("structure", format!("'{key}' is null"));
                    shape_ok = false;
                }
                _ => items.push((prim, ext)),
            }
        }
        if !shape_ok {
            self.path.truncate(mark);
            return;
        }
        let count = items.len() as u32;
        if let Some(max) = node.max
            && count > max
        {
            let msg = if max == 0 {
                format!("'{key}' is not allowed in this profile (maximum 0)")
            } else {
                format!("'{key}' allows at most {max}, found {count}")
            };
            self.error("structure", msg);
        }
        if count < node.min {
            self.error(
                "required",
                format!("'{key}' requires at least {}, found {count}", node.min),
            );
        }
        let sliced = !node.slices.is_empty() || node.is_extension();
        let mut slice_counts = vec![0u32; node.slices.len()];
        for (i, (p, e)) in items.into_iter().enumerate() {
            let item_mark = self.path.len();
            if node.is_array {
                use std::fmt::Write;
                let _ = write!(self.path, "[{i}]");
            }
            if sliced {
                self.sliced_item(t, n, ty, key, p, e, &mut slice_counts);
            } else {
                let target = self.type_slice(t, n, key);
                self.item(t, target, ty, key, p, e);
            }
            self.path.truncate(item_mark);
        }
        for (k, &s) in node.slices.iter().enumerate() {
            let slice = self.node(t, s);
            if !slice
                .discriminator
                .iter()
                .all(|d| !matches!(d, SliceMatch::Unknown))
                || slice.discriminator.is_empty()
            {
                // Nothing can be matched to this slice, so its counts say nothing.
                continue;
            }
            let name = slice.slice_name.as_deref().unwrap_or("?");
            if slice_counts[k] < slice.min {
                self.error(
                    "required",
                    format!(
                        "slice '{name}' of '{key}' requires at least {}, found {}",
                        slice.min, slice_counts[k]
                    ),
                );
            }
            if let Some(max) = slice.max
                && slice_counts[k] > max
            {
                self.error(
                    "structure",
                    format!(
                        "slice '{name}' of '{key}' allows at most {max}, found {}",
                        slice_counts[k]
                    ),
                );
            }
        }
        self.path.truncate(mark);
    }

    /// A choice element's type slice named after the JSON key (`value[x]:valueQuantity`).
    fn type_slice(&self, t: TreeId, n: NodeId, key: &str) -> NodeId {
        let node = self.node(t, n);
        if node.name.ends_with("[x]") {
            for &s in &node.slices {
                if self.node(t, s).slice_name.as_deref() == Some(key) {
                    return s;
                }
            }
        }
        n
    }

    #[allow(clippy::too_many_arguments)]
    fn sliced_item(
        &mut self,
        t: TreeId,
        n: NodeId,
        ty: Option<u16>,
        key: &str,
        p: Option<&'v Value>,
        e: Option<&'v Value>,
        counts: &mut [u32],
    ) {
        let node = self.node(t, n);
        let matched = p.and_then(|item| self.match_slice(t, n, ty, key, item));
        if let Some(k) = matched {
            counts[k] += 1;
            let s = node.slices[k];
            self.item(t, s, ty, key, p, e);
            return;
        }
        if node.is_extension() {
            let url = p.and_then(|v| v.get("url")).and_then(Value::as_str);
            if let Some(url) = url
                && let Some(&ext_tree) = self.compiled.by_url.get(url)
            {
                self.extension_item(ext_tree, p);
                return;
            }
            let closed = node.slicing.as_ref().is_some_and(|s| s.closed);
            let modifier = key == "modifierExtension";
            let severity = if closed || modifier {
                Severity::Error
            } else {
                Severity::Warning
            };
            if let Some(url) = url {
                let what = if modifier {
                    "modifier extension"
                } else {
                    "extension"
                };
                self.report(
                    severity,
                    "extension",
                    format!("unknown {what} {url}: no StructureDefinition is loaded for it"),
                );
            }
            self.item(t, n, ty, key, p, e);
            return;
        }
        if node.slicing.as_ref().is_some_and(|s| s.closed) {
            self.error(
                "structure",
                format!("this '{key}' does not match any slice, and the slicing is closed"),
            );
        }
        self.item(t, n, ty, key, p, e);
    }

    /// An extension checked against its own definition (matched by URL, not by a slice).
    fn extension_item(&mut self, ext_tree: TreeId, p: Option<&'v Value>) {
        let Some(value @ Value::Object(obj)) = p else {
            self.error("structure", "an extension must be a JSON object".into());
            return;
        };
        self.extension_invariant(obj);
        self.object(ext_tree, 0, None, value, obj, false, true);
    }

    fn extension_invariant(&mut self, obj: &Map<String, Value>) {
        let has_value = obj
            .keys()
            .any(|k| k.len() > 5 && k.starts_with("value") && k.as_bytes()[5].is_ascii_uppercase());
        let has_ext = obj.contains_key("extension");
        if has_value == has_ext {
            self.error(
                "invariant",
                "ext-1: Must have either extensions or value[x], not both".into(),
            );
        }
    }

    fn match_slice(
        &self,
        t: TreeId,
        n: NodeId,
        ty: Option<u16>,
        key: &str,
        item: &Value,
    ) -> Option<usize> {
        let node = self.node(t, n);
        'slices: for (k, &s) in node.slices.iter().enumerate() {
            let slice = self.node(t, s);
            if slice.discriminator.is_empty() {
                continue;
            }
            for d in &slice.discriminator {
                let ok = match d {
                    SliceMatch::Unknown => false,
                    SliceMatch::Type(types) => {
                        let item_type = item
                            .get("resourceType")
                            .and_then(Value::as_str)
                            .map(str::to_string)
                            .or_else(|| {
                                ty.and_then(|i| node.types.get(i as usize))
                                    .map(|t| t.code.clone())
                            })
                            .or_else(|| match node.types.as_slice() {
                                [one] => Some(one.code.clone()),
                                _ => None,
                            });
                        let _ = key;
                        item_type.is_some_and(|it| types.contains(&it))
                    }
                    SliceMatch::Value {
                        path,
                        value,
                        pattern,
                    } => {
                        let mut found = false;
                        visit_path(item, path, &mut |v| {
                            if if *pattern {
                                contains_pattern(v, value)
                            } else {
                                v == value
                            } {
                                found = true;
                            }
                        });
                        found
                    }
                };
                if !ok {
                    continue 'slices;
                }
            }
            return Some(k);
        }
        None
    }

    fn item(
        &mut self,
        t: TreeId,
        n: NodeId,
        ty: Option<u16>,
        key: &str,
        prim: Option<&'v Value>,
        ext: Option<&'v Value>,
    ) {
        let node = self.node(t, n);
        let tyref = match ty {
            Some(i) => node.types.get(i as usize),
            None if node.types.len() == 1 => node.types.first(),
            None => None,
        };
        let code = tyref.map(|t| t.code.as_str()).unwrap_or("");
        if is_primitive(code) {
            if let Some(v) = prim {
                if let Err(msg) = check_primitive(code, v) {
                    self.error("value", msg);
                } else {
                    self.fixed_and_pattern(node, v);
                    self.binding(node, code, v);
                    self.constraints(t, n, v);
                }
            } else if node.fixed.is_some() || node.pattern.is_some() {
                self.error("value", format!("'{key}' has a fixed value but no value"));
            }
            if let Some(e) = ext {
                match e {
                    Value::Object(obj) => self.object(t, n, ty, e, obj, false, false),
                    _ => self.error("structure", format!("'_{key}' must be a JSON object")),
                }
            }
            return;
        }
        let Some(value) = prim else {
            self.error(
                "structure",
                format!("'_{key}' is only allowed on primitive elements"),
            );
            return;
        };
        let Value::Object(obj) = value else {
            let what = if code.is_empty() { "an object" } else { code };
            self.error(
                "structure",
                format!(
                    "'{key}' must be {what} (a JSON object), found {}",
                    kind(value)
                ),
            );
            return;
        };
        if matches!(code, "Resource" | "DomainResource") {
            let tree = &self.compiled.trees[t as usize];
            if tree.type_name == "Bundle" && node.id.ends_with("Bundle.entry.resource") {
                // Bundle entries are validated one by one by the caller.
                return;
            }
            self.nested_resource(value);
            return;
        }
        self.fixed_and_pattern(node, value);
        self.binding(node, code, value);
        if let Some(tyref) = tyref
            && !tyref.target_types.is_empty()
            && let Some(r) = obj.get("reference").and_then(Value::as_str)
            && let Some(target) = reference_type(r)
            && !tyref.target_types.iter().any(|t| t == target)
        {
            self.report_at_child(
                Severity::Error,
                "value",
                "reference",
                format!(
                    "a reference to {target} is not allowed here (allowed: {})",
                    tyref.target_types.join(", ")
                ),
            );
        }
        let is_extension = code == "Extension"
            || (n == 0 && self.compiled.trees[t as usize].type_name == "Extension");
        if is_extension {
            self.extension_invariant(obj);
        }
        self.object(t, n, ty, value, obj, false, true);
    }

    fn nested_resource(&mut self, value: &'v Value) {
        let trees = self.profiles.nested_trees(value);
        let saved = self.resource;
        self.resource = value;
        for tree in trees {
            self.resource(tree, value);
        }
        if value.get("resourceType").is_none() {
            self.error("structure", "a nested resource needs a resourceType".into());
        }
        self.resource = saved;
    }

    fn fixed_and_pattern(&mut self, node: &Node, v: &Value) {
        if let Some(f) = &node.fixed
            && !fixed_equals(v, f)
        {
            self.error("value", format!("value must be exactly {}", short_json(f)));
        }
        if let Some(p) = &node.pattern
            && !contains_pattern(v, p)
        {
            self.error(
                "value",
                format!("value must match the pattern {}", short_json(p)),
            );
        }
    }

    fn binding(&mut self, node: &Node, code: &str, v: &Value) {
        let Some(b) = &node.binding else {
            return;
        };
        if !b.required {
            return;
        }
        let Some(exp) = &b.expansion else {
            return;
        };
        match code {
            "code" | "string" | "uri" => {
                if let Some(s) = v.as_str()
                    && !exp.contains(None, s)
                {
                    self.error(
                        "code-invalid",
                        format!("'{s}' is not in the required ValueSet {}", b.value_set),
                    );
                }
            }
            "Coding" => {
                let system = v.get("system").and_then(Value::as_str);
                if let Some(c) = v.get("code").and_then(Value::as_str)
                    && !exp.contains(system, c)
                {
                    self.report_at_child(
                        Severity::Error,
                        "code-invalid",
                        "code",
                        format!(
                            "'{}#{c}' is not in the required ValueSet {}",
                            system.unwrap_or(""),
                            b.value_set
                        ),
                    );
                }
            }
            "CodeableConcept" => {
                let codings = v.get("coding").and_then(Value::as_array);
                let Some(codings) = codings.filter(|c| !c.is_empty()) else {
                    self.error(
                        "code-invalid",
                        format!(
                            "a code from the required ValueSet {} is needed",
                            b.value_set
                        ),
                    );
                    return;
                };
                let mut any = false;
                let mut blame = None;
                for (i, c) in codings.iter().enumerate() {
                    let system = c.get("system").and_then(Value::as_str);
                    let Some(code) = c.get("code").and_then(Value::as_str) else {
                        continue;
                    };
                    if exp.contains(system, code) {
                        any = true;
                        break;
                    }
                    if blame.is_none() && system.is_none_or(|s| exp.has_system(s)) {
                        blame = Some((i, format!("{}#{code}", system.unwrap_or(""))));
                    }
                }
                if !any {
                    match blame {
                        Some((i, what)) => self.report_at_child(
                            Severity::Error,
                            "code-invalid",
                            &format!("coding[{i}].code"),
                            format!("'{what}' is not in the required ValueSet {}", b.value_set),
                        ),
                        None => self.error(
                            "code-invalid",
                            format!("no coding is from the required ValueSet {}", b.value_set),
                        ),
                    }
                }
            }
            _ => {}
        }
    }
}

/// The resource type a literal reference names (`Patient/1`, `https://x/fhir/Patient/1`,
/// `Patient/1/_history/2`), or `None` for contained, `urn:` and unrecognised references.
fn reference_type(r: &str) -> Option<&str> {
    let r = match r.find("/_history/") {
        Some(i) => &r[..i],
        None => r,
    };
    let ty = if r.starts_with("http://") || r.starts_with("https://") {
        let mut parts = r.rsplit('/');
        parts.next()?;
        parts.next()?
    } else {
        let (ty, id) = r.split_once('/')?;
        if id.contains('/') || id.is_empty() {
            return None;
        }
        ty
    };
    (ty.starts_with(|c: char| c.is_ascii_uppercase())
        && ty.bytes().all(|b| b.is_ascii_alphabetic()))
    .then_some(ty)
}

/// Calls `f` for every value reached by following `path` (arrays flattened).
fn visit_path(v: &Value, path: &[String], f: &mut dyn FnMut(&Value)) {
    match v {
        Value::Array(items) => {
            for i in items {
                visit_path(i, path, f);
            }
        }
        _ => match path.split_first() {
            None => f(v),
            Some((first, rest)) => {
                if let Some(next) = v.get(first.as_str()) {
                    visit_path(next, rest, f);
                }
            }
        },
    }
}

/// FHIR pattern matching: every property of the pattern is present with a matching value;
/// every pattern array item matches some item of the value's array.
pub(crate) fn contains_pattern(v: &Value, pattern: &Value) -> bool {
    match (v, pattern) {
        (Value::Object(vo), Value::Object(po)) => po
            .iter()
            .all(|(k, pv)| vo.get(k).is_some_and(|x| contains_pattern(x, pv))),
        (Value::Array(va), Value::Array(pa)) => {
            pa.iter().all(|p| va.iter().any(|x| contains_pattern(x, p)))
        }
        (Value::Number(a), Value::Number(b)) => numbers_equal(a, b),
        _ => v == pattern,
    }
}

fn fixed_equals(v: &Value, f: &Value) -> bool {
    match (v, f) {
        (Value::Number(a), Value::Number(b)) => numbers_equal(a, b),
        (Value::Object(a), Value::Object(b)) => {
            a.len() == b.len()
                && b.iter()
                    .all(|(k, bv)| a.get(k).is_some_and(|av| fixed_equals(av, bv)))
        }
        (Value::Array(a), Value::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| fixed_equals(x, y))
        }
        _ => v == f,
    }
}

fn numbers_equal(a: &serde_json::Number, b: &serde_json::Number) -> bool {
    a == b || matches!((a.as_f64(), b.as_f64()), (Some(x), Some(y)) if x == y)
}

fn short_json(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 120 {
        let mut cut = 117;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        format!("{}...", &s[..cut])
    } else {
        s
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Checks a primitive's JSON representation and lexical form.
pub(crate) fn check_primitive(code: &str, v: &Value) -> Result<(), String> {
    let bad = |what: &str| Err(format!("{what} is not a valid {code}"));
    match code {
        "boolean" => {
            if v.is_boolean() {
                Ok(())
            } else {
                Err(format!(
                    "a boolean must be JSON true or false, found {}",
                    kind(v)
                ))
            }
        }
        "integer" | "unsignedInt" | "positiveInt" | "integer64" => {
            let Value::Number(n) = v else {
                return Err(format!(
                    "an {code} must be a JSON number, found {}",
                    kind(v)
                ));
            };
            let Some(i) = n.as_i64() else {
                return bad(&n.to_string());
            };
            let ok = match code {
                "integer" => i32::try_from(i).is_ok(),
                "unsignedInt" => (0..=i64::from(i32::MAX)).contains(&i),
                "positiveInt" => (1..=i64::from(i32::MAX)).contains(&i),
                _ => true,
            };
            if ok { Ok(()) } else { bad(&i.to_string()) }
        }
        "decimal" => match v {
            Value::Number(_) => Ok(()),
            _ => Err(format!(
                "a decimal must be a JSON number, found {}",
                kind(v)
            )),
        },
        _ => {
            let Value::String(s) = v else {
                return Err(format!("a {code} must be a JSON string, found {}", kind(v)));
            };
            if s.is_empty() {
                return Err(format!("a {code} must not be empty"));
            }
            let ok = match code {
                "date" => is_date(s),
                "dateTime" => is_datetime(s, false),
                "instant" => is_datetime(s, true),
                "time" => is_time(s),
                "id" => {
                    s.len() <= 64
                        && s.bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
                }
                "code" => !s.starts_with(char::is_whitespace) && !s.ends_with(char::is_whitespace),
                "uri" | "url" | "canonical" => !s.chars().any(char::is_whitespace),
                "oid" => s.strip_prefix("urn:oid:").is_some_and(|r| {
                    !r.is_empty()
                        && r.split('.')
                            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
                }),
                "uuid" => s.strip_prefix("urn:uuid:").is_some_and(|r| r.len() == 36),
                "base64Binary" => s.bytes().all(|b| {
                    b.is_ascii_alphanumeric()
                        || matches!(b, b'+' | b'/' | b'=' | b' ' | b'\n' | b'\r' | b'\t')
                }),
                _ => true,
            };
            if ok {
                Ok(())
            } else {
                Err(format!("'{}' is not a valid {code}", short(s)))
            }
        }
    }
}

fn short(s: &str) -> &str {
    match s.char_indices().nth(60) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

fn digits(b: &[u8]) -> bool {
    !b.is_empty() && b.iter().all(u8::is_ascii_digit)
}

fn is_date(s: &str) -> bool {
    let b = s.as_bytes();
    match b.len() {
        4 => digits(b),
        7 => digits(&b[..4]) && b[4] == b'-' && month(&b[5..7]),
        10 => digits(&b[..4]) && b[4] == b'-' && month(&b[5..7]) && b[7] == b'-' && day(&b[8..10]),
        _ => false,
    }
}

fn two(b: &[u8]) -> Option<u32> {
    if b.len() == 2 && digits(b) {
        Some(u32::from(b[0] - b'0') * 10 + u32::from(b[1] - b'0'))
    } else {
        None
    }
}

fn month(b: &[u8]) -> bool {
    two(b).is_some_and(|m| (1..=12).contains(&m))
}

fn day(b: &[u8]) -> bool {
    two(b).is_some_and(|d| (1..=31).contains(&d))
}

fn is_time(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() < 8 {
        return false;
    }
    let hms = two(&b[..2]).is_some_and(|h| h < 24)
        && b[2] == b':'
        && two(&b[3..5]).is_some_and(|m| m < 60)
        && b[5] == b':'
        && two(&b[6..8]).is_some_and(|s| s <= 60);
    hms && (b.len() == 8 || (b[8] == b'.' && digits(&b[9..])))
}

fn is_datetime(s: &str, instant: bool) -> bool {
    let Some((date, time)) = s.split_once('T') else {
        return !instant && is_date(s);
    };
    if date.len() != 10 || !is_date(date) {
        return false;
    }
    let (clock, zone) = if let Some(c) = time.strip_suffix('Z') {
        (c, "Z")
    } else if let Some(pos) = time.rfind(['+', '-']) {
        time.split_at(pos)
    } else {
        return false;
    };
    let zone_ok = zone == "Z" || {
        let z = zone.as_bytes();
        z.len() == 6
            && two(&z[1..3]).is_some_and(|h| h <= 14)
            && z[3] == b':'
            && two(&z[4..6]).is_some_and(|m| m < 60)
    };
    zone_ok && is_time(clock)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn primitive_lexical_forms_are_checked() {
        assert!(check_primitive("date", &json!("2020-02-29")).is_ok());
        assert!(check_primitive("date", &json!("2020-13-01")).is_err());
        assert!(check_primitive("dateTime", &json!("2020-01-01T10:00:00+01:00")).is_ok());
        assert!(check_primitive("dateTime", &json!("2020-01-01T10:00:00")).is_err());
        assert!(check_primitive("instant", &json!("2020-01-01")).is_err());
        assert!(check_primitive("boolean", &json!("true")).is_err());
        assert!(check_primitive("positiveInt", &json!(0)).is_err());
        assert!(check_primitive("decimal", &json!("2.5")).is_err());
        assert!(check_primitive("id", &json!("a b")).is_err());
        assert!(check_primitive("string", &json!("")).is_err());
        assert!(check_primitive("time", &json!("14:00:00.5")).is_ok());
    }

    #[test]
    fn patterns_match_when_every_stated_part_is_present() {
        let p = json!({"coding": [{"system": "http://snomed.info/sct", "code": "373942005"}]});
        let v = json!({"coding": [{"system": "x", "code": "y"},
            {"system": "http://snomed.info/sct", "code": "373942005", "display": "Discharge summary"}], "text": "t"});
        assert!(contains_pattern(&v, &p));
        assert!(!contains_pattern(
            &json!({"coding": [{"code": "373942005"}]}),
            &p
        ));
    }

    #[test]
    fn decimal_fixed_values_compare_numerically() {
        assert!(fixed_equals(
            &serde_json::from_str("2.50").unwrap(),
            &serde_json::from_str("2.5").unwrap()
        ));
    }

    #[test]
    fn discriminator_paths_flatten_arrays() {
        let v = json!({"coding": [{"code": "a"}, {"code": "b"}]});
        let mut seen = Vec::new();
        visit_path(&v, &["coding".into(), "code".into()], &mut |x| {
            seen.push(x.clone())
        });
        assert_eq!(seen, vec![json!("a"), json!("b")]);
    }

    #[test]
    fn reference_types_are_read_from_literal_references() {
        assert_eq!(reference_type("Patient/1"), Some("Patient"));
        assert_eq!(
            reference_type("https://x.org/fhir/Practitioner/a/_history/2"),
            Some("Practitioner")
        );
        assert_eq!(reference_type("#contained"), None);
        assert_eq!(
            reference_type("Organization/https://x.org/StructureDefinition/Org"),
            None
        );
        assert_eq!(
            reference_type("urn:uuid:1f0c8a52-6a4e-4c1e-9f0f-0c5b2a7e1002"),
            None
        );
    }
}
