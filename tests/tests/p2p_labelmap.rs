//! Proofreading a labelmap across real nodes over libp2p: a lab proofreads and commits, a partner
//! pulls only the changed mapping and index entries and reads the same bodies; both edit at once
//! and never take the same new body id or mutation id (the partner was granted its own range when
//! it pulled); their versions merge back on the lab's node.

use dvid_tests::{Node, Value, json};

/// 128³ voxels in 32³ blocks, one supervoxel per block: 1 + bx + 4·by + 16·bz. Each block's
/// voxels carry some noise of a second supervoxel (65 + the block's own id) so blocks are not
/// trivially small on the wire.
fn segmentation() -> Vec<u8> {
    let mut v = Vec::with_capacity(128 * 128 * 128 * 8);
    for z in 0..128u64 {
        for y in 0..128u64 {
            for x in 0..128u64 {
                let sv = 1 + x / 32 + 4 * (y / 32) + 16 * (z / 32);
                let noisy = (x * 7 + y * 13 + z * 31) % 5 == 0;
                v.extend_from_slice(&(if noisy { sv + 64 } else { sv }).to_le_bytes());
            }
        }
    }
    v
}

fn share(from: &Node, root: &str, to: &Node) {
    from.post_json(
        &format!("/api/repo/{root}/share"),
        json!({"peers": [to.peer_id()]}),
    );
}

fn labels(n: &Node, path: &str, body: Value) -> Value {
    let r = n.get_body(path, body.to_string());
    assert_eq!(r.status(), 200, "{path}");
    r.json().unwrap()
}

fn pull(n: &Node, uuid: &str) -> Value {
    let st = n.pull(json!({"uuid": uuid}));
    assert_eq!(st["state"], "done", "{st}");
    st
}

#[test]
fn p2p_labelmap_proofreading_moves_only_the_change_and_ids_never_collide() {
    let (da, db, dc) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let lab = Node::start_p2p(da.path(), &[]);
    let root = lab.new_repo("segmentation");
    lab.new_instance(&root, "labelmap", "seg", json!({"BlockSize": "32,32,32"}));
    lab.post_bytes(
        &format!("/api/node/{root}/seg/raw/0_1_2/128_128_128/0_0_0"),
        segmentation(),
    );
    lab.commit(&root);

    let lab_addr = lab.p2p_addr();
    let partner = Node::start_p2p(db.path(), &["--peer", &lab_addr]);
    share(&lab, &root, &partner);
    partner.wait_offered(&root);
    let full = pull(&partner, &root)["bytes_fetched"].as_u64().unwrap();

    // The lab proofreads: merges and a cleave, then commits.
    let v1 = lab.new_version(&root);
    let at = |v: &str, p: &str| format!("/api/node/{v}/seg/{p}");
    lab.post_json(&at(&v1, "merge"), json!([1, 2, 3]));
    let cleaved = lab.post_json(&at(&v1, "cleave/1"), json!([3]));
    let cleaved_away = cleaved["CleavedLabel"].as_u64().unwrap();
    for (body, noise) in [(4, 68), (5, 69), (6, 70)] {
        lab.post_json(&at(&v1, "merge"), json!([body, noise]));
    }
    // A body across the middle: supervoxel 17 in block (0, 0, 1), 3 in block (2, 0, 0).
    lab.post_json(&at(&v1, "merge"), json!([17, cleaved_away]));
    lab.commit(&v1);
    // The diff names the bodies whose index changed, and no block (merges and cleaves move none).
    let d = lab.get_json(&at(&root, &format!("diff/{v1}")));
    let mut bodies: Vec<u64> = serde_json::from_value(d["bodies"].clone()).unwrap();
    bodies.sort();
    let mut want = vec![1, 2, 3, 4, 5, 6, 17, 68, 69, 70];
    want.sort();
    assert_eq!((bodies, &d["blocks"]), (want, &json!([])), "{d}");

    // The partner pulls only the changed mapping, index and mutation entries, not the blocks.
    share(&lab, &root, &partner);
    partner.wait_offered(&v1);
    let st = pull(&partner, &v1);
    let (objects, bytes) = (
        st["objects_fetched"].as_u64().unwrap(),
        st["bytes_fetched"].as_u64().unwrap(),
    );
    // 13 changed entries (3 mapping values, 5 indices, 5 mutation records) and the tree nodes
    // above them; the 64 blocks stay where they are.
    eprintln!("pull of the edit: {objects} objects, {bytes} bytes; of the whole: {full} bytes");
    assert!(objects < 32, "the edit's pull fetched {objects} objects");
    assert!(
        bytes * 20 < full,
        "the edit's pull moved {bytes} bytes of the {full} of the whole"
    );
    // ...and reads the same bodies, voxels and indices.
    for p in [
        "mappings",
        "supervoxels/1",
        "sparsevol/1",
        "index/1",
        "index/17",
    ] {
        assert!(
            partner.get_bytes(&at(&v1, p)) == lab.get_bytes(&at(&v1, p)),
            "{p} differs"
        );
    }
    let raw = at(&v1, "raw/0_1_2/128_128_32/0_0_0");
    assert!(partner.get_bytes(&raw) == lab.get_bytes(&raw));
    let bodies = json!([1, 2, 3, 65, 66, cleaved["CleavedLabel"]]);
    assert_eq!(
        labels(&partner, &at(&v1, "mapping"), bodies.clone()),
        labels(&lab, &at(&v1, "mapping"), bodies)
    );

    // Both edit at once, on their own children of v1: new ids never collide.
    let on_lab = lab.new_version(&v1);
    let on_partner = partner.new_version(&v1);
    let a = lab.post_json(&at(&on_lab, "cleave/4"), json!([68]));
    let b = partner.post_json(&at(&on_partner, "cleave/5"), json!([69]));
    assert_ne!(a["CleavedLabel"], b["CleavedLabel"], "{a} {b}");
    assert_ne!(a["MutationID"], b["MutationID"], "{a} {b}");
    let ra = lab.post_json(&at(&on_lab, "nextlabel/100"), json!({}));
    let rb = partner.post_json(&at(&on_partner, "nextlabel/100"), json!({}));
    let range = |r: &Value| r["start"].as_u64().unwrap()..=r["end"].as_u64().unwrap();
    let (ra, rb) = (range(&ra), range(&rb));
    assert!(
        ra.end() < rb.start() || rb.end() < ra.start(),
        "{ra:?} overlaps {rb:?}"
    );
    // The partner's ids stay JavaScript-safe numbers (below 2^53).
    assert!(*rb.end() < 1 << 53, "{rb:?}");

    // A third node that pulls a region from the partner is granted part of the partner's range,
    // and is told which bodies it holds only in part.
    let partner_addr = partner.p2p_addr();
    let third = Node::start_p2p(dc.path(), &["--peer", &partner_addr]);
    share(&partner, &root, &third);
    third.wait_offered(&v1);
    let region = json!({"uuid": v1, "region": {"offset": [0, 0, 0], "size": [64, 64, 64]}});
    assert_eq!(third.pull(region)["state"], "done");
    assert_eq!(third.get_json(&at(&v1, "partial-bodies")), json!([17]));
    assert_eq!(partner.get_json(&at(&v1, "partial-bodies")), json!([]));
    let r = third.get(&at(&v1, "sparsevol/17"));
    assert_eq!(r.status(), 400, "voxels outside the region are not held");
    assert!(r.text().unwrap().contains("outside the region"));
    assert_eq!(
        labels(&third, &at(&v1, "sizes"), json!([17])),
        labels(&lab, &at(&v1, "sizes"), json!([17])),
        "indices are whole"
    );
    let on_third = third.new_version(&v1);
    let c = third.post_json(&at(&on_third, "cleave/6"), json!([70]));
    let ids = [&a, &b, &c].map(|r| r["CleavedLabel"].as_u64().unwrap());
    assert!(ids[2] != ids[0] && ids[2] != ids[1], "{ids:?}");
    assert!(!ra.contains(&ids[2]) && !rb.contains(&ids[2]), "{ids:?}");

    // set-nextlabel stays inside the node's own ranges.
    let r = partner.post(
        &at(&on_partner, &format!("set-nextlabel/{}", ra.start())),
        "",
    );
    assert_eq!(r.status(), 409);
    assert!(r.text().unwrap().contains("not among the labels this node"));

    // The partner's work merges with the lab's: different bodies, no conflict.
    partner.commit(&on_partner);
    lab.commit(&on_lab);
    share(&partner, &root, &lab);
    lab.wait_offered(&on_partner);
    pull(&lab, &on_partner);
    let (ok, merged, err) = lab.cli(&["merge", &on_lab, &on_partner, "--note", "both labs"]);
    assert!(ok, "merge: {merged}{err}");
    let merged = merged.trim();
    let got = labels(&lab, &at(merged, "mapping"), json!([68, 69]));
    assert_eq!(got, json!([a["CleavedLabel"], b["CleavedLabel"]]));
    // Each cleave took its supervoxel's voxels off its body, and nothing else.
    let sizes = |v: &str, l: Value| labels(&lab, &at(v, "sizes"), l);
    let (before, after) = (sizes(&v1, json!([4, 5])), sizes(merged, json!([4, 5])));
    let cut = sizes(merged, json!([a["CleavedLabel"], b["CleavedLabel"]]));
    for i in 0..2 {
        let sum = after[i].as_u64().unwrap() + cut[i].as_u64().unwrap();
        assert_eq!(json!(sum), before[i], "{before} {after} {cut}");
    }
    // A new label on the lab after the merge is still its own, above nothing it took before.
    let n = lab.get_json(&at(merged, "nextlabel"))["nextlabel"]
        .as_u64()
        .unwrap();
    assert!(n > *ra.end() && !rb.contains(&n) && n != ids[1], "{n}");
}
