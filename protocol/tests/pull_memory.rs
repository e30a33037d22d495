//! The pull engine and the serving side, driven without a network: stores in memory, requests
//! answered by direct calls. Full, incremental, region and resumed pulls; refusals; a lying peer.

use dvid_protocol::pull::{Output, Progress, Pull, PullConfig};
use dvid_protocol::seal::{self, KeySealer};
use dvid_protocol::serve::answer;
use dvid_protocol::wire::{ObjectReply, Request, Response, Want, WantPath, heads_digest};
use dvid_store::catalog::Uuid;
use dvid_store::{
    Codec, InstanceSpec, ObjectId, Replica, Restriction, Store, StoreError, Subvolume,
    VersionManifest,
};
use libp2p_identity::Keypair;
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

fn gray() -> InstanceSpec {
    InstanceSpec::voxels("uint8blk", Codec::Lz4, 8).unwrap()
}

fn kv() -> InstanceSpec {
    InstanceSpec::plain("keyvalue").unwrap()
}

fn volume(size: usize, seed: u8) -> Vec<u8> {
    // Distinct blocks (no deduplication between them), never zero.
    (0..size * size * size)
        .map(|i| ((i as u32).wrapping_mul(2_654_435_761) >> 24) as u8 ^ seed | 1)
        .collect()
}

/// An origin with a 64^3 grayscale volume (512 blocks) and 100 keys, committed and shared with "recv".
fn origin() -> (Store, String) {
    let s = Store::open_memory().unwrap();
    s.set_sealer(Arc::new(KeySealer::new(Keypair::generate_ed25519())));
    let root = s.create_repo("origin", "pull tests").unwrap().to_hex();
    s.create_instance(&root, "gray", gray()).unwrap();
    s.create_instance(&root, "kv", kv()).unwrap();
    s.write_subvolume(
        &s.handle(&root, "gray").unwrap(),
        Subvolume::new([0, 0, 0], [64, 64, 64]).unwrap(),
        &volume(64, 0),
    )
    .unwrap();
    for i in 0..100 {
        s.kv_put(
            &s.handle(&root, "kv").unwrap(),
            &format!("key{i}"),
            vec![i as u8; 100],
        )
        .unwrap();
    }
    s.commit(&root, Some("v1"), &[]).unwrap();
    s.share_repo(&root, &["recv".into()]).unwrap();
    (s, root)
}

struct Peer<'a> {
    name: &'a str,
    store: &'a Store,
    /// Flip a byte in every object it sends.
    lies: bool,
}

#[derive(Debug)]
struct Outcome {
    progress: Progress,
    banned: Vec<String>,
}

/// Pulls `version` into `recv` from `peers`, stopping after `stop_after` stored batches if given.
fn pull(
    recv: &Store,
    peers: &[Peer],
    version: &str,
    restriction: Option<Restriction>,
    stop_after: Option<usize>,
) -> Result<Outcome, String> {
    let version = Uuid(u128::from_str_radix(version, 16).unwrap());
    let manifest = match answer(peers[0].store, "recv", Request::Manifest { version }) {
        Response::Manifest(bytes) => {
            let m = VersionManifest::decode(&bytes).map_err(|e| e.to_string())?;
            seal::verify_manifest(&m).map_err(|e| e.to_string())?;
            m
        }
        Response::Refused(r) => return Err(format!("refused: {r}")),
        other => return Err(format!("unexpected {other:?}")),
    };
    let mut engine: Pull<String> = Pull::new(
        &manifest,
        restriction.as_ref(),
        PullConfig {
            batch: 16,
            ..PullConfig::default()
        },
    );
    for p in peers {
        engine.add_peer(p.name.to_string());
    }
    let mut banned = Vec::new();
    let mut stored_batches = 0;
    for now in 0..100_000u64 {
        let mut outputs = engine
            .poll(recv.objects(), now)
            .map_err(|e| e.to_string())?;
        while let Some(o) = outputs.pop() {
            match o {
                Output::Send {
                    peer,
                    request,
                    message,
                } => {
                    let p = peers.iter().find(|p| p.name == peer).unwrap();
                    match answer(p.store, "recv", message) {
                        Response::Objects(mut replies) => {
                            if p.lies {
                                for r in &mut replies {
                                    if let ObjectReply::Found(b) = r {
                                        b[0] ^= 0xff;
                                    }
                                }
                            }
                            outputs.extend(engine.on_reply(request, replies));
                        }
                        Response::Refused(r) => outputs.extend(engine.on_refused(request, &r)),
                        other => panic!("unexpected {other:?}"),
                    }
                }
                Output::Store(objects) => {
                    recv.objects()
                        .put_objects(&objects)
                        .map_err(|e| e.to_string())?;
                    stored_batches += 1;
                    if stop_after.is_some_and(|n| stored_batches >= n) {
                        return Ok(Outcome {
                            progress: engine.progress().clone(),
                            banned,
                        });
                    }
                }
                Output::Ban { peer, .. } => banned.push(peer),
                Output::Done => {
                    recv.import_version(&manifest, restriction.clone())
                        .map_err(|e| e.to_string())?;
                    return Ok(Outcome {
                        progress: engine.progress().clone(),
                        banned,
                    });
                }
                Output::Failed(r) => return Err(r),
            }
        }
    }
    Err("pull did not finish".into())
}

/// Objects reachable from a version's trees (tree nodes and payloads), with their sizes.
fn reachable(s: &Store, version: &str) -> BTreeMap<ObjectId, usize> {
    let v = s.resolve(version).unwrap();
    let mut ids = Vec::new();
    for root in v.roots.values() {
        s.trees().reachable(Some(*root), &mut ids).unwrap();
    }
    ids.into_iter()
        .map(|id| (id, s.objects().get_object(&id).unwrap().unwrap().len()))
        .collect()
}

#[test]
fn pull_full_version_reads_identical() {
    let (o, root) = origin();
    let recv = Store::open_memory().unwrap();
    let out = pull(
        &recv,
        &[Peer {
            name: "origin",
            store: &o,
            lies: false,
        }],
        &root,
        None,
        None,
    )
    .unwrap();
    let all = reachable(&o, &root);
    assert_eq!(out.progress.objects_fetched as usize, all.len());
    assert_eq!(
        out.progress.bytes_fetched as usize,
        all.values().sum::<usize>()
    );
    let sub = Subvolume::new([-3, 5, 7], [70, 50, 40]).unwrap();
    assert!(
        recv.read_subvolume(&recv.handle(&root, "gray").unwrap(), sub)
            .unwrap()
            == o.read_subvolume(&o.handle(&root, "gray").unwrap(), sub)
                .unwrap()
    );
    assert_eq!(
        recv.kv_keys(&recv.handle(&root, "kv").unwrap(), None, None)
            .unwrap(),
        o.kv_keys(&o.handle(&root, "kv").unwrap(), None, None)
            .unwrap()
    );
    assert_eq!(
        recv.kv_get(&recv.handle(&root, "kv").unwrap(), "key7")
            .unwrap(),
        Some(vec![7; 100])
    );
    let (a, b) = (recv.resolve(&root).unwrap(), o.resolve(&root).unwrap());
    assert_eq!(a.commit_hash, b.commit_hash);
    assert_eq!((a.locked, a.replica), (true, Replica::Full));
    assert_eq!(recv.repo_root(&root).unwrap(), o.repo_root(&root).unwrap());
    // The pulled version builds on as any other.
    let child = recv.new_version(&root, "local work").unwrap().to_hex();
    recv.kv_put(
        &recv.handle(&child, "kv").unwrap(),
        "mine",
        b"local".to_vec(),
    )
    .unwrap();
}

#[test]
fn pull_incremental_fetches_only_changed_objects() {
    let (o, root) = origin();
    let recv = Store::open_memory().unwrap();
    pull(
        &recv,
        &[Peer {
            name: "origin",
            store: &o,
            lies: false,
        }],
        &root,
        None,
        None,
    )
    .unwrap();
    // A child that changes 5 of 512 blocks (1%) and one key.
    let child = o.new_version(&root, "").unwrap().to_hex();
    for i in 0..5 {
        o.write_subvolume(
            &o.handle(&child, "gray").unwrap(),
            Subvolume::new([i * 8, 16, 40], [8, 8, 8]).unwrap(),
            &vec![200 + i as u8; 512],
        )
        .unwrap();
    }
    o.kv_put(
        &o.handle(&child, "kv").unwrap(),
        "key3",
        b"changed".to_vec(),
    )
    .unwrap();
    o.commit(&child, None, &[]).unwrap();
    let out = pull(
        &recv,
        &[Peer {
            name: "origin",
            store: &o,
            lies: false,
        }],
        &child,
        None,
        None,
    )
    .unwrap();
    let before: HashSet<ObjectId> = reachable(&o, &root).into_keys().collect();
    let new: BTreeMap<ObjectId, usize> = reachable(&o, &child)
        .into_iter()
        .filter(|(id, _)| !before.contains(id))
        .collect();
    assert_eq!(
        out.progress.objects_fetched as usize,
        new.len(),
        "fetched exactly the objects the parent lacks"
    );
    assert_eq!(
        out.progress.bytes_fetched as usize,
        new.values().sum::<usize>()
    );
    // 6 changed payloads plus the tree paths above them: far fewer than the version's objects.
    assert!(new.len() < 30, "{} new objects for 6 changes", new.len());
    let sub = Subvolume::new([0, 0, 0], [64, 64, 64]).unwrap();
    assert!(
        recv.read_subvolume(&recv.handle(&child, "gray").unwrap(), sub)
            .unwrap()
            == o.read_subvolume(&o.handle(&child, "gray").unwrap(), sub)
                .unwrap()
    );
    assert_eq!(
        recv.kv_get(&recv.handle(&child, "kv").unwrap(), "key3")
            .unwrap(),
        Some(b"changed".to_vec())
    );
}

#[test]
fn pull_region_makes_a_partial_replica() {
    let (o, root) = origin();
    let recv = Store::open_memory().unwrap();
    let region = Restriction {
        instances: Some(vec!["gray".into()]),
        region: Some(([8, 8, 8], [23, 23, 23])),
    };
    let out = pull(
        &recv,
        &[Peer {
            name: "origin",
            store: &o,
            lies: false,
        }],
        &root,
        Some(region.clone()),
        None,
    )
    .unwrap();
    // 2x2x2 blocks of payload plus a few tree nodes, out of 512 blocks and 100 values.
    assert!(out.progress.objects_fetched < 20, "{:?}", out.progress);
    let inside = Subvolume::new([8, 8, 8], [16, 16, 16]).unwrap();
    assert!(
        recv.read_subvolume(&recv.handle(&root, "gray").unwrap(), inside)
            .unwrap()
            == o.read_subvolume(&o.handle(&root, "gray").unwrap(), inside)
                .unwrap()
    );
    let outside = Subvolume::new([0, 0, 0], [64, 64, 64]).unwrap();
    assert!(
        matches!(recv.read_subvolume(&recv.handle(&root, "gray").unwrap(), outside), Err(StoreError::BadRequest(m)) if m.contains("outside the region"))
    );
    assert!(
        matches!(recv.kv_get(&recv.handle(&root, "kv").unwrap(), "key1"), Err(StoreError::NotFound(m)) if m.contains("not pulled"))
    );
    assert_eq!(
        recv.resolve(&root).unwrap().replica,
        Replica::Partial(vec![region.clone()])
    );
    // A second region adds to the first: both read back, and what lies between them still not.
    let second = Restriction {
        instances: Some(vec!["gray".into()]),
        region: Some(([40, 40, 40], [55, 55, 55])),
    };
    let origin_peer = Peer {
        name: "origin",
        store: &o,
        lies: false,
    };
    pull(&recv, &[origin_peer], &root, Some(second.clone()), None).unwrap();
    assert_eq!(
        recv.resolve(&root).unwrap().replica,
        Replica::Partial(vec![region.clone(), second])
    );
    for at in [[8, 8, 8], [40, 40, 40]] {
        let held = Subvolume::new(at, [16, 16, 16]).unwrap();
        assert!(
            recv.read_subvolume(&recv.handle(&root, "gray").unwrap(), held)
                .unwrap()
                == o.read_subvolume(&o.handle(&root, "gray").unwrap(), held)
                    .unwrap()
        );
    }
    let between = Subvolume::new([24, 24, 24], [16, 16, 16]).unwrap();
    assert!(
        matches!(recv.read_subvolume(&recv.handle(&root, "gray").unwrap(), between), Err(StoreError::BadRequest(m)) if m.contains("outside the region"))
    );
    let report = recv.fsck().unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    // A later full pull upgrades the replica.
    pull(
        &recv,
        &[Peer {
            name: "origin",
            store: &o,
            lies: false,
        }],
        &root,
        None,
        None,
    )
    .unwrap();
    assert!(
        recv.read_subvolume(&recv.handle(&root, "gray").unwrap(), outside)
            .unwrap()
            == o.read_subvolume(&o.handle(&root, "gray").unwrap(), outside)
                .unwrap()
    );
}

#[test]
fn pull_resumes_without_refetching() {
    let (o, root) = origin();
    let recv = Store::open_memory().unwrap();
    let peers = [Peer {
        name: "origin",
        store: &o,
        lies: false,
    }];
    let first = pull(&recv, &peers, &root, None, Some(10)).unwrap();
    assert!(
        recv.resolve(&root).is_err(),
        "an incomplete version stays invisible"
    );
    let second = pull(&recv, &peers, &root, None, None).unwrap();
    let total = reachable(&o, &root).len() as u64;
    assert_eq!(
        first.progress.objects_fetched + second.progress.objects_fetched,
        total
    );
    assert!(second.progress.objects_local >= first.progress.objects_fetched);
}

#[test]
fn pull_bans_a_lying_peer_and_finishes_from_others() {
    let (o, root) = origin();
    // A mirror holding the same version, which corrupts what it sends.
    let mirror = Store::open_memory().unwrap();
    pull(
        &mirror,
        &[Peer {
            name: "origin",
            store: &o,
            lies: false,
        }],
        &root,
        None,
        None,
    )
    .unwrap();
    mirror.share_repo(&root, &["recv".into()]).unwrap();
    let recv = Store::open_memory().unwrap();
    let peers = [
        Peer {
            name: "mirror",
            store: &mirror,
            lies: true,
        },
        Peer {
            name: "origin",
            store: &o,
            lies: false,
        },
    ];
    let out = pull(&recv, &peers, &root, None, None).unwrap();
    assert_eq!(out.banned, vec!["mirror".to_string()]);
    let sub = Subvolume::new([0, 0, 0], [64, 64, 64]).unwrap();
    assert!(
        recv.read_subvolume(&recv.handle(&root, "gray").unwrap(), sub)
            .unwrap()
            == o.read_subvolume(&o.handle(&root, "gray").unwrap(), sub)
                .unwrap()
    );
    // With only liars, the pull fails instead of storing bad bytes.
    let lonely = Store::open_memory().unwrap();
    let err = pull(
        &lonely,
        &[Peer {
            name: "mirror",
            store: &mirror,
            lies: true,
        }],
        &root,
        None,
        None,
    )
    .unwrap_err();
    assert!(err.contains("no peer left"), "{err}");
}

#[test]
fn serve_refuses_what_is_not_shared() {
    let (o, root) = origin();
    let v = Uuid(u128::from_str_radix(&root, 16).unwrap());
    // Another peer id gets nothing: no heads, no manifest, no objects even with a valid path.
    assert_eq!(answer(&o, "other", Request::Heads), Response::Heads(vec![]));
    assert!(
        matches!(answer(&o, "other", Request::Manifest { version: v }), Response::Refused(m) if m.contains("not shared"))
    );
    let data = match answer(&o, "recv", Request::Manifest { version: v }) {
        Response::Manifest(b) => VersionManifest::decode(&b).unwrap().instances[0].data_uuid,
        other => panic!("{other:?}"),
    };
    let root_id = o.resolve(&root).unwrap().roots.values().next().unwrap().id;
    let want = Want {
        id: root_id,
        path: WantPath::Root { data },
    };
    assert!(matches!(
        answer(
            &o,
            "other",
            Request::Objects {
                version: v,
                wants: vec![want.clone()]
            }
        ),
        Response::Refused(_)
    ));
    assert!(
        matches!(answer(&o, "recv", Request::Objects { version: v, wants: vec![want] }), Response::Objects(r) if matches!(r[0], ObjectReply::Found(_)))
    );
    // A shared peer asking for an object under a false path gets nothing: hashes alone open nothing.
    let wrong = Want {
        id: ObjectId([9; 32]),
        path: WantPath::Root { data },
    };
    assert!(
        matches!(answer(&o, "recv", Request::Objects { version: v, wants: vec![wrong] }), Response::Objects(r) if r == vec![ObjectReply::Missing])
    );
    // Mutable versions never leave, even in a shared repo; published versions reach anyone.
    let child = o.new_version(&root, "").unwrap();
    assert!(matches!(
        answer(&o, "recv", Request::Manifest { version: child }),
        Response::Refused(_)
    ));
    o.commit(&child.to_hex(), None, &[]).unwrap();
    o.publish(&child.to_hex()).unwrap();
    assert!(matches!(
        answer(&o, "anyone", Request::Manifest { version: child }),
        Response::Manifest(_)
    ));
    match answer(&o, "anyone", Request::Heads) {
        Response::Heads(h) => {
            assert_eq!(h.iter().map(|h| h.version).collect::<Vec<_>>(), vec![child])
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn heads_travel_again_only_when_they_change() {
    let (o, root) = origin();
    let Response::Heads(heads) = answer(&o, "recv", Request::Heads) else {
        panic!("no heads")
    };
    let digest = heads_digest(&heads);
    let ask = |digest| answer(&o, "recv", Request::HeadsIfChanged { digest });
    assert_eq!(ask(digest), Response::HeadsUnchanged);
    // Another peer's digest, or a stale one, gets the list.
    assert_eq!(ask(ObjectId([0; 32])), Response::Heads(heads));
    let child = o.new_version(&root, "").unwrap().to_hex();
    o.commit(&child, None, &[]).unwrap();
    match ask(digest) {
        Response::Heads(h) => assert_eq!(h.len(), 2),
        other => panic!("{other:?}"),
    }
    // A peer the repo is not shared with learns nothing either way.
    assert_eq!(
        answer(
            &o,
            "other",
            Request::HeadsIfChanged {
                digest: heads_digest(&[])
            }
        ),
        Response::HeadsUnchanged
    );
}

#[test]
fn import_refuses_a_forged_manifest() {
    let (o, root) = origin();
    let mut m = o.version_manifest(&root).unwrap();
    m.versions[0].branch = "forged".into();
    assert!(
        VersionManifest::decode(&m.encode())
            .unwrap_err()
            .to_string()
            .contains("commit hash")
    );
    let recv = Store::open_memory().unwrap();
    assert!(recv.import_version(&m, None).is_err());
}

#[test]
fn seal_heads_and_manifests_name_the_locker() {
    let key = Keypair::generate_ed25519();
    let (o, root) = origin();
    o.set_sealer(Arc::new(KeySealer::new(key.clone())));
    let child = o.new_version(&root, "").unwrap().to_hex();
    o.kv_put(
        &o.handle(&child, "kv").unwrap(),
        "key1",
        b"changed".to_vec(),
    )
    .unwrap();
    o.commit(&child, None, &[]).unwrap();

    let Response::Heads(heads) = answer(&o, "recv", Request::Heads) else {
        panic!("no heads")
    };
    assert_eq!(heads.len(), 2);
    let h = heads.iter().find(|h| h.version.to_hex() == child).unwrap();
    assert_eq!(seal::verify_head(h), Ok(key.public().to_peer_id()));
    let mut altered = h.clone();
    altered.commit_hash = heads
        .iter()
        .find(|x| x.version != h.version)
        .unwrap()
        .commit_hash;
    assert!(seal::verify_head(&altered).is_err());

    let m = o.version_manifest(&child).unwrap();
    assert_eq!(seal::verify_manifest(&m), Ok(key.public().to_peer_id()));
    // A seal moved from the parent onto the child does not verify.
    let mut swapped = m.clone();
    swapped.versions[1].seal = swapped.versions[0].seal.clone();
    assert!(seal::verify_manifest(&swapped).is_err());
    let mut stripped = m;
    stripped.versions[0].seal = None;
    assert!(seal::verify_manifest(&stripped).is_err());
}
