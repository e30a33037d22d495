use super::*;
use crate::types::InstanceSpec;
use crate::{Codec, Uuid};

/// A 16³ volume in 8³ blocks: supervoxel 1 + (x ≥ 8) + 2·(y ≥ 8) + 4·(z ≥ 8), one per block.
fn octants() -> Vec<u8> {
    let mut v = Vec::new();
    for z in 0..16u64 {
        for y in 0..16u64 {
            for x in 0..16u64 {
                let sv = 1 + (x / 8) + 2 * (y / 8) + 4 * (z / 8);
                v.extend_from_slice(&sv.to_le_bytes());
            }
        }
    }
    v
}

fn setup() -> (Store, Uuid, DataHandle) {
    let store = Store::open_memory().unwrap();
    let root = store.create_repo("seg", "").unwrap();
    let spec = InstanceSpec::voxels("labelmap", Codec::Lz4, 8).unwrap();
    store
        .create_instance(&root.to_string(), "seg", spec)
        .unwrap();
    let h = store.handle(&root.to_string(), "seg").unwrap();
    let sub = Subvolume::new([0, 0, 0], [16, 16, 16]).unwrap();
    store.write_subvolume(&h, sub, &octants()).unwrap();
    (store, root, h)
}

fn who() -> Editor {
    Editor {
        user: "tester".into(),
        app: "unit".into(),
    }
}

#[test]
fn labelmap_writes_index_every_supervoxel() {
    let (store, _, h) = setup();
    for sv in 1..=8 {
        let idx = store.label_index(&h, sv).unwrap().expect("indexed");
        assert_eq!(idx.voxels(None), 512, "supervoxel {sv}");
        assert_eq!(idx.supervoxels(), vec![sv]);
    }
    assert_eq!(store.label_index(&h, 9).unwrap(), None);
    assert_eq!(store.max_label(&h).unwrap(), 8);
    // Overwriting part of a block moves counts between supervoxels.
    let sub = Subvolume::new([0, 0, 0], [2, 1, 1]).unwrap();
    store
        .write_subvolume(&h, sub, &[9u64, 9].map(u64::to_le_bytes).concat())
        .unwrap();
    assert_eq!(store.sizes(&h, &[1, 9], false).unwrap(), vec![510, 2]);
}

#[test]
fn labelmap_merge_and_cleave_change_mapping_and_indices_only() {
    let (store, _, h) = setup();
    let m = store.merge_bodies(&h, 1, &[2, 3], &who()).unwrap();
    assert_eq!(m, 1);
    assert_eq!(
        store.mapping(&h, &[1, 2, 3, 4, 99], false).unwrap(),
        vec![1, 1, 1, 4, 0]
    );
    assert_eq!(store.sizes(&h, &[1, 2], false).unwrap(), vec![1536, 0]);
    assert_eq!(store.sizes(&h, &[2], true).unwrap(), vec![512]);
    let idx = store.label_index(&h, 1).unwrap().unwrap();
    assert_eq!(idx.supervoxels(), vec![1, 2, 3]);
    assert_eq!((idx.last_mutid, idx.last_mod_user.as_str()), (1, "tester"));
    // Reads map supervoxels to bodies unless asked for supervoxels.
    let sub = Subvolume::new([8, 0, 0], [1, 1, 1]).unwrap();
    assert_eq!(store.read_bodies(&h, sub, false).unwrap(), vec![1]);
    assert_eq!(store.read_bodies(&h, sub, true).unwrap(), vec![2]);
    assert_eq!(store.mappings(&h).unwrap(), vec![(2, 1), (3, 1)]);

    let c = store.cleave_body(&h, 1, &[3], &who()).unwrap();
    assert_eq!(
        c,
        Cleaved {
            label: 9,
            mutation: 2
        }
    );
    assert_eq!(store.mapping(&h, &[3], false).unwrap(), vec![9]);
    assert_eq!(store.sizes(&h, &[1, 9], false).unwrap(), vec![1024, 512]);
    assert_eq!(store.next_label(&h).unwrap(), 10);
    let actions: Vec<String> = store
        .mutations(&h)
        .unwrap()
        .iter()
        .map(|m| m["Action"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(actions, ["merge-complete", "cleave-complete"]);
}

#[test]
fn labelmap_refuses_bad_edits_and_changes_nothing() {
    let (store, _, h) = setup();
    let bad = [
        (store.merge_bodies(&h, 1, &[1], &who()).err(), "into itself"),
        (store.merge_bodies(&h, 1, &[], &who()).err(), "at least one"),
        (
            store.merge_bodies(&h, 1, &[42], &who()).err(),
            "body 42 has no voxels",
        ),
        (store.merge_bodies(&h, 1, &[2, 2], &who()).err(), "twice"),
        (store.merge_bodies(&h, 0, &[2], &who()).err(), "background"),
    ];
    for (err, want) in bad {
        let msg = err.expect("refused").to_string();
        assert!(msg.contains(want), "{msg:?} lacks {want:?}");
    }
    let cleaves = [
        (
            store.cleave_body(&h, 1, &[2], &who()).err(),
            "not in body 1",
        ),
        (
            store.cleave_body(&h, 1, &[1], &who()).err(),
            "leave it empty",
        ),
        (store.cleave_body(&h, 77, &[1], &who()).err(), "no voxels"),
        (store.cleave_body(&h, 1, &[], &who()).err(), "JSON list"),
    ];
    for (err, want) in cleaves {
        let msg = err.expect("refused").to_string();
        assert!(msg.contains(want), "{msg:?} lacks {want:?}");
    }
    assert!(store.mappings(&h).unwrap().is_empty());
    assert!(store.mutations(&h).unwrap().is_empty());
    assert_eq!(store.sizes(&h, &[1, 2], false).unwrap(), vec![512, 512]);
}

#[test]
fn labelmap_sparsevol_runs_cover_the_body() {
    let (store, _, h) = setup();
    store.merge_bodies(&h, 1, &[2], &who()).unwrap();
    let runs = store.sparsevol(&h, 1, false, None).unwrap().unwrap();
    // Supervoxels 1 and 2 fill x 0..16 of y 0..8, z 0..8: one joined run per row.
    assert_eq!(runs.len(), 64);
    assert!(runs.iter().all(|r| r[0] == 0 && r[3] == 16));
    let one = store.sparsevol(&h, 2, true, None).unwrap().unwrap();
    assert!(one.iter().all(|r| r[0] == 8 && r[3] == 8));
    let clipped = store
        .sparsevol(&h, 1, false, Some(([4, 0, 0], [11, 1, 0])))
        .unwrap()
        .unwrap();
    assert_eq!(clipped, vec![[4, 0, 0, 8], [4, 1, 0, 8]]);
    assert_eq!(
        store
            .sparsevol(&h, 5, true, Some(([0, 0, 0], [3, 3, 3])))
            .unwrap(),
        Some(vec![])
    );
    assert_eq!(store.sparsevol(&h, 42, false, None).unwrap(), None);
}

#[test]
fn labelmap_branches_merge_disjoint_edits_and_refuse_the_same_body() {
    let (store, root, _) = setup();
    let r = root.to_string();
    store.commit(&r, None, &[]).unwrap();
    let a = store.branch(&r, "a", "").unwrap().to_string();
    let b = store.branch(&r, "b", "").unwrap().to_string();
    let ha = store.handle(&a, "seg").unwrap();
    let hb = store.handle(&b, "seg").unwrap();
    store.merge_bodies(&ha, 1, &[2], &who()).unwrap();
    store.merge_bodies(&hb, 3, &[4], &who()).unwrap();
    // New bodies on two branches of one node never share an id.
    let (ca, cb) = (
        store.cleave_body(&ha, 1, &[2], &who()).unwrap(),
        store.cleave_body(&hb, 3, &[4], &who()).unwrap(),
    );
    assert_ne!(ca.label, cb.label);
    store.commit(&a, None, &[]).unwrap();
    store.commit(&b, None, &[]).unwrap();
    let m = store
        .merge(&[a.clone(), b.clone()], "join")
        .unwrap()
        .to_string();
    let hm = store.handle(&m, "seg").unwrap();
    assert_eq!(
        store.mapping(&hm, &[2, 4], false).unwrap(),
        vec![ca.label, cb.label]
    );
    // Both sides editing body 5 conflict, naming it.
    store.commit(&m, None, &[]).unwrap();
    let a2 = store.branch(&m, "a2", "").unwrap().to_string();
    let b2 = store.branch(&m, "b2", "").unwrap().to_string();
    store
        .merge_bodies(&store.handle(&a2, "seg").unwrap(), 5, &[6], &who())
        .unwrap();
    store
        .merge_bodies(&store.handle(&b2, "seg").unwrap(), 5, &[7], &who())
        .unwrap();
    store.commit(&a2, None, &[]).unwrap();
    store.commit(&b2, None, &[]).unwrap();
    let err = store.merge(&[a2, b2], "clash").unwrap_err().to_string();
    assert!(err.contains("body 5's label index"), "{err}");
}

#[test]
fn labelmap_locked_versions_refuse_edits() {
    let (store, root, h) = setup();
    store.commit(&root.to_string(), None, &[]).unwrap();
    let err = store
        .merge_bodies(&h, 1, &[2], &who())
        .unwrap_err()
        .to_string();
    assert!(err.contains("locked"), "{err}");
    assert_eq!(store.max_label(&h).unwrap(), 8);
}

#[test]
fn labelmap_block_edges_are_multiples_of_8() {
    let err = InstanceSpec::voxels("labelmap", Codec::Lz4, 12)
        .unwrap_err()
        .to_string();
    assert!(err.contains("multiples of 8"), "{err}");
}

#[test]
fn labelmap_edits_need_an_allotment_and_take_ids_from_a_grant() {
    let (store, root, h) = setup();
    // A node that holds the instance without ids of its own (pulled, no grant yet).
    let inst = h.instance.clone();
    let granted = store.grant_labels(root, inst.data_uuid, "peer").unwrap();
    store
        .meta
        .write(vec![crate::engine::BatchOp::Delete(
            crate::engine::Space::Meta,
            crate::keys::allotment(inst.id),
        )])
        .unwrap();
    for e in [
        store.merge_bodies(&h, 1, &[2], &who()).unwrap_err(),
        store.allocate_labels(&h, 1).map(|_| ()).unwrap_err(),
    ] {
        assert!(
            matches!(&e, StoreError::Conflict(m) if m.contains("no range of new labels")),
            "{e}"
        );
    }
    assert_eq!(
        store.mappings(&h).unwrap(),
        vec![],
        "the refused merge changed nothing"
    );
    // With the grant, new labels and mutation ids come from it, and from nowhere else.
    assert!(
        store
            .accept_label_grant(root, inst.data_uuid, granted)
            .unwrap()
    );
    assert!(
        !store
            .accept_label_grant(root, inst.data_uuid, granted)
            .unwrap()
    );
    let m = store.merge_bodies(&h, 1, &[2], &who()).unwrap();
    assert_eq!(m, granted.mutations.0);
    let c = store.cleave_body(&h, 1, &[2], &who()).unwrap();
    assert_eq!(c.label, granted.labels.0);
    let (lo, hi) = store.allocate_labels(&h, 10).unwrap();
    assert_eq!((lo, hi), (granted.labels.0 + 1, granted.labels.0 + 10));
    assert!(
        store.set_next_label(&h, 5).is_err(),
        "5 is not in the grant"
    );
    store.set_next_label(&h, granted.labels.0 + 100).unwrap();
    assert_eq!(store.next_label(&h).unwrap(), granted.labels.0 + 100);
    let bad = crate::types::labelmap::Grant {
        labels: (0, 5),
        mutations: (1, 2),
    };
    assert!(store.accept_label_grant(root, inst.data_uuid, bad).is_err());
}

#[test]
fn labelmap_split_supervoxel_rewrites_its_blocks_and_keeps_its_body() {
    let (store, _, h) = setup();
    store.merge_bodies(&h, 1, &[2], &who()).unwrap();
    let before = store.read_bodies(&h, whole(), false).unwrap();
    // The first 4 voxels of each row of z = 0 in supervoxel 2's block (x 8..15).
    let runs: Vec<[i32; 4]> = (0..8).map(|y| [8, y, 0, 4]).collect();
    let s = store
        .split_supervoxel(&h, 2, &runs, SplitIds::default(), &who())
        .unwrap();
    assert_eq!(
        store.sizes(&h, &[s.split, s.remain], true).unwrap(),
        vec![32, 480]
    );
    assert_eq!(
        store.mapping(&h, &[2, s.split, s.remain], false).unwrap(),
        vec![0, 1, 1]
    );
    assert_eq!(
        store.sizes(&h, &[1], false).unwrap(),
        vec![1024],
        "the body keeps its voxels"
    );
    let svs = store
        .labels_at(&h, &[[8, 0, 0], [12, 0, 0], [8, 0, 1]])
        .unwrap();
    assert_eq!(svs, vec![s.split, s.remain, s.remain]);
    assert_eq!(store.read_bodies(&h, whole(), false).unwrap(), before);
    let m = store.mutations(&h).unwrap();
    assert_eq!(m.last().unwrap()["Action"], "split-supervoxel-complete");
    assert_eq!(m.last().unwrap()["MutationID"], s.mutation);

    // Refused, changing nothing: voxels not of the supervoxel, all of it, unknown ones, ids in use.
    let version = store.mappings(&h).unwrap();
    let bad = |sv: u64, runs: &[[i32; 4]], ids: SplitIds| {
        store
            .split_supervoxel(&h, sv, runs, ids, &who())
            .unwrap_err()
    };
    let other = format!("is supervoxel {}", s.split);
    assert!(
        bad(s.remain, &[[8, 0, 0, 2]], SplitIds::default())
            .to_string()
            .contains(&other)
    );
    assert!(
        bad(3, &[[8, 0, 0, 1]], SplitIds::default())
            .to_string()
            .contains("no voxels")
    );
    let all: Vec<[i32; 4]> = (8..16)
        .flat_map(|z| (8..16).map(move |y| [0, y, z, 8]))
        .collect();
    assert!(
        bad(7, &all, SplitIds::default())
            .to_string()
            .contains("nothing would remain")
    );
    assert!(matches!(
        bad(99, &runs, SplitIds::default()),
        StoreError::NotFound(_)
    ));
    assert!(
        bad(2, &runs, SplitIds::default())
            .to_string()
            .contains("split before")
    );
    let taken = SplitIds {
        split: Some(4),
        remain: None,
    };
    assert!(
        bad(3, &[[0, 8, 0, 1]], taken)
            .to_string()
            .contains("in use")
    );
    assert!(
        bad(3, &[[0, 8, 0, 0]], SplitIds::default())
            .to_string()
            .contains("length 0")
    );
    assert_eq!(store.mappings(&h).unwrap(), version);
    assert_eq!(store.sizes(&h, &[3], true).unwrap(), vec![512]);
}

fn whole() -> Subvolume {
    Subvolume::new([0, 0, 0], [16, 16, 16]).unwrap()
}

/// Runs of `label` in a 16³ volume of labels, by brute force: what sparsevol must give.
fn runs_of(vol: &[u64], label: u64) -> Vec<[i32; 4]> {
    let mut out: Vec<[i32; 4]> = Vec::new();
    for (i, &l) in vol.iter().enumerate() {
        let (x, y, z) = ((i % 16) as i32, ((i / 16) % 16) as i32, (i / 256) as i32);
        if l != label {
            continue;
        }
        match out.last_mut() {
            Some(r) if r[1] == y && r[2] == z && r[0] + r[3] == x => r[3] += 1,
            _ => out.push([x, y, z, 1]),
        }
    }
    out
}

#[test]
fn labelmap_sparsevol_matches_the_voxels_in_whole_and_mixed_blocks() {
    let (store, _, h) = setup();
    // Supervoxel 9 in a few scattered voxels of block (0,0,0): it becomes mixed, the rest whole.
    let sub = Subvolume::new([3, 2, 1], [3, 2, 1]).unwrap();
    store
        .write_subvolume(&h, sub, &[9u64; 6].map(u64::to_le_bytes).concat())
        .unwrap();
    store.merge_bodies(&h, 2, &[1, 9], &who()).unwrap();
    let vol = store.read_bodies(&h, whole(), false).unwrap();
    for body in [2, 3, 8] {
        let got = store.sparsevol(&h, body, false, None).unwrap().unwrap();
        assert_eq!(got, runs_of(&vol, body), "body {body}");
    }
    let svs = store.read_bodies(&h, whole(), true).unwrap();
    let got = store.sparsevol(&h, 9, true, None).unwrap().unwrap();
    assert_eq!(got, runs_of(&svs, 9));
}

#[test]
fn labelmap_split_refuses_runs_far_outside_quickly() {
    // Each is refused at the first block outside the supervoxel: walking the 2^28 blocks such a
    // run crosses would take minutes and gigabytes.
    let (store, _, h) = setup();
    for run in [
        [i32::MIN, 0, 0, i32::MAX],
        [i32::MAX - 3, 0, 0, 4],
        [0, i32::MAX, i32::MIN, 7],
    ] {
        let e = store
            .split_supervoxel(&h, 1, &[run], SplitIds::default(), &who())
            .unwrap_err();
        assert!(matches!(e, StoreError::BadRequest(_)), "{run:?}: {e}");
    }
}

#[test]
fn labelmap_refuses_blocks_its_index_cannot_name() {
    let (store, _, h) = setup();
    let far = 8 * (proto::MAX_BLOCK_COORD + 1);
    let sub = Subvolume::new([far, 0, 0], [1, 1, 1]).unwrap();
    let e = store
        .write_subvolume(&h, sub, &7u64.to_le_bytes())
        .unwrap_err();
    assert!(e.to_string().contains("label index can name"), "{e}");
    assert_eq!(
        store.label_index(&h, 7).unwrap().unwrap().voxels(None),
        512,
        "unchanged"
    );
}
