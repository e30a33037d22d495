//! Which new labels and mutation ids a node may hand out for one labelmap instance.
//!
//! Every node that edits a labelmap takes new body ids (cleave, split, `nextlabel`) and mutation
//! ids, offline as often as not, and its versions are merged with other nodes' later. So each
//! node allots ids only from ranges no other node holds: the node that creates the instance holds
//! them all, and a node that pulls the instance is granted part of the serving peer's free range
//! (which that peer gives up, durably, before answering). A grantee may grant from its own ranges
//! in turn, so the ranges form a tree of grants with the creator at the root, and two nodes never
//! hold the same id. See DESIGN.md, "Labels that cannot collide".

use serde::{Deserialize, Serialize};

/// Ids stay below 2^53: JSON numbers in JavaScript (Neuroglancer, Clio) are exact only up to it.
pub const ID_LIMIT: u64 = 1 << 53;
/// Most ids of one grant: 2^36 (69 billion) is far more bodies than any proofreading makes, and
/// leaves the creator 2^17 grants before grants start halving what remains.
pub const MAX_GRANT: u64 = 1 << 36;

/// Free ids as sorted, disjoint half-open ranges `[lo, hi)`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdRanges(Vec<(u64, u64)>);

impl IdRanges {
    /// Every id: what the creator of an instance holds.
    pub fn everything() -> Self {
        Self(vec![(1, ID_LIMIT)])
    }

    pub fn starting_at(lo: u64) -> Self {
        Self(vec![(lo.max(1), ID_LIMIT)])
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The ranges, lowest first.
    pub fn ranges(&self) -> &[(u64, u64)] {
        &self.0
    }

    /// Takes `count` consecutive ids from the lowest range with room, starting no lower than
    /// `floor(lo, hi)` in it (the caller's way to skip ids already in use). None if no range has
    /// room.
    pub fn take<E>(
        &mut self,
        count: u64,
        mut floor: impl FnMut(u64, u64) -> Result<u64, E>,
    ) -> Result<Option<u64>, E> {
        for i in 0..self.0.len() {
            let (lo, hi) = self.0[i];
            let start = floor(lo, hi)?.max(lo);
            if start.checked_add(count).is_some_and(|end| end <= hi) {
                self.0[i].0 = start + count;
                self.0.retain(|&(lo, hi)| lo < hi);
                return Ok(Some(start));
            }
        }
        Ok(None)
    }

    /// Gives up ids below `id` so that it is the next taken; false (and unchanged) if `id` is in
    /// no free range.
    pub fn skip_to(&mut self, id: u64) -> bool {
        let Some(i) = self.0.iter().position(|&(lo, hi)| lo <= id && id < hi) else {
            return false;
        };
        self.0.drain(..i);
        self.0[0].0 = id;
        true
    }

    /// Carves a grant off the top of the largest free range: half of it, at most [`MAX_GRANT`].
    /// None if no range has two ids to split.
    pub fn carve(&mut self) -> Option<(u64, u64)> {
        let (i, &(lo, hi)) = self
            .0
            .iter()
            .enumerate()
            .max_by_key(|(_, (lo, hi))| hi - lo)?;
        let size = ((hi - lo) / 2).min(MAX_GRANT);
        if size == 0 {
            return None;
        }
        self.0[i].1 = hi - size;
        Some((hi - size, hi))
    }
}

/// A grant of ids from one node to another, for one instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    pub labels: (u64, u64),
    pub mutations: (u64, u64),
}

/// What this node may hand out for one instance, and the grants it made from it (kept so a
/// peer that asks again gets the same grant, not another slice).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Allotment {
    pub labels: IdRanges,
    pub mutations: IdRanges,
    pub granted: Vec<(String, Grant)>,
}

impl Allotment {
    /// The creator's: every id.
    pub fn everything() -> Self {
        Self {
            labels: IdRanges::everything(),
            mutations: IdRanges::everything(),
            granted: vec![],
        }
    }

    /// What a grant gives the grantee.
    pub fn from_grant(g: Grant) -> Self {
        Self {
            labels: IdRanges(vec![g.labels]),
            mutations: IdRanges(vec![g.mutations]),
            granted: vec![],
        }
    }

    /// The grant for `peer`: the one made before, or a new one carved from both kinds of ids.
    pub fn grant_to(&mut self, peer: &str) -> Option<Grant> {
        if let Some((_, g)) = self.granted.iter().find(|(p, _)| p == peer) {
            return Some(*g);
        }
        let (mut labels, mut mutations) = (self.labels.clone(), self.mutations.clone());
        let g = Grant {
            labels: labels.carve()?,
            mutations: mutations.carve()?,
        };
        (self.labels, self.mutations) = (labels, mutations);
        self.granted.push((peer.to_string(), g));
        Some(g)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn free(r: &IdRanges) -> Vec<(u64, u64)> {
        r.ranges().to_vec()
    }

    #[test]
    fn grants_never_overlap_what_the_granter_keeps() {
        let mut root = Allotment::everything();
        let a = root.grant_to("a").unwrap();
        assert_eq!(a.labels, (ID_LIMIT - MAX_GRANT, ID_LIMIT));
        assert_eq!(
            root.grant_to("a"),
            Some(a),
            "asking again gives the same grant"
        );
        let b = root.grant_to("b").unwrap();
        assert_eq!(b.labels.1, a.labels.0);
        // A grantee grants half of what it holds.
        let mut laptop = Allotment::from_grant(a);
        let c = laptop.grant_to("c").unwrap();
        assert_eq!(c.labels.1 - c.labels.0, MAX_GRANT / 2);
        let ok: Result<_, ()> = laptop.labels.take(10, |lo, _| Ok(lo));
        assert_eq!(ok, Ok(Some(a.labels.0)));
        let all = [
            free(&root.labels),
            vec![b.labels, c.labels],
            free(&laptop.labels),
        ]
        .concat();
        for (i, x) in all.iter().enumerate() {
            for y in &all[i + 1..] {
                assert!(x.1 <= y.0 || y.1 <= x.0, "{x:?} overlaps {y:?}");
            }
        }
    }

    #[test]
    fn take_skips_used_ids_and_moves_to_the_next_range() {
        let mut r = IdRanges(vec![(1, 10), (100, 200)]);
        let used_below = |lo: u64, _| Ok::<_, ()>(lo.max(8));
        assert_eq!(r.take(2, used_below), Ok(Some(8)));
        assert_eq!(free(&r), vec![(100, 200)]);
        assert_eq!(r.take(101, |lo, _| Ok::<_, ()>(lo)), Ok(None));
        assert!(r.skip_to(150));
        assert_eq!(free(&r), vec![(150, 200)]);
        assert!(!r.skip_to(20));
        let mut tiny = IdRanges(vec![(5, 6)]);
        assert_eq!(tiny.carve(), None);
    }
}
