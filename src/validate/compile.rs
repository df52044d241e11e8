//! Compiled profiles: each StructureDefinition becomes a [`Tree`] of [`Node`]s (one per
//! element, slices hanging off the element they slice), indexed by JSON property name, with
//! type references, ValueSet expansions and FHIRPath invariants resolved once at load time.
//! Snapshot elements compile directly ([`Registry::compile_snapshot`]); differential-only profiles
//! are derived from their base tree in `snapshot.rs`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use serde_json::Value;

use super::fhirpath::Expr;
use super::loader::{ElementDef, RawStructureDefinition, TypeRef, strip_version};
use super::terminology::{Expansion, Terminology};

pub(crate) type NodeId = u32;
pub(crate) type TreeId = u32;

pub(crate) const CORE_SD: &str = "http://hl7.org/fhir/StructureDefinition/";

/// JSON property name to (child, index of the type a choice property names).
pub(crate) type KeyIndex = HashMap<Box<str>, (NodeId, Option<u16>)>;

/// What a StructureDefinition describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Resource,
    ComplexType,
    PrimitiveType,
    Logical,
}

/// A compiled StructureDefinition.
#[derive(Debug, Clone)]
pub(crate) struct Tree {
    pub url: String,
    pub type_name: String,
    pub kind: Kind,
    /// R4 (true) or an earlier version such as STU3 (false): earlier versions are checked only as
    /// far as their own snapshot goes, since their base definitions are not loaded.
    pub r4: bool,
    /// For Extension definitions: the extension's URL (`Extension.url` fixed value).
    pub extension_url: Option<String>,
    pub nodes: Vec<Node>,
}

/// One element of a compiled profile.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub id: String,
    /// Last path segment: `identifier`, `value[x]`.
    pub name: String,
    pub min: u32,
    /// `None` is `*`.
    pub max: Option<u32>,
    /// Whether the element repeats in the base definition (a JSON array).
    pub is_array: bool,
    pub types: Vec<ResolvedType>,
    pub children: Vec<NodeId>,
    pub slicing: Option<Slicing>,
    pub slices: Vec<NodeId>,
    pub slice_name: Option<String>,
    pub fixed: Option<Value>,
    pub pattern: Option<Value>,
    pub binding: Option<Binding>,
    pub constraints: Vec<Arc<Constraint>>,
    pub content_ref: Option<NodeId>,
    /// The content reference's element id, until it is resolved.
    content_ref_id: Option<String>,
    /// JSON property name to (child, index of the type a choice property names).
    pub keys: KeyIndex,
    /// For a slice: the discriminator values that select it (filled at finalize).
    pub discriminator: Vec<SliceMatch>,
}

#[derive(Debug, Clone)]
pub(crate) struct ResolvedType {
    pub code: String,
    pub profiles: Vec<String>,
    pub target_profiles: Vec<String>,
    /// For references: the resource types the target profiles allow (empty: any).
    pub target_types: Vec<String>,
    /// The tree that describes this type's content: the first loaded profile, else the base type.
    pub tree: Option<TreeId>,
    /// A profile was named but none of them is loaded.
    pub profile_missing: bool,
}

impl From<&TypeRef> for ResolvedType {
    fn from(t: &TypeRef) -> ResolvedType {
        ResolvedType {
            code: t.code.clone(),
            profiles: t
                .profiles
                .iter()
                .map(|p| strip_version(p).to_string())
                .collect(),
            target_profiles: t.target_profiles.clone(),
            target_types: Vec::new(),
            tree: None,
            profile_missing: false,
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Slicing {
    pub discriminators: Vec<(DiscriminatorKind, String)>,
    pub closed: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DiscriminatorKind {
    Value,
    Pattern,
    Type,
    Other,
}

/// How an instance item is recognised as belonging to a slice.
#[derive(Debug, Clone)]
pub(crate) enum SliceMatch {
    /// The value at `path` equals (or, for a pattern, contains) `value`.
    Value {
        path: Vec<String>,
        value: Value,
        pattern: bool,
    },
    /// The item is of one of these types.
    Type(Vec<String>),
    /// No usable discriminator: nothing is matched to this slice.
    Unknown,
}

#[derive(Debug, Clone)]
pub(crate) struct Binding {
    pub required: bool,
    pub value_set: String,
    pub expansion: Option<Arc<Expansion>>,
}

#[derive(Debug)]
pub(crate) struct Constraint {
    pub key: String,
    pub error: bool,
    pub human: String,
    pub expr: Arc<Expr>,
}

impl Node {
    pub fn new(id: &str, name: &str) -> Node {
        Node {
            id: id.to_string(),
            name: name.to_string(),
            min: 0,
            max: None,
            is_array: false,
            types: Vec::new(),
            children: Vec::new(),
            slicing: None,
            slices: Vec::new(),
            slice_name: None,
            fixed: None,
            pattern: None,
            binding: None,
            constraints: Vec::new(),
            content_ref: None,
            content_ref_id: None,
            keys: HashMap::new(),
            discriminator: Vec::new(),
        }
    }

    /// Whether this element holds extensions (sliced by URL implicitly).
    pub fn is_extension(&self) -> bool {
        self.types.len() == 1 && self.types[0].code == "Extension"
    }
}

pub(crate) fn parse_max(max: &str) -> Option<u32> {
    if max == "*" { None } else { max.parse().ok() }
}

/// Splits an element id into (name, slice name) segments: `Patient.identifier:nhs.system`.
pub(crate) fn id_segments(id: &str) -> Vec<(&str, Option<&str>)> {
    let mut out = Vec::new();
    let mut depth = 0usize;
    let mut start = 0usize;
    let bytes = id.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'[' => depth += 1,
            b']' => depth = depth.saturating_sub(1),
            b'.' if depth == 0 => {
                out.push(&id[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&id[start..]);
    out.into_iter()
        .map(|seg| match seg.split_once(':') {
            Some((name, slice)) => (name, Some(slice)),
            None => (seg, None),
        })
        .collect()
}

/// Everything known while compiling: raw definitions, compiled trees, compiled expressions.
pub(crate) struct Registry {
    pub raw: HashMap<String, RawStructureDefinition>,
    pub compiled: HashMap<String, Arc<Tree>>,
    in_progress: HashSet<String>,
    exprs: HashMap<String, Option<Arc<Expr>>>,
    /// Invariants that could not be compiled: key -> reason.
    pub unsupported: BTreeMap<String, String>,
    pub warnings: Vec<String>,
}

/// Invariants checked natively by the walker (faster, and exact), or deliberately not checked:
/// `dom-6` ("a resource should have narrative") is a best-practice warning that would flag every
/// resource of a machine-to-machine document.
pub(crate) const NATIVE_INVARIANTS: &[&str] = &["ele-1", "ext-1", "dom-6"];

impl Registry {
    pub fn new(raw: HashMap<String, RawStructureDefinition>) -> Registry {
        Registry {
            raw,
            compiled: HashMap::new(),
            in_progress: HashSet::new(),
            exprs: HashMap::new(),
            unsupported: BTreeMap::new(),
            warnings: Vec::new(),
        }
    }

    /// The compiled tree for a canonical URL, compiling it (and its bases) on first use.
    pub fn tree(&mut self, url: &str) -> Option<Arc<Tree>> {
        let url = strip_version(url);
        if let Some(t) = self.compiled.get(url) {
            return Some(t.clone());
        }
        if self.in_progress.contains(url) {
            return None;
        }
        let raw = self.raw.get(url)?.clone();
        self.in_progress.insert(url.to_string());
        let result = self.compile(&raw);
        self.in_progress.remove(url);
        match result {
            Ok(tree) => {
                let tree = Arc::new(tree);
                self.compiled.insert(url.to_string(), tree.clone());
                Some(tree)
            }
            Err(e) => {
                self.warnings
                    .push(format!("StructureDefinition {url} was not compiled: {e}"));
                None
            }
        }
    }

    /// The tree for a type code: a core type name or a full URL.
    pub fn type_tree(&mut self, code: &str) -> Option<Arc<Tree>> {
        if code.contains('/') {
            self.tree(code)
        } else {
            self.tree(&format!("{CORE_SD}{code}"))
        }
    }

    fn compile(&mut self, raw: &RawStructureDefinition) -> Result<Tree, String> {
        let r4 = raw
            .fhir_version
            .as_deref()
            .is_none_or(|v| v.starts_with('4'));
        let needs_derivation = raw.snapshot.as_ref().is_none_or(|s| s.element.is_empty());
        if needs_derivation && !r4 {
            // Deriving would apply the differential to an R4 base: refuse instead.
            Err(format!(
                "it is a FHIR {} profile without a snapshot, and that version's base definitions are not loaded",
                raw.fhir_version.as_deref().unwrap_or("?")
            ))
        } else if needs_derivation {
            super::snapshot::derive(self, raw)
        } else {
            let elements = raw
                .snapshot
                .as_ref()
                .map(|s| s.element.as_slice())
                .unwrap_or_default();
            self.compile_snapshot(raw, elements, r4)
        }
    }

    /// Builds a tree from snapshot elements.
    pub fn compile_snapshot(
        &mut self,
        raw: &RawStructureDefinition,
        elements: &[ElementDef],
        r4: bool,
    ) -> Result<Tree, String> {
        let mut nodes: Vec<Node> = Vec::with_capacity(elements.len());
        let mut by_id: HashMap<String, NodeId> = HashMap::new();
        let mut content_refs: Vec<(NodeId, String)> = Vec::new();
        // Ids are synthesised when missing (older snapshots): path, plus slice names in scope.
        let mut slice_scope: Vec<(String, String)> = Vec::new();
        let mut skipped = 0usize;
        for el in elements {
            let id = match &el.id {
                Some(id) => id.clone(),
                None => synthesise_id(el, &mut slice_scope),
            };
            let segs = id_segments(&id);
            let Some(&(last_name, last_slice)) = segs.last() else {
                continue;
            };
            if by_id.contains_key(&id) {
                // Already stood for by a choice type slice (below): the slice is the stricter.
                continue;
            }
            let mut node = Node::new(&id, last_name);
            node.slice_name = el.slice_name.clone().or(last_slice.map(str::to_string));
            // A choice element never repeats, whatever a damaged snapshot says.
            node.is_array = !last_name.ends_with("[x]")
                && el
                    .base_max
                    .as_deref()
                    .or(el.max.as_deref())
                    .is_some_and(|m| m != "1" && m != "0");
            self.apply(&mut node, el, true);
            let nid = nodes.len() as NodeId;
            if let Some(r) = &el.content_reference {
                let target = r.rsplit('#').next().unwrap_or(r);
                node.content_ref_id = Some(target.to_string());
            }
            if nodes.is_empty() {
                nodes.push(node);
                by_id.insert(id.clone(), nid);
                continue;
            }
            if let Some(slice) = last_slice {
                // A slice of the element with the same id minus `:slice`; older snapshots name
                // a choice type slice by its renamed path (`deceasedDateTime:deceasedDateTime`).
                let sliced_id = &id[..id.len() - slice.len() - 1];
                let sliced = by_id.get(sliced_id).copied().or_else(|| {
                    let parent = by_id.get(parent_of(sliced_id))?;
                    nodes[*parent as usize].children.iter().copied().find(|&c| {
                        nodes[c as usize]
                            .name
                            .strip_suffix("[x]")
                            .is_some_and(|p| last_name.starts_with(p))
                    })
                });
                let Some(parent) = sliced else {
                    // Some STU3 snapshots give only the type slice of a choice element
                    // (`value[x]:valueCodeableConcept`), without `value[x]` itself: the slice
                    // then stands for the element.
                    let owner_id = parent_of(sliced_id);
                    if let Some(&owner) = by_id.get(owner_id)
                        && last_name.ends_with("[x]")
                    {
                        node.slice_name = None;
                        nodes.push(node);
                        nodes[owner as usize].children.push(nid);
                        by_id.insert(sliced_id.to_string(), nid);
                        // Its children may be named by the renamed path
                        // (`valueCoding:valueCoding.system`).
                        by_id.insert(format!("{owner_id}.{slice}:{slice}"), nid);
                        by_id.insert(format!("{owner_id}.{slice}"), nid);
                        by_id.insert(id, nid);
                    } else if let Some(&owner) = by_id.get(owner_id)
                        && let Some(base) = renamed_choice(last_name, slice, el)
                    {
                        // Forge's STU3 snapshots may give a choice element constrained to one
                        // type only by its renamed path (`valueBoolean:valueBoolean`), with no
                        // `value[x]`: it stands for `value[x]` with that one type.
                        let mut node = node;
                        node.name = format!("{base}[x]");
                        node.slice_name = None;
                        node.is_array = false;
                        nodes.push(node);
                        nodes[owner as usize].children.push(nid);
                        by_id.insert(format!("{owner_id}.{base}[x]"), nid);
                        by_id.insert(sliced_id.to_string(), nid);
                        by_id.insert(id, nid);
                    } else {
                        skipped += 1;
                    }
                    continue;
                };
                nodes.push(node);
                nodes[parent as usize].slices.push(nid);
            } else {
                let parent_id = parent_of(&id);
                let Some(&parent) = by_id.get(parent_id) else {
                    skipped += 1;
                    continue;
                };
                nodes.push(node);
                nodes[parent as usize].children.push(nid);
            }
            by_id.insert(id, nid);
        }
        if skipped > 0 {
            self.warnings.push(format!(
                "{}: {skipped} snapshot elements whose parent element is not in the snapshot were skipped",
                raw.url
            ));
        }
        for (i, node) in nodes.iter_mut().enumerate() {
            if let Some(target) = node.content_ref_id.take() {
                content_refs.push((i as NodeId, target));
            }
        }
        for (nid, target) in content_refs {
            match by_id.get(&target) {
                Some(&t) => nodes[nid as usize].content_ref = Some(t),
                None => self.warnings.push(format!(
                    "{}: contentReference #{target} does not resolve",
                    raw.url
                )),
            }
        }
        if nodes.is_empty() {
            return Err("no elements".into());
        }
        Ok(Tree {
            url: strip_version(&raw.url).to_string(),
            type_name: raw.type_name.clone().unwrap_or_default(),
            kind: kind_of(raw),
            r4,
            extension_url: None,
            nodes,
        })
    }

    /// Applies an element definition's constraints to a node (replacing what it states).
    pub fn apply(&mut self, node: &mut Node, el: &ElementDef, snapshot: bool) {
        if let Some(min) = el.min {
            node.min = min;
        }
        if let Some(max) = &el.max {
            node.max = parse_max(max);
        }
        if let Some(types) = &el.types {
            node.types = types.iter().map(ResolvedType::from).collect();
        }
        if el.fixed.is_some() {
            node.fixed = el.fixed.clone();
        }
        if el.pattern.is_some() {
            node.pattern = el.pattern.clone();
        }
        if let Some(b) = &el.binding
            && let Some(vs) = b.value_set_url()
        {
            node.binding = Some(Binding {
                required: b.strength.as_deref() == Some("required"),
                value_set: strip_version(vs).to_string(),
                expansion: None,
            });
        }
        if let Some(s) = &el.slicing {
            node.slicing = Some(Slicing {
                discriminators: s
                    .discriminator
                    .iter()
                    .map(|d| {
                        let kind = match d.kind.as_str() {
                            "value" => DiscriminatorKind::Value,
                            "pattern" => DiscriminatorKind::Pattern,
                            "type" => DiscriminatorKind::Type,
                            _ => DiscriminatorKind::Other,
                        };
                        (kind, d.path.clone())
                    })
                    .collect(),
                closed: s.rules.as_deref() == Some("closed"),
            });
        }
        if snapshot {
            node.constraints.clear();
        }
        for c in &el.constraints {
            if node.constraints.iter().any(|k| k.key == c.key) {
                continue;
            }
            if let Some(compiled) = self.constraint(c) {
                node.constraints.push(compiled);
            }
        }
    }

    fn constraint(&mut self, c: &super::loader::RawConstraint) -> Option<Arc<Constraint>> {
        if NATIVE_INVARIANTS.contains(&c.key.as_str()) {
            return None;
        }
        let src = c.expression.as_deref()?;
        let expr = match self.exprs.get(src) {
            Some(e) => e.clone(),
            None => {
                let e = match Expr::compile(src) {
                    Ok(e) => Some(Arc::new(e)),
                    Err(reason) => {
                        self.unsupported.insert(c.key.clone(), reason);
                        None
                    }
                };
                self.exprs.insert(src.to_string(), e.clone());
                e
            }
        }?;
        Some(Arc::new(Constraint {
            key: c.key.clone(),
            error: c.severity.as_deref() != Some("warning"),
            human: c.human.clone().unwrap_or_default(),
            expr,
        }))
    }
}

/// For a renamed choice element (`valueBoolean` sliced as `valueBoolean`, one type), the
/// choice's base name (`value`).
fn renamed_choice<'a>(last_name: &'a str, slice: &str, el: &ElementDef) -> Option<&'a str> {
    if last_name != slice {
        return None;
    }
    let types = el.types.as_ref()?;
    let [only] = types.as_slice() else {
        return None;
    };
    let mut suffix = only.code.clone();
    if let Some(first) = suffix.get_mut(..1) {
        first.make_ascii_uppercase();
    }
    last_name
        .strip_suffix(suffix.as_str())
        .filter(|base| !base.is_empty() && base.bytes().all(|b| b.is_ascii_lowercase()))
}

fn parent_of(id: &str) -> &str {
    let segs = id_segments(id);
    let drop = segs
        .last()
        .map(|(n, s)| n.len() + s.map_or(0, |s| s.len() + 1) + 1);
    match drop {
        Some(d) if d <= id.len() => &id[..id.len() - d],
        _ => "",
    }
}

fn synthesise_id(el: &ElementDef, scope: &mut Vec<(String, String)>) -> String {
    // Keep only slice scopes that are ancestors-or-self of this path.
    scope.retain(|(path, _)| el.path == *path || el.path.starts_with(&format!("{path}.")));
    let mut id = el.path.clone();
    for (path, slice) in scope.iter().rev() {
        if el.path == *path {
            continue;
        }
        id = format!("{path}:{slice}{}", &id[path.len()..]);
        break;
    }
    if let Some(slice) = &el.slice_name {
        scope.retain(|(p, _)| p != &el.path);
        id = format!("{id}:{slice}");
        scope.push((el.path.clone(), slice.clone()));
    }
    id
}

pub(crate) fn kind_of(raw: &RawStructureDefinition) -> Kind {
    match raw.kind.as_deref() {
        Some("resource") => Kind::Resource,
        Some("primitive-type") => Kind::PrimitiveType,
        Some("logical") => Kind::Logical,
        _ => Kind::ComplexType,
    }
}

/// FHIR primitive type codes.
pub(crate) fn is_primitive(code: &str) -> bool {
    matches!(
        code,
        "boolean"
            | "integer"
            | "integer64"
            | "string"
            | "decimal"
            | "uri"
            | "url"
            | "canonical"
            | "base64Binary"
            | "instant"
            | "date"
            | "dateTime"
            | "time"
            | "code"
            | "oid"
            | "id"
            | "markdown"
            | "unsignedInt"
            | "positiveInt"
            | "uuid"
            | "xhtml"
    )
}

/// Upper-cases the first letter: the suffix a choice element takes for a type.
pub(crate) fn type_suffix(code: &str) -> String {
    let mut c = code.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// The compiled trees, addressable by id, with type references and slices resolved.
pub(crate) struct Compiled {
    pub trees: Vec<Tree>,
    pub by_url: HashMap<String, TreeId>,
}

/// Resolves type references to tree ids, builds the JSON key indexes, extension URLs, slice
/// discriminators and required-binding expansions.
pub(crate) fn finalize(
    compiled: HashMap<String, Arc<Tree>>,
    terminology: &Terminology,
) -> Compiled {
    let mut trees: Vec<Tree> = Vec::with_capacity(compiled.len());
    let mut by_url = HashMap::with_capacity(compiled.len());
    let mut entries: Vec<(String, Arc<Tree>)> = compiled.into_iter().collect();
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    for (url, tree) in entries {
        by_url.insert(url, trees.len() as TreeId);
        trees.push(Arc::try_unwrap(tree).unwrap_or_else(|arc| (*arc).clone()));
    }
    let lookup = |url: &str| by_url.get(strip_version(url)).copied();
    let type_names: Vec<String> = trees.iter().map(|t| t.type_name.clone()).collect();
    for tree in &mut trees {
        let r4 = tree.r4;
        for node in &mut tree.nodes {
            for t in &mut node.types {
                let mut resolved = None;
                for p in &t.profiles {
                    if let Some(id) = lookup(p) {
                        resolved = Some(id);
                        break;
                    }
                }
                t.profile_missing = resolved.is_none() && !t.profiles.is_empty();
                if resolved.is_none() && r4 {
                    resolved = if t.code.contains('/') {
                        lookup(&t.code)
                    } else {
                        lookup(&format!("{CORE_SD}{}", t.code))
                    };
                }
                t.tree = resolved;
                if !t.target_profiles.is_empty() {
                    let mut allowed = Vec::new();
                    for p in &t.target_profiles {
                        let name = match lookup(p) {
                            Some(id) => type_names[id as usize].clone(),
                            None => match strip_version(p).strip_prefix(CORE_SD) {
                                Some(n) => n.to_string(),
                                // An unknown target profile: do not restrict.
                                None => String::from("Resource"),
                            },
                        };
                        allowed.push(name);
                    }
                    if !allowed
                        .iter()
                        .any(|a| a == "Resource" || a == "DomainResource")
                    {
                        t.target_types = allowed;
                    }
                }
            }
            if let Some(b) = &mut node.binding
                && b.required
            {
                b.expansion = terminology.expand(&b.value_set);
            }
        }
        // JSON key index.
        let mut keys: Vec<KeyIndex> = Vec::with_capacity(tree.nodes.len());
        for node in &tree.nodes {
            let mut map = HashMap::with_capacity(node.children.len());
            for &c in &node.children {
                let child = &tree.nodes[c as usize];
                if let Some(prefix) = child.name.strip_suffix("[x]") {
                    for (i, t) in child.types.iter().enumerate() {
                        let key = format!("{prefix}{}", type_suffix(&t.code));
                        map.insert(key.into_boxed_str(), (c, Some(i as u16)));
                    }
                } else {
                    map.insert(child.name.clone().into_boxed_str(), (c, None));
                }
            }
            keys.push(map);
        }
        for (node, k) in tree.nodes.iter_mut().zip(keys) {
            node.keys = k;
        }
        if tree.type_name == "Extension"
            && let Some(root) = tree.nodes.first()
        {
            tree.extension_url = root
                .children
                .iter()
                .map(|&c| &tree.nodes[c as usize])
                .find(|n| n.name == "url")
                .and_then(|n| n.fixed.as_ref())
                .and_then(Value::as_str)
                .map(str::to_string);
        }
    }
    // Slice discriminators need every tree's extension URL, hence a second pass.
    let ext_urls: Vec<Option<String>> = trees.iter().map(|t| t.extension_url.clone()).collect();
    for ti in 0..trees.len() {
        let mut updates: Vec<(usize, Vec<SliceMatch>)> = Vec::new();
        {
            let tree = &trees[ti];
            for node in &tree.nodes {
                if node.slices.is_empty() {
                    continue;
                }
                let discriminators: Vec<(DiscriminatorKind, String)> = match &node.slicing {
                    Some(s) => s.discriminators.clone(),
                    None if node.is_extension() => {
                        vec![(DiscriminatorKind::Value, "url".to_string())]
                    }
                    None => Vec::new(),
                };
                for &s in &node.slices {
                    let slice = &tree.nodes[s as usize];
                    let mut matches = Vec::new();
                    for (kind, path) in &discriminators {
                        matches.push(slice_match(&trees, ti, s, *kind, path, &ext_urls));
                    }
                    if matches.is_empty() {
                        matches.push(SliceMatch::Unknown);
                    }
                    let _ = slice;
                    updates.push((s as usize, matches));
                }
            }
        }
        for (s, m) in updates {
            trees[ti].nodes[s].discriminator = m;
        }
    }
    Compiled { trees, by_url }
}

fn slice_match(
    trees: &[Tree],
    ti: usize,
    slice: NodeId,
    kind: DiscriminatorKind,
    path: &str,
    ext_urls: &[Option<String>],
) -> SliceMatch {
    let node = &trees[ti].nodes[slice as usize];
    match kind {
        DiscriminatorKind::Type => {
            if path == "$this" {
                SliceMatch::Type(node.types.iter().map(|t| t.code.clone()).collect())
            } else {
                SliceMatch::Unknown
            }
        }
        DiscriminatorKind::Value | DiscriminatorKind::Pattern => {
            let segs: Vec<String> = if path == "$this" {
                Vec::new()
            } else {
                path.split('.').map(str::to_string).collect()
            };
            if segs.iter().any(|s| s.contains('(')) {
                return SliceMatch::Unknown;
            }
            // Extension slices: `url` comes from the extension definition when not fixed here.
            if segs.len() == 1 && segs[0] == "url" && node.is_extension() {
                if let Some(v) = fixed_at(trees, ti, slice, &segs) {
                    return SliceMatch::Value {
                        path: segs,
                        value: v.0,
                        pattern: false,
                    };
                }
                let url = node.types[0]
                    .tree
                    .and_then(|t| ext_urls[t as usize].clone())
                    .or_else(|| node.types[0].profiles.first().cloned());
                return match url {
                    Some(u) => SliceMatch::Value {
                        path: segs,
                        value: Value::String(u),
                        pattern: false,
                    },
                    None => SliceMatch::Unknown,
                };
            }
            match fixed_at(trees, ti, slice, &segs) {
                Some((value, pattern)) => SliceMatch::Value {
                    path: segs,
                    value,
                    pattern,
                },
                None => SliceMatch::Unknown,
            }
        }
        DiscriminatorKind::Other => SliceMatch::Unknown,
    }
}

/// The fixed (false) or pattern (true) value at a path below a node.
fn fixed_at(trees: &[Tree], ti: usize, n: NodeId, segs: &[String]) -> Option<(Value, bool)> {
    let tree = &trees[ti];
    let node = &tree.nodes[n as usize];
    let Some((first, rest)) = segs.split_first() else {
        if let Some(f) = &node.fixed {
            return Some((f.clone(), false));
        }
        return node.pattern.clone().map(|p| (p, true));
    };
    // A pattern on this node can fix the value below it.
    if let Some(p) = node.pattern.as_ref().or(node.fixed.as_ref()) {
        let mut cur = p;
        let mut ok = true;
        for s in segs {
            match cur.get(s.as_str()) {
                Some(Value::Array(a)) if a.len() == 1 => cur = &a[0],
                Some(v) => cur = v,
                None => {
                    ok = false;
                    break;
                }
            }
        }
        if ok {
            return Some((cur.clone(), node.pattern.is_some()));
        }
    }
    let source = node.content_ref.unwrap_or(n);
    let src_node = &tree.nodes[source as usize];
    if !src_node.children.is_empty() {
        let (child, _) = src_node.keys.get(first.as_str()).copied().or_else(|| {
            src_node
                .children
                .iter()
                .find(|&&c| tree.nodes[c as usize].name == *first)
                .map(|&c| (c, None))
        })?;
        return fixed_at(trees, ti, child, rest);
    }
    let t = node.types.first()?.tree?;
    if t as usize == ti {
        return None;
    }
    let root = &trees[t as usize].nodes[0];
    let (child, _) = root.keys.get(first.as_str()).copied()?;
    fixed_at(trees, t as usize, child, rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn element_ids_split_into_names_and_slices() {
        assert_eq!(
            id_segments("Patient.identifier:nhsNumber.system"),
            vec![
                ("Patient", None),
                ("identifier", Some("nhsNumber")),
                ("system", None)
            ]
        );
        assert_eq!(
            id_segments("Extension.value[x]:valueString"),
            vec![("Extension", None), ("value[x]", Some("valueString"))]
        );
        assert_eq!(
            parent_of("Patient.identifier:nhsNumber.system"),
            "Patient.identifier:nhsNumber"
        );
    }

    #[test]
    fn missing_ids_are_synthesised_with_slice_scope() {
        let mut scope = Vec::new();
        let el = |path: &str, slice: Option<&str>| ElementDef {
            path: path.into(),
            slice_name: slice.map(str::to_string),
            ..ElementDef::default()
        };
        assert_eq!(synthesise_id(&el("Patient", None), &mut scope), "Patient");
        assert_eq!(
            synthesise_id(&el("Patient.identifier", Some("nhs")), &mut scope),
            "Patient.identifier:nhs"
        );
        assert_eq!(
            synthesise_id(&el("Patient.identifier.system", None), &mut scope),
            "Patient.identifier:nhs.system"
        );
        assert_eq!(
            synthesise_id(&el("Patient.name", None), &mut scope),
            "Patient.name"
        );
    }
}
