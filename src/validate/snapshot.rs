//! Snapshot generation for differential-only profiles: the base profile's compiled tree is
//! copied, then each differential element is applied to the node its id names. Elements the
//! base does not expand (a datatype's children, an extension's content) are unfolded from the
//! type's own definition (or the type profile's) on demand, and slices are created as copies of
//! the element they slice. Bases are compiled first, recursively: UK Core on R4 core, prison
//! profiles on UK Core.

use super::compile::{Node, NodeId, Registry, Tree, id_segments, kind_of, type_suffix};
use super::loader::{RawStructureDefinition, strip_version};

/// Derives the compiled tree of a differential-only profile from its base.
pub(crate) fn derive(reg: &mut Registry, raw: &RawStructureDefinition) -> Result<Tree, String> {
    let base_url = raw
        .base_definition
        .as_deref()
        .ok_or("it has neither a snapshot nor a baseDefinition")?;
    let base = reg
        .tree(base_url)
        .ok_or_else(|| format!("its base {base_url} is not loaded"))?;
    let mut tree: Tree = (*base).clone();
    tree.url = strip_version(&raw.url).to_string();
    if let Some(t) = &raw.type_name {
        tree.type_name = t.clone();
    }
    tree.kind = kind_of(raw);
    tree.extension_url = None;
    let Some(diff) = &raw.differential else {
        return Ok(tree);
    };
    for el in &diff.element {
        let id = match &el.id {
            Some(id) => id.clone(),
            None => match &el.slice_name {
                Some(s) => format!("{}:{s}", el.path),
                None => el.path.clone(),
            },
        };
        let segs = id_segments(&id);
        let Some(((root_name, _), rest)) = segs.split_first() else {
            continue;
        };
        if *root_name != tree.nodes[0].name && *root_name != tree.type_name {
            return Err(format!("element {id} is not inside {}", tree.type_name));
        }
        let mut cur: NodeId = 0;
        for (name, slice) in rest {
            cur =
                child_named(reg, &mut tree, cur, name).map_err(|e| format!("element {id}: {e}"))?;
            if let Some(slice) = slice {
                cur = slice_of(&mut tree, cur, slice);
            }
        }
        let mut node = std::mem::replace(&mut tree.nodes[cur as usize], Node::new("", ""));
        reg.apply(&mut node, el, false);
        tree.nodes[cur as usize] = node;
    }
    Ok(tree)
}

/// The child of `n` named `name`, unfolding `n`'s type first when needed.
fn child_named(
    reg: &mut Registry,
    tree: &mut Tree,
    n: NodeId,
    name: &str,
) -> Result<NodeId, String> {
    ensure_children(reg, tree, n)?;
    let children = tree.nodes[n as usize].children.clone();
    if let Some(&c) = children
        .iter()
        .find(|&&c| tree.nodes[c as usize].name == name)
    {
        return Ok(c);
    }
    // A choice element constrained to one type by its renamed path (`valueQuantity`).
    for &c in &children {
        let child = &tree.nodes[c as usize];
        let Some(prefix) = child.name.strip_suffix("[x]") else {
            continue;
        };
        if let Some(t) = child
            .types
            .iter()
            .find(|t| format!("{prefix}{}", type_suffix(&t.code)) == name)
            .cloned()
        {
            let s = slice_of(tree, c, name);
            tree.nodes[s as usize].types = vec![t];
            return Ok(s);
        }
    }
    Err(format!(
        "{} has no element {name}",
        tree.nodes[n as usize].id
    ))
}

/// Gives `n` explicit children, copied from its content reference or its type's definition.
fn ensure_children(reg: &mut Registry, tree: &mut Tree, n: NodeId) -> Result<(), String> {
    let node = &tree.nodes[n as usize];
    if !node.children.is_empty() {
        return Ok(());
    }
    if let Some(r) = node.content_ref {
        let sub = extract_children(&tree.nodes, r, true);
        let old_prefix = tree.nodes[r as usize].id.clone();
        graft_children(tree, n, sub, &old_prefix);
        return Ok(());
    }
    let ty = match node.types.as_slice() {
        [one] => one.clone(),
        [] => return Err(format!("{} has no type to unfold", node.id)),
        _ => {
            return Err(format!(
                "{} has several types; constrain it to one first",
                node.id
            ));
        }
    };
    let mut source = None;
    for p in &ty.profiles {
        if let Some(t) = reg.tree(p) {
            source = Some(t);
            break;
        }
    }
    let source = match source {
        Some(s) => s,
        None => reg
            .type_tree(&ty.code)
            .ok_or_else(|| format!("type {} is not loaded", ty.code))?,
    };
    let sub = extract_children(&source.nodes, 0, false);
    let old_prefix = source.nodes[0].id.clone();
    graft_children(tree, n, sub, &old_prefix);
    // The type's own invariants apply to the element.
    let root_constraints = source.nodes[0].constraints.clone();
    let node = &mut tree.nodes[n as usize];
    for c in root_constraints {
        if !node.constraints.iter().any(|k| k.key == c.key) {
            node.constraints.push(c);
        }
    }
    Ok(())
}

/// A detached copy of a subtree: its nodes with indices relative to the copy (root first).
struct Subtree {
    nodes: Vec<Node>,
}

/// Copies the children (with their own children and slices) of `root`. Content references are
/// kept only for copies within the same tree (`same_tree`), where they still point right.
fn extract_children(nodes: &[Node], root: NodeId, same_tree: bool) -> Subtree {
    let mut out = Subtree { nodes: Vec::new() };
    let mut root_copy = nodes[root as usize].clone();
    root_copy.children.clear();
    root_copy.slices.clear();
    out.nodes.push(root_copy);
    let children = nodes[root as usize].children.clone();
    for c in children {
        let idx = copy_into(nodes, c, &mut out.nodes, same_tree);
        out.nodes[0].children.push(idx);
    }
    out
}

fn copy_into(nodes: &[Node], n: NodeId, out: &mut Vec<Node>, same_tree: bool) -> NodeId {
    let mut copy = nodes[n as usize].clone();
    let children = std::mem::take(&mut copy.children);
    let slices = std::mem::take(&mut copy.slices);
    if !same_tree {
        copy.content_ref = None;
    }
    let idx = out.len() as NodeId;
    out.push(copy);
    for c in children {
        let ci = copy_into(nodes, c, out, same_tree);
        out[idx as usize].children.push(ci);
    }
    for s in slices {
        let si = copy_into(nodes, s, out, same_tree);
        out[idx as usize].slices.push(si);
    }
    idx
}

/// Appends a detached subtree's children under `n`, renaming ids from `old_prefix` to `n`'s id.
fn graft_children(tree: &mut Tree, n: NodeId, sub: Subtree, old_prefix: &str) {
    let new_prefix = tree.nodes[n as usize].id.clone();
    let offset = tree.nodes.len() as NodeId;
    let root_children: Vec<NodeId> = sub.nodes[0].children.clone();
    for mut node in sub.nodes.into_iter().skip(1) {
        node.id = match node.id.strip_prefix(old_prefix) {
            Some(rest) => format!("{new_prefix}{rest}"),
            None => node.id,
        };
        for c in &mut node.children {
            *c = *c - 1 + offset;
        }
        for s in &mut node.slices {
            *s = *s - 1 + offset;
        }
        tree.nodes.push(node);
    }
    let parent = &mut tree.nodes[n as usize];
    for c in root_children {
        parent.children.push(c - 1 + offset);
    }
}

/// The slice of `n` named `name`, created as a copy of `n` when new.
fn slice_of(tree: &mut Tree, n: NodeId, name: &str) -> NodeId {
    if let Some(&s) = tree.nodes[n as usize]
        .slices
        .iter()
        .find(|&&s| tree.nodes[s as usize].slice_name.as_deref() == Some(name))
    {
        return s;
    }
    let sub = extract_children(&tree.nodes, n, true);
    let old_prefix = tree.nodes[n as usize].id.clone();
    let mut slice = tree.nodes[n as usize].clone();
    slice.id = format!("{old_prefix}:{name}");
    slice.slice_name = Some(name.to_string());
    // A new slice starts optional; the differential states its own minimum.
    slice.min = 0;
    slice.slicing = None;
    slice.slices.clear();
    slice.children.clear();
    let s = tree.nodes.len() as NodeId;
    tree.nodes.push(slice);
    graft_children(tree, s, sub, &old_prefix);
    tree.nodes[n as usize].slices.push(s);
    s
}
