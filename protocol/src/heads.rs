//! The heads book: the verified heads each peer offers this node, and the decisions made from them
//! (what to ask a peer next, which versions are offered and by whom, which are claimed with two
//! commit hashes). Sans-IO: the node and the simulator feed it the answers they receive and read
//! the same decisions back, so the simulator tests the node's policy, not a copy of it.
//!
//! `P` names a peer; `L` is what the seal check tells of who locked a version (the node keeps the
//! locker's PeerId; the simulator keeps nothing).

use crate::wire::{Head, Request, heads_digest};
use dvid_store::catalog::Uuid;
use dvid_store::{ObjectId, Restriction};
use std::collections::{BTreeMap, BTreeSet};

/// The last heads each peer sent.
#[derive(Clone, Debug)]
pub struct HeadsBook<P, L> {
    peers: BTreeMap<P, PeerHeads<L>>,
}

#[derive(Clone, Debug)]
struct PeerHeads<L> {
    /// Those whose seal verified, with what the check said of the locker.
    verified: Vec<(Head, L)>,
    /// Of the whole list as sent: the next poll asks for the heads only if they changed. None if
    /// some seal failed, so a forger's list is checked (and counted against it) at every poll.
    digest: Option<ObjectId>,
}

/// A version offered by peers with one commit hash.
#[derive(Clone, Debug)]
pub struct Offered<P, L> {
    /// The head as the first peer offering it sent it, without what that peer holds.
    pub head: Head,
    /// Who locked it, as the seal check said.
    pub locked_by: L,
    /// Every peer offering it, in full or in part.
    pub peers: Vec<P>,
    /// The parts held by peers that hold only part of it (partial replicas, such as a laptop's).
    pub partial: BTreeMap<P, Vec<Restriction>>,
}

impl<P: Ord + Clone, L: Clone> Default for HeadsBook<P, L> {
    fn default() -> Self {
        Self {
            peers: BTreeMap::new(),
        }
    }
}

impl<P: Ord + Clone, L: Clone> HeadsBook<P, L> {
    /// What to ask `peer` for its heads: only if they changed, when its last list is known.
    pub fn request(&self, peer: &P) -> Request {
        match self.peers.get(peer).and_then(|h| h.digest) {
            Some(digest) => Request::HeadsIfChanged { digest },
            None => Request::Heads,
        }
    }

    /// Records the heads `peer` sent, keeping those `verify` accepts (it checks the seal and says
    /// who locked the version). Returns how many were dropped: each drop is an offence of the peer.
    pub fn record(
        &mut self,
        peer: P,
        heads: Vec<Head>,
        mut verify: impl FnMut(&Head) -> Option<L>,
    ) -> usize {
        let digest = heads_digest(&heads);
        let total = heads.len();
        let verified: Vec<(Head, L)> = heads
            .into_iter()
            .filter_map(|h| verify(&h).map(|l| (h, l)))
            .collect();
        let dropped = total - verified.len();
        let digest = (dropped == 0).then_some(digest);
        self.peers.insert(peer, PeerHeads { verified, digest });
        dropped
    }

    /// True if a list of `peer`'s is known (an "unchanged" answer then means that list).
    pub fn knows(&self, peer: &P) -> bool {
        self.peers.contains_key(peer)
    }

    /// Forgets what `peer` offered (its connection closed, or it was banned).
    pub fn forget(&mut self, peer: &P) {
        self.peers.remove(peer);
    }

    /// Forgets every peer's heads (the process restarted).
    pub fn clear(&mut self) {
        self.peers.clear();
    }

    /// The verified head `peer` sent for `version`, if any.
    pub fn head_of(&self, peer: &P, version: Uuid) -> Option<&Head> {
        self.peers
            .get(peer)?
            .verified
            .iter()
            .map(|(h, _)| h)
            .find(|h| h.version == version)
    }

    /// Every verified head, peer by peer, each peer's in the order it sent them.
    pub fn heads(&self) -> impl Iterator<Item = &Head> {
        self.peers
            .values()
            .flat_map(|p| p.verified.iter().map(|(h, _)| h))
    }

    /// Peers offering `version` with commit hash `hash`, in peer order: a pull starts with them,
    /// and a running pull takes those that join.
    pub fn offering(&self, version: Uuid, hash: ObjectId) -> Vec<P> {
        self.peers
            .iter()
            .filter(|(_, p)| {
                p.verified
                    .iter()
                    .any(|(h, _)| h.version == version && h.commit_hash == hash)
            })
            .map(|(peer, _)| peer.clone())
            .collect()
    }

    /// True if a peer claims `version` with a commit hash other than `hash`.
    pub fn claimed_otherwise(&self, version: Uuid, hash: ObjectId) -> bool {
        self.heads()
            .any(|h| h.version == version && h.commit_hash != hash)
    }

    /// Verified heads by version, then by commit hash.
    pub fn claims(&self) -> BTreeMap<Uuid, BTreeMap<ObjectId, Offered<P, L>>> {
        let mut by_version: BTreeMap<Uuid, BTreeMap<ObjectId, Offered<P, L>>> = BTreeMap::new();
        for (peer, heads) in &self.peers {
            for (h, locked_by) in &heads.verified {
                let offered = by_version
                    .entry(h.version)
                    .or_default()
                    .entry(h.commit_hash)
                    .or_insert_with(|| Offered {
                        head: Head {
                            holds: None,
                            ..h.clone()
                        },
                        locked_by: locked_by.clone(),
                        peers: vec![],
                        partial: BTreeMap::new(),
                    });
                offered.peers.push(peer.clone());
                if let Some(parts) = &h.holds {
                    offered.partial.insert(peer.clone(), parts.clone());
                }
            }
        }
        by_version
    }

    /// The follow rule, for the node and the simulator alike: the offered versions of repos in
    /// `follows` to start pulling now, each once, in the order peers offered them. Skipped: versions held in full,
    /// being pulled, failed `max_failures` times within the follow window, claimed with several
    /// commit hashes, or known here with another hash (conflicts are never pulled silently).
    pub fn to_follow(
        &self,
        follows: &BTreeSet<Uuid>,
        max_failures: usize,
        standing: impl Fn(Uuid) -> Standing,
    ) -> Vec<(Uuid, ObjectId)> {
        let mut out: Vec<(Uuid, ObjectId)> = Vec::new();
        // Offer order, never UUID order: UUIDs are random, and the simulator must replay a run.
        for h in self.heads() {
            let (version, hash) = (h.version, h.commit_hash);
            if !follows.contains(&h.repo)
                || out.iter().any(|(v, _)| *v == version)
                || self.claimed_otherwise(version, hash)
            {
                continue;
            }
            let st = standing(version);
            if !st.held
                && !st.pulling
                && st.recent_failures < max_failures
                && st.local_hash.is_none_or(|h| h == hash)
            {
                out.push((version, hash));
            }
        }
        out
    }

    /// Versions offered with one commit hash only: those claimed with several are conflicts, never
    /// pulled unless a peer is named.
    pub fn offered(&self) -> Vec<Offered<P, L>> {
        self.claims()
            .into_values()
            .filter(|claims| claims.len() == 1)
            .flat_map(BTreeMap::into_values)
            .collect()
    }
}

/// What a following node knows of one offered version, for [`HeadsBook::to_follow`].
pub struct Standing {
    /// It holds the version in full already.
    pub held: bool,
    /// A pull of it is waiting or running.
    pub pulling: bool,
    /// Its pulls' failures within the follow window ([`recent_failures`]).
    pub recent_failures: usize,
    /// The commit hash of its own record of the version (held in part, or as an ancestor), if any.
    pub local_hash: Option<ObjectId>,
}

/// Failures of one version's pulls that count against following it: those within `window` before
/// `now` (any unit, the same for all three). After [`FOLLOW_MAX_FAILURES`] of them following pauses
/// the version until they age out; a laptop whose network dropped during its pulls tries again later
/// instead of never.
pub fn recent_failures(times: impl IntoIterator<Item = u64>, now: u64, window: u64) -> usize {
    times
        .into_iter()
        .filter(|&t| now.saturating_sub(t) < window)
        .count()
}

/// Failed pulls of one version, within [`FOLLOW_FAILURE_WINDOW_MS`], after which following pauses it
/// (a manual pull still can).
pub const FOLLOW_MAX_FAILURES: usize = 3;
pub const FOLLOW_FAILURE_WINDOW_MS: u64 = 600_000;

/// Why a manifest a peer sent is not the version asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ManifestRefusal {
    /// Its target is another version.
    OtherVersion,
    /// Its commit hash differs from the head the same peer announced: a peer could announce an
    /// honest head and then serve a manifest of its own making under the same UUID.
    DiffersFromHead,
    /// A seal in its chain fails.
    BadSeal(String),
}

impl std::fmt::Display for ManifestRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::OtherVersion => f.write_str("sent the manifest of another version"),
            Self::DiffersFromHead => {
                f.write_str("sent a manifest whose commit hash differs from the head it announced")
            }
            Self::BadSeal(e) => write!(f, "sent a manifest with a bad seal: {e}"),
        }
    }
}

/// Whether to take a decoded manifest (its commit hashes already checked) as the version `version`
/// that a peer announced with commit hash `announced` (if it did). `check_seals` verifies the
/// chain's seals: the node checks them all; the simulator passes a memo of the same check.
pub fn accept_manifest(
    m: &dvid_store::VersionManifest,
    version: Uuid,
    announced: Option<ObjectId>,
    check_seals: impl FnOnce(&dvid_store::VersionManifest) -> Result<(), String>,
) -> Result<(), ManifestRefusal> {
    if announced.is_some_and(|h| h != m.target_def().commit_hash) {
        return Err(ManifestRefusal::DiffersFromHead);
    }
    if m.target != version {
        return Err(ManifestRefusal::OtherVersion);
    }
    check_seals(m).map_err(ManifestRefusal::BadSeal)
}

#[cfg(test)]
mod tests {
    use super::*;
    use dvid_store::Seal;

    fn head(version: u128, hash: u8) -> Head {
        Head {
            repo: Uuid(1),
            version: Uuid(version),
            parents: vec![],
            commit_hash: ObjectId([hash; 32]),
            seal: Seal {
                signer: vec![],
                signature: vec![],
            },
            holds: None,
        }
    }

    #[test]
    fn heads_book_offers_claims_and_conflicts() {
        let mut book: HeadsBook<u8, ()> = HeadsBook::default();
        assert_eq!(book.request(&1), Request::Heads);
        let mut partial = head(10, 1);
        partial.holds = Some(vec![Restriction {
            instances: None,
            region: Some(([0; 3], [63; 3])),
        }]);
        assert_eq!(
            book.record(1, vec![head(10, 1), head(20, 2)], |_| Some(())),
            0
        );
        assert_eq!(book.record(2, vec![partial, head(20, 3)], |_| Some(())), 0);
        // Peer 1's list is quoted back; version 20 is claimed twice and not offered.
        assert!(matches!(book.request(&1), Request::HeadsIfChanged { .. }));
        let offered = book.offered();
        assert_eq!(offered.len(), 1);
        assert_eq!(offered[0].peers, vec![1, 2]);
        assert_eq!(offered[0].partial.keys().collect::<Vec<_>>(), vec![&2]);
        assert!(book.claimed_otherwise(Uuid(20), ObjectId([2; 32])));
        assert_eq!(book.offering(Uuid(10), ObjectId([1; 32])), vec![1, 2]);
        // A list with a forged head is kept without it, and never quoted.
        assert_eq!(
            book.record(3, vec![head(30, 4), head(40, 5)], |h| (h.version
                != Uuid(40))
            .then_some(())),
            1
        );
        assert_eq!(book.request(&3), Request::Heads);
        assert!(book.head_of(&3, Uuid(40)).is_none());
        book.forget(&2);
        assert_eq!(book.offering(Uuid(10), ObjectId([1; 32])), vec![1]);
    }

    #[test]
    fn accept_manifest_refuses_a_forged_version() {
        // A version of 1 key, then a forgery of it: its parent's (empty) contents under its UUID,
        // with a recomputed commit hash, so the manifest still decodes and verifies on its own.
        let s = dvid_store::Store::open_memory().unwrap();
        let root = s.create_repo("r", "").unwrap().to_hex();
        s.create_instance(
            &root,
            "kv",
            dvid_store::InstanceSpec::plain("keyvalue").unwrap(),
        )
        .unwrap();
        s.commit(&root, None, &[]).unwrap();
        let child = s.new_version(&root, "").unwrap();
        s.kv_put(
            &s.handle(&child.to_hex(), "kv").unwrap(),
            "k",
            b"v".to_vec(),
        )
        .unwrap();
        s.commit(&child.to_hex(), None, &[]).unwrap();
        let honest = s.version_manifest(&child.to_hex()).unwrap();
        let announced = honest.target_def().commit_hash;
        let mut forged = honest.clone();
        let parent_hash = forged.versions[0].commit_hash;
        let mut t = forged.versions[1].clone();
        t.roots = forged.versions[0].roots.clone();
        t.commit_hash = forged.content_hash(&t, &[Some(parent_hash)]);
        forged.versions[1] = t;
        forged.verify().unwrap();
        let seals = |_: &dvid_store::VersionManifest| Ok(());
        assert_eq!(
            accept_manifest(&honest, child, Some(announced), seals),
            Ok(())
        );
        assert_eq!(
            accept_manifest(&forged, child, Some(announced), seals),
            Err(ManifestRefusal::DiffersFromHead)
        );
        // Without the announced head to compare with, the forgery would pass: the check is the
        // only thing that stops it.
        assert_eq!(accept_manifest(&forged, child, None, seals), Ok(()));
        assert_eq!(
            accept_manifest(&honest, Uuid(1), Some(announced), seals),
            Err(ManifestRefusal::OtherVersion)
        );
        let bad = |_: &dvid_store::VersionManifest| Err("no seal".to_string());
        assert!(matches!(
            accept_manifest(&honest, child, Some(announced), bad),
            Err(ManifestRefusal::BadSeal(_))
        ));
    }

    #[test]
    fn follow_counts_only_recent_failures() {
        let (now, window) = (1_000_000, FOLLOW_FAILURE_WINDOW_MS);
        let times = [now - 5, now - window + 1, now - window];
        assert_eq!(recent_failures(times, now, window), 2);
        assert_eq!(recent_failures(times, now + window, window), 0);
    }
}
