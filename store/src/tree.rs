//! Per-version Merkle trees: a canonical, path-compressed byte trie over fixed-length keys, stored as
//! content-addressed objects. This module owns the tree-node format.
//!
//! The shape depends only on the set of entries: a set of at most [`LEAF_MAX`] entries is one leaf;
//! a larger set is an inner node at the longest prefix all its keys share (in whole steps of
//! [`STEP_BITS`] bits), with one child per value of the next step. So the root hash is
//! history-independent, an update of k entries rewrites O(k log n) nodes, two trees diff in
//! O(d log n) by skipping equal hashes, and (with Morton keys, where a 3-bit step is one octree level)
//! a region of space is a set of subtrees. Lookups walk O(log n) levels, whatever the version history.

use crate::geometry::{key_in_box, prefix_meets_box};
use crate::{ObjectId, ObjectStore, Point, Result, StoreError};
use quick_cache::sync::Cache;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Most entries a leaf holds; a larger set splits into an inner node.
pub const LEAF_MAX: usize = 64;
/// Bits of the key consumed per inner level: 3, one octree level of a Morton key, so dense blocks
/// fill leaves exactly (4x4x4 = 64) and inner nodes have at most 8 children.
pub const STEP_BITS: usize = 3;
const FANOUT: u8 = 1 << STEP_BITS;
/// Largest encoded tree node accepted from disk or a peer.
pub const MAX_NODE_BYTES: usize = 64 * 1024;
/// Longest tree key (block keys are 12 bytes, key-value keys 32).
pub const MAX_KEY_LEN: usize = 32;
/// Longest original name kept beside a key (key-value keys).
pub const MAX_NAME_LEN: usize = 4096;

/// One mapping of the tree: `key` to the object holding its value. `name` keeps the original key
/// where `key` is its hash (key-value instances); it is empty for blocks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub key: Vec<u8>,
    pub name: Vec<u8>,
    pub object: ObjectId,
}

/// A change to apply to a tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    Put(Entry),
    Delete(Vec<u8>),
}

impl Change {
    pub fn key(&self) -> &[u8] {
        match self {
            Self::Put(e) => &e.key,
            Self::Delete(k) => k,
        }
    }
}

/// A reference to a (sub)tree: its root object and how many entries it holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TreeRef {
    pub id: ObjectId,
    pub count: u64,
}

/// A child slot of an inner node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Child {
    pub slot: u8,
    pub tree: TreeRef,
}

/// The part of an index a walk covers: the one pruning predicate of every tree walk (reads, fsck,
/// the pull engine, diffs). A data type makes it from a region ([`crate::types::DataType::scope`]).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Every key.
    All,
    /// Block keys inside these inclusive block boxes (none: no key).
    Blocks(Vec<(Point, Point)>),
    /// Block keys inside these boxes, and every key that starts with a zero byte (a labelmap's
    /// mapping, label indices and mutations, which no block key can start with).
    BlocksAndMeta(Vec<(Point, Point)>),
    /// Keys that start with these bytes.
    Prefix(Vec<u8>),
    /// Keys `k` with `lo <= k < hi`.
    Range { lo: Vec<u8>, hi: Vec<u8> },
}

impl Scope {
    /// True if the subtree of keys that start with the first `bits` bits of `prefix` may hold a key
    /// of the scope.
    pub fn enters(&self, prefix: &[u8], bits: usize) -> bool {
        match self {
            Scope::All => true,
            Scope::Blocks(boxes) => boxes.iter().any(|&b| prefix_meets_box(prefix, bits, b)),
            Scope::BlocksAndMeta(boxes) => {
                shares_bits(prefix, bits, &[0])
                    || boxes.iter().any(|&b| prefix_meets_box(prefix, bits, b))
            }
            Scope::Prefix(p) => shares_bits(prefix, bits, p),
            // Truncating keys to their first bits keeps their order, so every key of the range
            // has its first bits between those of `lo` and `hi`.
            Scope::Range { lo, hi } => {
                cmp_bits(prefix, lo, bits).is_ge() && cmp_bits(prefix, hi, bits).is_le()
            }
        }
    }

    /// True if `key` is in the scope.
    pub fn keeps(&self, key: &[u8]) -> bool {
        match self {
            Scope::All => true,
            Scope::Blocks(boxes) => boxes.iter().any(|&b| key_in_box(key, b)),
            Scope::BlocksAndMeta(boxes) => {
                key.first() == Some(&0) || boxes.iter().any(|&b| key_in_box(key, b))
            }
            Scope::Prefix(p) => key.starts_with(p),
            Scope::Range { lo, hi } => lo.as_slice() <= key && key < hi.as_slice(),
        }
    }
}

/// Orders the first `bits` bits of two keys (zero past a key's end).
fn cmp_bits(a: &[u8], b: &[u8], bits: usize) -> std::cmp::Ordering {
    (0..bits)
        .map(|i| bit(a, i).cmp(&bit(b, i)))
        .find(|o| o.is_ne())
        .unwrap_or(std::cmp::Ordering::Equal)
}

/// True if the first `bits` bits of `prefix` agree with `want` wherever both have bits: a subtree
/// of those keys may hold keys starting with `want`.
fn shares_bits(prefix: &[u8], bits: usize, want: &[u8]) -> bool {
    (0..bits.min(want.len() * 8)).all(|i| bit(prefix, i) == bit(want, i))
}

/// A child of an inner node with the key prefix its subtree covers: its keys all start with the
/// first `bits` bits of `prefix`.
pub struct Subtree<'a> {
    pub prefix: Vec<u8>,
    pub bits: usize,
    pub child: &'a Child,
}

/// A tree node as stored. The variant index is on the wire (postcard): append, never reorder.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Node {
    /// Entries sorted by key, at most [`LEAF_MAX`].
    Leaf(#[serde(deserialize_with = "at_most::<LEAF_MAX, _, _>")] Vec<Entry>),
    /// All keys below share their first `depth` bits (a multiple of [`STEP_BITS`]), held in `prefix`
    /// with the bits past `depth` zeroed; children are keyed by the next step's bits, sorted, at
    /// least two.
    Inner {
        depth: u16,
        prefix: Vec<u8>,
        #[serde(deserialize_with = "at_most::<MAX_CHILDREN, _, _>")]
        children: Vec<Child>,
    },
}

const MAX_CHILDREN: usize = FANOUT as usize;

/// Deserializes a sequence of at most `MAX` elements. Serde's own `Vec` reserves room for as many
/// elements as the input claims (up to 1 MiB) before reading any, which from a node of at most
/// [`MAX_NODE_BYTES`] would be 16 times its bound; this reserves at most `MAX` and refuses a longer
/// sequence as soon as it is claimed.
fn at_most<'de, const MAX: usize, T, D>(d: D) -> std::result::Result<Vec<T>, D::Error>
where
    T: Deserialize<'de>,
    D: serde::Deserializer<'de>,
{
    struct AtMost<const MAX: usize, T>(std::marker::PhantomData<T>);

    impl<'de, const MAX: usize, T: Deserialize<'de>> serde::de::Visitor<'de> for AtMost<MAX, T> {
        type Value = Vec<T>;

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            write!(f, "a sequence of at most {MAX} elements")
        }

        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> std::result::Result<Vec<T>, A::Error> {
            let claimed = seq.size_hint().unwrap_or(0);
            if claimed > MAX {
                return Err(serde::de::Error::invalid_length(claimed, &self));
            }
            let mut out = Vec::with_capacity(claimed);
            while let Some(x) = seq.next_element()? {
                if out.len() == MAX {
                    return Err(serde::de::Error::invalid_length(MAX + 1, &self));
                }
                out.push(x);
            }
            Ok(out)
        }
    }

    d.deserialize_seq(AtMost::<MAX, T>(std::marker::PhantomData))
}

/// Magic first byte of every tree-node object, so a node is never mistaken for a block payload.
const NODE_TAG: u8 = b'T';

impl Node {
    /// The children of an inner node with their prefixes (none for a leaf): the step every walk
    /// takes before asking its [`Scope`] whether to go down.
    pub fn subtrees(&self) -> impl Iterator<Item = Subtree<'_>> {
        let (depth, prefix, children): (usize, &[u8], &[Child]) = match self {
            Node::Leaf(_) => (0, &[], &[]),
            Node::Inner {
                depth,
                prefix,
                children,
            } => (usize::from(*depth), prefix, children),
        };
        children.iter().map(move |c| Subtree {
            prefix: child_prefix(prefix, depth, c.slot),
            bits: depth + STEP_BITS,
            child: c,
        })
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![NODE_TAG];
        out.extend(postcard::to_stdvec(self).expect("tree nodes serialize"));
        out
    }

    /// Decodes and validates untrusted node bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let corrupt = |m: String| StoreError::Corrupt(format!("tree node: {m}"));
        if bytes.len() > MAX_NODE_BYTES {
            return Err(corrupt(format!(
                "{} bytes exceeds {MAX_NODE_BYTES}",
                bytes.len()
            )));
        }
        let Some((&NODE_TAG, body)) = bytes.split_first() else {
            return Err(corrupt("missing tag".into()));
        };
        let node: Node = postcard::from_bytes(body).map_err(|e| corrupt(e.to_string()))?;
        node.validate().map_err(corrupt)?;
        Ok(node)
    }

    fn validate(&self) -> std::result::Result<(), String> {
        match self {
            Self::Leaf(entries) => {
                if entries.len() > LEAF_MAX {
                    return Err(format!("leaf of {} entries", entries.len()));
                }
                if entries
                    .iter()
                    .any(|e| e.key.len() > MAX_KEY_LEN || e.name.len() > MAX_NAME_LEN)
                {
                    return Err("oversized key or name".into());
                }
                if entries.windows(2).any(|w| w[0].key >= w[1].key) {
                    return Err("leaf keys not strictly sorted".into());
                }
            }
            Self::Inner {
                depth,
                prefix,
                children,
            } => {
                let depth = usize::from(*depth);
                if depth % STEP_BITS != 0
                    || depth >= MAX_KEY_LEN * 8
                    || *prefix != prefix_of(prefix, depth)
                {
                    return Err(format!("inner node with a bad prefix of {depth} bits"));
                }
                if children.len() < 2 || children.iter().any(|c| c.slot >= FANOUT) {
                    return Err("inner node with fewer than two children or a bad slot".into());
                }
                if children.windows(2).any(|w| w[0].slot >= w[1].slot) {
                    return Err("inner slots not strictly sorted".into());
                }
            }
        }
        Ok(())
    }
}

/// Reads and writes tree nodes through an object store, with a cache of decoded nodes (nodes are
/// immutable, so the cache never needs invalidating).
pub struct Trees {
    objects: Arc<dyn ObjectStore>,
    cache: Cache<ObjectId, Arc<Node>>,
}

/// New nodes produced by an update, to be stored before the new root is published.
pub type NewNodes = Vec<(ObjectId, Vec<u8>)>;

impl Trees {
    pub fn new(objects: Arc<dyn ObjectStore>, cached_nodes: usize) -> Self {
        Self {
            objects,
            cache: Cache::new(cached_nodes),
        }
    }

    /// Loads a node, verifying its bytes hash to its id.
    pub fn load(&self, id: &ObjectId) -> Result<Arc<Node>> {
        if let Some(n) = self.cache.get(id) {
            return Ok(n);
        }
        let bytes = self
            .objects
            .get_object(id)?
            .ok_or_else(|| StoreError::Corrupt(format!("tree node {id} is missing")))?;
        if ObjectId::of(&bytes) != *id {
            return Err(StoreError::Corrupt(format!(
                "tree node {id} fails its hash"
            )));
        }
        let node = Arc::new(Node::decode(&bytes)?);
        self.cache.insert(*id, node.clone());
        Ok(node)
    }

    fn store(&self, node: Node, count: u64, out: &mut NewNodes) -> TreeRef {
        let bytes = node.encode();
        let id = ObjectId::of(&bytes);
        self.cache.insert(id, Arc::new(node));
        out.push((id, bytes));
        TreeRef { id, count }
    }

    /// Finds the entry for `key`.
    pub fn get(&self, root: Option<TreeRef>, key: &[u8]) -> Result<Option<Entry>> {
        let Some(mut at) = root else { return Ok(None) };
        loop {
            let node = self.load(&at.id)?;
            match &*node {
                Node::Leaf(entries) => {
                    return Ok(entries
                        .binary_search_by(|e| e.key.as_slice().cmp(key))
                        .ok()
                        .map(|i| entries[i].clone()));
                }
                Node::Inner {
                    depth,
                    prefix,
                    children,
                } => {
                    let depth = usize::from(*depth);
                    if !has_prefix(key, prefix, depth) {
                        return Ok(None);
                    }
                    let slot = slot_at(key, depth);
                    match children.binary_search_by_key(&slot, |c| c.slot) {
                        Ok(i) => at = children[i].tree,
                        Err(_) => return Ok(None),
                    }
                }
            }
        }
    }

    /// The object of the subtree holding the keys that share the first `bits` bits of `prefix`, as an
    /// inner node's child pointer names it (so `bits` is a parent's depth plus one step).
    pub fn node_at(
        &self,
        root: Option<TreeRef>,
        prefix: &[u8],
        bits: usize,
    ) -> Result<Option<ObjectId>> {
        let Some(mut at) = root else { return Ok(None) };
        loop {
            let node = self.load(&at.id)?;
            let Node::Inner {
                depth,
                prefix: p,
                children,
            } = &*node
            else {
                return Ok(None);
            };
            let d = usize::from(*depth);
            if d + STEP_BITS > bits || !has_prefix(prefix, p, d) || prefix.len() * 8 < bits {
                return Ok(None);
            }
            let slot = slot_at(prefix, d);
            let Ok(i) = children.binary_search_by_key(&slot, |c| c.slot) else {
                return Ok(None);
            };
            if d + STEP_BITS == bits {
                return Ok(Some(children[i].tree.id));
            }
            at = children[i].tree;
        }
    }

    /// Applies `changes` (sorted by key, unique keys, all keys of one length) and returns the new root.
    /// New nodes are appended to `out`; the caller stores them before publishing the root.
    pub fn apply(
        &self,
        root: Option<TreeRef>,
        changes: &[Change],
        out: &mut NewNodes,
    ) -> Result<Option<TreeRef>> {
        debug_assert!(changes.windows(2).all(|w| w[0].key() < w[1].key()));
        if changes.is_empty() {
            return Ok(root);
        }
        let Some(root) = root else {
            let puts: Vec<Entry> = changes
                .iter()
                .filter_map(|c| match c {
                    Change::Put(e) => Some(e.clone()),
                    Change::Delete(_) => None,
                })
                .collect();
            return Ok(self.build(&puts, out));
        };
        let node = self.load(&root.id)?;
        match &*node {
            Node::Leaf(entries) => Ok(self.build(&merge_entries(entries, changes), out)),
            Node::Inner {
                depth,
                prefix,
                children,
            } => {
                let d = usize::from(*depth);
                // Puts outside the prefix make the common prefix shorter: split above this node.
                let split = changes
                    .iter()
                    .filter(|c| matches!(c, Change::Put(_)) && !has_prefix(c.key(), prefix, d))
                    .map(|c| common_bits(prefix, c.key()).min(d) / STEP_BITS * STEP_BITS)
                    .min();
                if let Some(dnew) = split {
                    let own = slot_at(prefix, dnew);
                    let mut kids = Vec::new();
                    for (slot, group) in group_by_slot(changes, dnew) {
                        let sub = if slot == own {
                            self.apply(Some(root), group, out)?
                        } else {
                            self.apply(None, group, out)?
                        };
                        if let Some(tree) = sub {
                            kids.push(Child { slot, tree });
                        }
                    }
                    return self.finish_inner(dnew, prefix_of(prefix, dnew), kids, out);
                }
                // All changes that matter lie under the prefix (a contiguous run, as changes are
                // sorted and the prefix is zero-padded); deletes outside it are no-ops.
                let lo = changes.partition_point(|c| c.key() < prefix.as_slice());
                let hi = lo + changes[lo..].partition_point(|c| has_prefix(c.key(), prefix, d));
                let mut kids = children.clone();
                for (slot, group) in group_by_slot(&changes[lo..hi], d) {
                    let pos = kids.binary_search_by_key(&slot, |c| c.slot);
                    let old = pos.ok().map(|i| kids[i].tree);
                    let new = self.apply(old, group, out)?;
                    match (pos, new) {
                        (Ok(i), Some(tree)) => kids[i].tree = tree,
                        (Ok(i), None) => {
                            kids.remove(i);
                        }
                        (Err(i), Some(tree)) => kids.insert(i, Child { slot, tree }),
                        (Err(_), None) => {}
                    }
                }
                self.finish_inner(d, prefix.clone(), kids, out)
            }
        }
    }

    /// Canonical node for a set already split into children at `prefix` (`depth` bits).
    fn finish_inner(
        &self,
        depth: usize,
        prefix: Vec<u8>,
        kids: Vec<Child>,
        out: &mut NewNodes,
    ) -> Result<Option<TreeRef>> {
        let total: u64 = kids.iter().map(|c| c.tree.count).sum();
        if total as usize <= LEAF_MAX {
            let mut entries = Vec::with_capacity(total as usize);
            for c in &kids {
                self.collect(Some(c.tree), &Scope::All, &mut entries)?;
            }
            return Ok(self.build(&entries, out));
        }
        if kids.len() == 1 {
            // A single child holds the whole set; it is already canonical at its longer prefix.
            return Ok(Some(kids[0].tree));
        }
        Ok(Some(self.store(
            Node::Inner {
                depth: depth as u16,
                prefix,
                children: kids,
            },
            total,
            out,
        )))
    }

    /// Builds the canonical tree of sorted, unique entries.
    fn build(&self, entries: &[Entry], out: &mut NewNodes) -> Option<TreeRef> {
        if entries.is_empty() {
            return None;
        }
        let count = entries.len() as u64;
        if entries.len() <= LEAF_MAX {
            return Some(self.store(Node::Leaf(entries.to_vec()), count, out));
        }
        let bits = common_bits(&entries[0].key, &entries[entries.len() - 1].key);
        let d = bits / STEP_BITS * STEP_BITS;
        let prefix = prefix_of(&entries[0].key, d);
        let mut children = Vec::new();
        let mut rest = entries;
        while let Some(first) = rest.first() {
            let slot = slot_at(&first.key, d);
            let n = rest.partition_point(|e| slot_at(&e.key, d) == slot);
            let tree = self.build(&rest[..n], out).expect("non-empty group");
            children.push(Child { slot, tree });
            rest = &rest[n..];
        }
        let depth = d as u16;
        Some(self.store(
            Node::Inner {
                depth,
                prefix,
                children,
            },
            count,
            out,
        ))
    }

    /// Appends every entry of the tree within `scope`, in key order.
    pub fn collect(
        &self,
        root: Option<TreeRef>,
        scope: &Scope,
        out: &mut Vec<Entry>,
    ) -> Result<()> {
        self.visit(root, scope, &mut |e| {
            out.push(e.clone());
            true
        })
    }

    /// Walks the entries within `scope` in key order, entering only the subtrees the scope meets;
    /// `visit` returns false to stop.
    pub fn visit(
        &self,
        root: Option<TreeRef>,
        scope: &Scope,
        visit: &mut dyn FnMut(&Entry) -> bool,
    ) -> Result<()> {
        if let Some(root) = root {
            self.visit_node(&root.id, scope, visit)?;
        }
        Ok(())
    }

    fn visit_node(
        &self,
        id: &ObjectId,
        scope: &Scope,
        visit: &mut dyn FnMut(&Entry) -> bool,
    ) -> Result<bool> {
        let node = self.load(id)?;
        if let Node::Leaf(entries) = &*node {
            for e in entries.iter().filter(|e| scope.keeps(&e.key)) {
                if !visit(e) {
                    return Ok(false);
                }
            }
        }
        for s in node.subtrees() {
            if scope.enters(&s.prefix, s.bits)
                && !self.visit_node(&s.child.tree.id, scope, visit)?
            {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// The greatest key within `scope`, entering only the subtrees the scope meets.
    pub fn last_key(&self, root: Option<TreeRef>, scope: &Scope) -> Result<Option<Vec<u8>>> {
        match root {
            None => Ok(None),
            Some(root) => self.last_in(&root.id, scope),
        }
    }

    fn last_in(&self, id: &ObjectId, scope: &Scope) -> Result<Option<Vec<u8>>> {
        let node = self.load(id)?;
        if let Node::Leaf(entries) = &*node {
            return Ok(entries
                .iter()
                .rev()
                .find(|e| scope.keeps(&e.key))
                .map(|e| e.key.clone()));
        }
        let subtrees: Vec<Subtree<'_>> = node.subtrees().collect();
        for s in subtrees.iter().rev() {
            if scope.enters(&s.prefix, s.bits)
                && let Some(k) = self.last_in(&s.child.tree.id, scope)?
            {
                return Ok(Some(k));
            }
        }
        Ok(None)
    }

    /// Every object id reachable from `root`: tree nodes and the objects their entries name.
    pub fn reachable(&self, root: Option<TreeRef>, out: &mut Vec<ObjectId>) -> Result<()> {
        let Some(root) = root else { return Ok(()) };
        out.push(root.id);
        match &*self.load(&root.id)? {
            Node::Leaf(entries) => out.extend(entries.iter().map(|e| e.object)),
            Node::Inner { children, .. } => {
                for c in children {
                    self.reachable(Some(c.tree), out)?;
                }
            }
        }
        Ok(())
    }

    /// The entries within `scope` that differ between two trees, as `(key, in a, in b)`, in key
    /// order. Equal subtrees are skipped by hash and subtrees outside the scope are never loaded,
    /// so the cost follows the differences, not the tree sizes.
    pub fn diff(
        &self,
        a: Option<TreeRef>,
        b: Option<TreeRef>,
        scope: &Scope,
    ) -> Result<Vec<Difference>> {
        let mut out = Vec::new();
        self.diff_into(a, b, (&[], 0), scope, &mut out)?;
        Ok(out)
    }

    /// Diffs two subtrees whose keys all start with the first `at.1` bits of `at.0`.
    fn diff_into(
        &self,
        a: Option<TreeRef>,
        b: Option<TreeRef>,
        at: (&[u8], usize),
        scope: &Scope,
        out: &mut Vec<Difference>,
    ) -> Result<()> {
        if a.map(|t| t.id) == b.map(|t| t.id) || !scope.enters(at.0, at.1) {
            return Ok(());
        }
        if let (Some(ta), Some(tb)) = (a, b) {
            let (na, nb) = (self.load(&ta.id)?, self.load(&tb.id)?);
            if let (
                Node::Inner {
                    depth: da,
                    prefix: pa,
                    children: ca,
                },
                Node::Inner {
                    depth: db,
                    prefix: pb,
                    children: cb,
                },
            ) = (&*na, &*nb)
            {
                let (da, db) = (usize::from(*da), usize::from(*db));
                if da == db && pa == pb {
                    // Same shape here: pair children by slot.
                    let mut slots: Vec<u8> = ca.iter().chain(cb).map(|c| c.slot).collect();
                    slots.sort_unstable();
                    slots.dedup();
                    for s in slots {
                        let find = |cs: &[Child]| cs.iter().find(|c| c.slot == s).map(|c| c.tree);
                        let p = child_prefix(pa, da, s);
                        self.diff_into(find(ca), find(cb), (&p, da + STEP_BITS), scope, out)?;
                    }
                    return Ok(());
                }
                let a_holds_b = da < db && has_prefix(pb, pa, da);
                let b_holds_a = db < da && has_prefix(pa, pb, db);
                if a_holds_b || b_holds_a {
                    // One node sits inside one child of the other: pair it with that child.
                    let (outer, outer_prefix, d, inner_ref, slot) = if a_holds_b {
                        (ca, pa, da, tb, slot_at(pb, da))
                    } else {
                        (cb, pb, db, ta, slot_at(pa, db))
                    };
                    let start = out.len();
                    let mut paired = false;
                    for c in outer {
                        let other = (c.slot == slot).then_some(inner_ref);
                        paired |= other.is_some();
                        let p = child_prefix(outer_prefix, d, c.slot);
                        let (x, y) = match a_holds_b {
                            true => (Some(c.tree), other),
                            false => (other, Some(c.tree)),
                        };
                        self.diff_into(x, y, (&p, d + STEP_BITS), scope, out)?;
                    }
                    if !paired {
                        let (x, y) = match a_holds_b {
                            true => (None, Some(inner_ref)),
                            false => (Some(inner_ref), None),
                        };
                        let p = child_prefix(outer_prefix, d, slot);
                        self.diff_into(x, y, (&p, d + STEP_BITS), scope, out)?;
                    }
                    out[start..].sort_by(|p, q| p.key.cmp(&q.key));
                    return Ok(());
                }
            }
        }
        // Different shapes (a leaf against anything, or disjoint prefixes): compare entry lists.
        // This happens only where the structure changed, so the lists are small.
        let (mut ea, mut eb) = (Vec::new(), Vec::new());
        self.collect(a, scope, &mut ea)?;
        self.collect(b, scope, &mut eb)?;
        merge_diff(ea, eb, out);
        Ok(())
    }
}

/// One differing key between two trees.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Difference {
    pub key: Vec<u8>,
    pub a: Option<Entry>,
    pub b: Option<Entry>,
}

fn merge_diff(ea: Vec<Entry>, eb: Vec<Entry>, out: &mut Vec<Difference>) {
    let (mut ia, mut ib) = (ea.into_iter().peekable(), eb.into_iter().peekable());
    loop {
        let ord = match (ia.peek(), ib.peek()) {
            (None, None) => break,
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (Some(x), Some(y)) => x.key.cmp(&y.key),
        };
        match ord {
            std::cmp::Ordering::Less => {
                let x = ia.next().expect("peeked");
                out.push(Difference {
                    key: x.key.clone(),
                    a: Some(x),
                    b: None,
                });
            }
            std::cmp::Ordering::Greater => {
                let y = ib.next().expect("peeked");
                out.push(Difference {
                    key: y.key.clone(),
                    a: None,
                    b: Some(y),
                });
            }
            std::cmp::Ordering::Equal => {
                let (x, y) = (ia.next().expect("peeked"), ib.next().expect("peeked"));
                if x != y {
                    out.push(Difference {
                        key: x.key.clone(),
                        a: Some(x),
                        b: Some(y),
                    });
                }
            }
        }
    }
}

fn merge_entries(entries: &[Entry], changes: &[Change]) -> Vec<Entry> {
    let mut out = Vec::with_capacity(entries.len() + changes.len());
    let (mut i, mut j) = (0, 0);
    while i < entries.len() || j < changes.len() {
        let take_change = j < changes.len()
            && (i == entries.len() || changes[j].key() <= entries[i].key.as_slice());
        if take_change {
            if i < entries.len() && changes[j].key() == entries[i].key.as_slice() {
                i += 1;
            }
            if let Change::Put(e) = &changes[j] {
                out.push(e.clone());
            }
            j += 1;
        } else {
            out.push(entries[i].clone());
            i += 1;
        }
    }
    out
}

/// Groups sorted changes by their slot at `depth` bits.
fn group_by_slot(changes: &[Change], depth: usize) -> Vec<(u8, &[Change])> {
    let mut out = Vec::new();
    let mut rest = changes;
    while let Some(first) = rest.first() {
        let slot = slot_at(first.key(), depth);
        let n = rest.partition_point(|c| slot_at(c.key(), depth) == slot);
        out.push((slot, &rest[..n]));
        rest = &rest[n..];
    }
    out
}

fn bit(key: &[u8], i: usize) -> u8 {
    key.get(i / 8).map_or(0, |b| (b >> (7 - i % 8)) & 1)
}

/// The [`STEP_BITS`] bits of `key` starting at bit `depth` (zero past the key's end).
fn slot_at(key: &[u8], depth: usize) -> u8 {
    (0..STEP_BITS).fold(0, |s, j| (s << 1) | bit(key, depth + j))
}

/// The first `bits` bits of `key`, zero-padded to whole bytes.
fn prefix_of(key: &[u8], bits: usize) -> Vec<u8> {
    let mut p: Vec<u8> = key.iter().copied().take(bits.div_ceil(8)).collect();
    p.resize(bits.div_ceil(8), 0);
    if !bits.is_multiple_of(8) {
        let last = p.len() - 1;
        p[last] &= 0xffu8 << (8 - bits % 8);
    }
    p
}

/// `prefix` (of `depth` bits) extended by one step holding `slot`: the prefix of that child.
pub fn child_prefix(prefix: &[u8], depth: usize, slot: u8) -> Vec<u8> {
    let mut p = prefix_of(prefix, depth);
    p.resize((depth + STEP_BITS).div_ceil(8), 0);
    for j in 0..STEP_BITS {
        if (slot >> (STEP_BITS - 1 - j)) & 1 == 1 {
            let i = depth + j;
            p[i / 8] |= 0x80 >> (i % 8);
        }
    }
    p
}

/// Number of leading bits `a` and `b` share.
fn common_bits(a: &[u8], b: &[u8]) -> usize {
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        if x != y {
            return i * 8 + (x ^ y).leading_zeros() as usize;
        }
    }
    a.len().min(b.len()) * 8
}

/// True if `key` starts with the first `bits` bits of `prefix`.
fn has_prefix(key: &[u8], prefix: &[u8], bits: usize) -> bool {
    key.len() * 8 > bits && common_bits(key, prefix) >= bits.min(prefix.len() * 8)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemEngine;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn trees() -> (Trees, Arc<MemEngine>) {
        let mem = Arc::new(MemEngine::new());
        (Trees::new(mem.clone(), 1024), mem)
    }

    fn entry(k: u32, v: u32) -> Entry {
        Entry {
            key: k.to_be_bytes().to_vec(),
            name: vec![],
            object: ObjectId::of(&v.to_le_bytes()),
        }
    }

    fn put_all(
        t: &Trees,
        mem: &MemEngine,
        root: Option<TreeRef>,
        changes: &[Change],
    ) -> Option<TreeRef> {
        let mut out = Vec::new();
        let r = t.apply(root, changes, &mut out).unwrap();
        mem.put_objects(&out).unwrap();
        r
    }

    fn to_changes(m: &BTreeMap<u32, Option<u32>>) -> Vec<Change> {
        m.iter()
            .map(|(&k, v)| match v {
                Some(v) => Change::Put(entry(k, *v)),
                None => Change::Delete(k.to_be_bytes().to_vec()),
            })
            .collect()
    }

    #[test]
    fn tree_node_golden_bytes() {
        let leaf = Node::Leaf(vec![Entry {
            key: vec![1, 2],
            name: vec![],
            object: ObjectId([0xab; 32]),
        }]);
        let bytes = leaf.encode();
        // tag 'T', variant 0 (Leaf), 1 entry, key len 2, key, name len 0, 32 hash bytes.
        assert_eq!(&bytes[..7], &[b'T', 0, 1, 2, 1, 2, 0]);
        assert_eq!(bytes.len(), 7 + 32);
        assert_eq!(Node::decode(&bytes).unwrap(), leaf);
        let inner = Node::Inner {
            depth: 3,
            prefix: vec![0xa0],
            children: vec![
                Child {
                    slot: 1,
                    tree: TreeRef {
                        id: ObjectId([1; 32]),
                        count: 65,
                    },
                },
                Child {
                    slot: 7,
                    tree: TreeRef {
                        id: ObjectId([2; 32]),
                        count: 1,
                    },
                },
            ],
        };
        let bytes = inner.encode();
        // tag, variant 1 (Inner), depth 3, prefix len 1, 0xa0, 2 children, slot 1, then its hash.
        assert_eq!(&bytes[..8], &[b'T', 1, 3, 1, 0xa0, 2, 1, 1]);
        // ...its count (varint 65), slot 7, the second hash, count 1.
        assert_eq!(&bytes[39..42], &[65, 7, 2]);
        assert_eq!(bytes.len(), 8 + 31 + 2 + 32 + 1);
        assert_eq!(Node::decode(&bytes).unwrap(), inner);
        // A prefix with bits set past its depth is not canonical.
        let bad = Node::Inner {
            depth: 3,
            prefix: vec![0xa1],
            children: vec![],
        }
        .encode();
        assert!(Node::decode(&bad).is_err());
    }

    #[test]
    fn tree_decode_rejects_unsorted_and_oversized() {
        let bad = Node::Leaf(vec![entry(2, 0), entry(1, 0)]).encode();
        assert!(Node::decode(&bad).is_err());
        assert!(Node::decode(&vec![b'T'; MAX_NODE_BYTES + 1]).is_err());
        assert!(Node::decode(b"").is_err());
    }

    #[test]
    fn tree_commit_rewrites_few_nodes() {
        let (t, mem) = trees();
        let all: Vec<Change> = (0..20_000u32)
            .map(|k| Change::Put(entry(k * 7, k)))
            .collect();
        let root = put_all(&t, &mem, None, &all);
        assert_eq!(root.unwrap().count, 20_000);
        let mut out = Vec::new();
        let one = [Change::Put(entry(7 * 500, 999_999))];
        t.apply(root, &one, &mut out).unwrap();
        // One leaf plus the path above it.
        assert!(out.len() <= 8, "one change rewrote {} nodes", out.len());
    }

    /// An object store that counts reads, to see how many nodes a walk touches.
    struct Counting(MemEngine, std::sync::atomic::AtomicUsize);

    impl ObjectStore for Counting {
        fn get_object(&self, id: &ObjectId) -> Result<Option<Vec<u8>>> {
            self.1.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.0.get_object(id)
        }
        fn has_object(&self, id: &ObjectId) -> Result<bool> {
            self.0.has_object(id)
        }
        fn put_objects(&self, objects: &[(ObjectId, Vec<u8>)]) -> Result<()> {
            self.0.put_objects(objects)
        }
        fn for_each_object_id(&self, visit: &mut dyn FnMut(&ObjectId) -> bool) -> Result<()> {
            self.0.for_each_object_id(visit)
        }
    }

    #[test]
    fn tree_region_touches_only_its_subtrees() {
        use crate::geometry::{block_from_key, block_key};
        let store = Arc::new(Counting(MemEngine::new(), 0.into()));
        let builder = Trees::new(store.clone(), 16);
        let mut all = Vec::new();
        for z in 0..32 {
            for y in 0..32 {
                for x in 0..32 {
                    all.push(Entry {
                        key: block_key([x, y, z]).to_vec(),
                        name: vec![],
                        object: ObjectId([0; 32]),
                    });
                }
            }
        }
        all.sort_by(|a, b| a.key.cmp(&b.key));
        let mut out = Vec::new();
        let root = builder.build(&all, &mut out);
        store.put_objects(&out).unwrap();
        let total_nodes = out.len();
        // Dense blocks fill leaves: 4x4x4 = 64 per leaf, 8 children per inner node.
        assert_eq!(
            total_nodes,
            512 + 64 + 8 + 1,
            "32^3 dense blocks made {total_nodes} nodes"
        );
        for (lo, hi) in [([8, 8, 8], [11, 11, 11]), ([3, 17, 9], [7, 21, 13])] {
            let trees = Trees::new(store.clone(), 1024); // empty cache: every node visited is read
            store.1.store(0, std::sync::atomic::Ordering::Relaxed);
            let mut found = Vec::new();
            let scope = Scope::Blocks(vec![(lo, hi)]);
            trees
                .visit(root, &scope, &mut |e| {
                    found.push(block_from_key(&e.key).unwrap());
                    true
                })
                .unwrap();
            let region: usize = (0..3).map(|a| (hi[a] - lo[a] + 1) as usize).product();
            let read = store.1.load(std::sync::atomic::Ordering::Relaxed);
            assert_eq!(found.len(), region);
            // Leaves hold up to 64 blocks: the region needs about region/64 leaves plus a few edges and
            // the path from the root, never a scan of the tree's {total_nodes} nodes.
            assert!(
                read <= 8 + region / 4,
                "region of {region} blocks read {read} of {total_nodes} nodes"
            );
        }
    }

    #[test]
    fn tree_diff_within_a_scope_is_the_full_diff_inside_it() {
        use crate::geometry::{block_from_key, block_key, box_contains};
        let (t, mem) = trees();
        let block = |b: Point, v: u32| Entry {
            key: block_key(b).to_vec(),
            name: vec![],
            object: ObjectId::of(&v.to_le_bytes()),
        };
        let mut all: Vec<Change> = Vec::new();
        for z in 0..16 {
            for y in 0..16 {
                for x in 0..16 {
                    all.push(Change::Put(block([x, y, z], 0)));
                }
            }
        }
        all.sort_by(|a, b| a.key().cmp(b.key()));
        let a = put_all(&t, &mem, None, &all);
        // Every 37th block changes, a few are deleted, a few are added outside the cube.
        let mut changes: Vec<Change> = (0..4096)
            .step_by(37)
            .map(|i| [i % 16, (i / 16) % 16, i / 256])
            .map(|b| match b[0] % 5 {
                0 => Change::Delete(block_key(b).to_vec()),
                _ => Change::Put(block(b, 1)),
            })
            .chain([Change::Put(block([20, 3, 3], 1))])
            .collect();
        changes.sort_by(|a, b| a.key().cmp(b.key()));
        let b = put_all(&t, &mem, a, &changes);
        let full = t.diff(a, b, &Scope::All).unwrap();
        assert_eq!(full.len(), changes.len());
        let bx = ([2, 3, 4], [9, 15, 11]);
        let inside: Vec<_> = full
            .iter()
            .filter(|d| box_contains(bx, block_from_key(&d.key).unwrap()))
            .cloned()
            .collect();
        assert!(!inside.is_empty() && inside.len() < full.len());
        assert_eq!(t.diff(a, b, &Scope::Blocks(vec![bx])).unwrap(), inside);
        assert!(t.diff(a, b, &Scope::Blocks(vec![])).unwrap().is_empty());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// The root depends only on the final contents, not on how the writes were batched.
        #[test]
        fn tree_is_history_independent(
            first in proptest::collection::btree_map(0u32..3000, proptest::option::weighted(0.8, 0u32..5), 0..400),
            second in proptest::collection::btree_map(0u32..3000, proptest::option::weighted(0.7, 0u32..5), 0..400),
        ) {
            let (t, mem) = trees();
            let r1 = put_all(&t, &mem, None, &to_changes(&first));
            let r2 = put_all(&t, &mem, r1, &to_changes(&second));
            let mut model: BTreeMap<u32, u32> = BTreeMap::new();
            for m in [&first, &second] {
                for (&k, v) in m {
                    match v { Some(v) => { model.insert(k, *v); } None => { model.remove(&k); } }
                }
            }
            let direct: BTreeMap<u32, Option<u32>> = model.iter().map(|(&k, &v)| (k, Some(v))).collect();
            let fresh = put_all(&t, &mem, None, &to_changes(&direct));
            prop_assert_eq!(r2.map(|r| r.id), fresh.map(|r| r.id));
            prop_assert_eq!(r2.map_or(0, |r| r.count), model.len() as u64);
            for (&k, &v) in &model {
                prop_assert_eq!(t.get(r2, &k.to_be_bytes()).unwrap(), Some(entry(k, v)));
            }
            // Diff against the first version names exactly the changed keys.
            let diff = t.diff(r1, r2, &Scope::All).unwrap();
            let mut before: BTreeMap<u32, u32> = BTreeMap::new();
            for (&k, v) in &first { if let Some(v) = v { before.insert(k, *v); } }
            let expected: Vec<u32> = before.keys().chain(model.keys()).copied()
                .collect::<std::collections::BTreeSet<_>>().into_iter()
                .filter(|k| before.get(k) != model.get(k)).collect();
            let got: Vec<u32> = diff.iter().map(|d| u32::from_be_bytes(d.key.clone().try_into().unwrap())).collect();
            prop_assert_eq!(got, expected);
        }
    }
}
