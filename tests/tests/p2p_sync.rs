//! Peer-to-peer sync between real `dvid` processes over libp2p on loopback: full, incremental and
//! region pulls, refusals, publish, resume after `kill -9`, follow across a restart, upload cap,
//! and a peer that joins a running pull.

use dvid_tests::{Node, Value, json, test_volume};
use std::time::Instant;

/// An origin node with a repo holding `size`^3 voxels of grayscale (16^3 blocks) and some keys,
/// committed. Returns the node, its temp dir and the root UUID.
fn origin(size: usize, extra: &[&str]) -> (Node, tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let a = Node::start_p2p(dir.path(), extra);
    let root = a.new_repo("shared");
    a.new_instance(&root, "uint8blk", "gray", json!({"BlockSize": "16,16,16"}));
    a.new_instance(&root, "keyvalue", "kv", json!({}));
    a.post_bytes(&raw(&root, size, [0, 0, 0]), test_volume([size; 3], 1));
    for i in 0..20 {
        a.post_bytes(
            &format!("/api/node/{root}/kv/key/k{i}"),
            vec![i as u8; 1000],
        );
    }
    a.commit(&root);
    (a, dir, root)
}

fn raw(uuid: &str, size: usize, off: [i32; 3]) -> String {
    format!(
        "/api/node/{uuid}/gray/raw/0_1_2/{size}_{size}_{size}/{}_{}_{}",
        off[0], off[1], off[2]
    )
}

/// A second node that dials `to`.
fn follower(to: &Node, extra: &[&str]) -> (Node, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let addr = to.p2p_addr();
    let mut args = vec!["--peer", addr.as_str()];
    args.extend_from_slice(extra);
    (Node::start(dir.path(), &args), dir)
}

fn share(a: &Node, root: &str, b: &Node) {
    a.post_json(
        &format!("/api/repo/{root}/share"),
        json!({"peers": [b.peer_id()]}),
    );
}

#[test]
fn p2p_full_then_incremental_pull() {
    let (a, _da, root) = origin(64, &[]);
    let (b, _db) = follower(&a, &[]);
    share(&a, &root, &b);
    assert_eq!(
        a.get_json(&format!("/api/repo/{root}/sharing"))["shared_with"],
        json!([b.peer_id()])
    );
    b.wait_offered(&root);
    let st = b.pull(json!({"uuid": root}));
    assert_eq!(st["state"], "done", "{st}");
    assert!(b.get_bytes(&raw(&root, 64, [0, 0, 0])) == a.get_bytes(&raw(&root, 64, [0, 0, 0])));
    assert_eq!(
        b.get_json(&format!("/api/node/{root}/kv/keys")),
        a.get_json(&format!("/api/node/{root}/kv/keys"))
    );
    let info = &b.get_json("/api/repos/info")[&root];
    assert_eq!(info["DAG"]["Nodes"][&root]["Locked"], true);
    let full_bytes = st["bytes_fetched"].as_u64().unwrap();

    // A child changing 1 of 64 blocks and one key: only those objects and their tree paths move.
    let child = a.new_version(&root);
    a.post_bytes(
        &format!("/api/node/{child}/gray/raw/0_1_2/16_16_16/16_16_16"),
        vec![3; 4096],
    );
    a.post_bytes(&format!("/api/node/{child}/kv/key/k5"), b"new".to_vec());
    a.commit(&child);
    b.wait_offered(&child);
    let st = b.pull(json!({"uuid": child}));
    assert_eq!(st["state"], "done", "{st}");
    let objects = st["objects_fetched"].as_u64().unwrap();
    let bytes = st["bytes_fetched"].as_u64().unwrap();
    assert!(
        objects <= 8,
        "incremental pull fetched {objects} objects: {st}"
    );
    assert!(
        bytes < full_bytes / 10,
        "incremental pull moved {bytes} of {full_bytes} bytes"
    );
    assert!(b.get_bytes(&raw(&child, 64, [0, 0, 0])) == a.get_bytes(&raw(&child, 64, [0, 0, 0])));
    assert_eq!(b.get_bytes(&format!("/api/node/{child}/kv/key/k5")), b"new");
}

#[test]
fn p2p_unshared_peer_is_refused_and_gets_nothing() {
    let (a, _da, root) = origin(32, &[]);
    let (c, _dc) = follower(&a, &[]);
    let a_id = a.peer_id();
    c.wait_until("a connection", 10, |n| {
        (n.get_json("/api/p2p/info")["connected_peers"] == json!([a_id])).then_some(())
    });
    // Nothing is offered to it, and asking anyway is refused with a reason.
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert_eq!(c.get_json("/api/p2p/heads"), json!([]));
    let st = c.pull(json!({"uuid": root, "peers": [a_id]}));
    assert_eq!(st["state"], "failed");
    assert!(st["error"].as_str().unwrap().contains("not shared"), "{st}");
    assert_eq!(st["bytes_fetched"], 0);
    assert_eq!(c.get_json("/api/repos/info"), json!({}));
    // Mutable versions never leave, even in a repo shared with the peer.
    let child = a.new_version(&root);
    share(&a, &root, &c);
    let st = c.pull(json!({"uuid": child, "peers": [a_id]}));
    assert_eq!(st["state"], "failed", "{st}");
}

#[test]
fn p2p_publish_one_version_and_pull_a_region() {
    let (a, _da, root) = origin(64, &[]);
    let child = a.new_version(&root);
    a.post_json(
        &format!("/api/node/{child}/note"),
        json!({"note": "private note"}),
    );
    a.commit(&child);
    let paper = a.new_version(&child);
    a.post_bytes(
        &format!("/api/node/{paper}/kv/key/doi"),
        b"10.1000/xyz".to_vec(),
    );
    a.commit(&paper);
    a.post_json(&format!("/api/node/{paper}/publish"), json!({}));
    let (c, _dc) = follower(&a, &[]);
    // Only the published version is offered to a stranger.
    c.wait_offered(&paper);
    let heads = c.get_json("/api/p2p/heads");
    assert_eq!(heads.as_array().unwrap().len(), 1, "{heads}");
    // A region pull of the published version: 2x2x2 blocks of 4x4x4, and no key-value data.
    let region = json!({"uuid": paper, "instances": ["gray"], "region": {"offset": [16, 16, 16], "size": [32, 32, 32]}});
    let st = c.pull(region);
    assert_eq!(st["state"], "done", "{st}");
    let inside = format!("/api/node/{paper}/gray/raw/0_1_2/32_32_32/16_16_16");
    assert!(c.get_bytes(&inside) == a.get_bytes(&inside));
    let r = c.get(&raw(&paper, 64, [0, 0, 0]));
    assert_eq!(r.status(), 400);
    assert!(r.text().unwrap().contains("outside the region"));
    assert_eq!(
        c.get(&format!("/api/node/{paper}/kv/key/doi")).status(),
        404
    );
    // The info says what is held: the part pulled of the paper's version, the ancestors'
    // metadata (without their notes).
    let info: Value = c.get_json(&format!("/api/repo/{paper}/info"));
    assert_eq!(
        info["DAG"]["Nodes"][&paper]["Replica"],
        json!({"Holds": "part", "Parts": [{"Instances": ["gray"], "Region": {"offset": [16, 16, 16], "size": [32, 32, 32]}}]})
    );
    assert_eq!(
        info["DAG"]["Nodes"][&child]["Replica"],
        json!({"Holds": "metadata"})
    );
    assert_eq!(info["DAG"]["Nodes"][&child]["Note"], "");
    let r = c.get(&raw(&child, 16, [0, 0, 0]));
    assert_eq!(r.status(), 404);
    assert!(r.text().unwrap().contains("only as an ancestor"));
    // The unpublished parent cannot be pulled.
    let st = c.pull(json!({"uuid": child, "peers": [a.peer_id()]}));
    assert_eq!(st["state"], "failed");
    // The whole published version can be.
    let st = c.pull(json!({"uuid": paper}));
    assert_eq!(st["state"], "done", "{st}");
    assert_eq!(
        c.get_bytes(&format!("/api/node/{paper}/kv/key/doi")),
        b"10.1000/xyz"
    );
    let info: Value = c.get_json(&format!("/api/repo/{paper}/info"));
    assert_eq!(
        info["DAG"]["Nodes"][&paper]["Replica"],
        json!({"Holds": "all"})
    );
}

#[test]
fn p2p_pull_resumes_after_kill_9() {
    // A capped uplink makes the pull slow enough to kill in the middle.
    let (a, _da, root) = origin(128, &["--max-upload-rate", "400000"]);
    let (b, db) = follower(&a, &[]);
    share(&a, &root, &b);
    b.wait_offered(&root);
    let job = b.post_json("/api/p2p/pull", json!({"uuid": root}))["job"]
        .as_str()
        .unwrap()
        .to_string();
    let before = b.wait_until("some bytes fetched", 60, |n| {
        let st = n.get_json(&format!("/api/p2p/jobs/{job}"));
        let got = st["bytes_fetched"].as_u64().unwrap_or(0);
        (got > 300_000).then_some(got)
    });
    b.kill9();
    let addr = a.p2p_addr();
    let b = Node::start(db.path(), &["--peer", &addr]);
    let st = b.wait_job(&job);
    assert_eq!(st["state"], "done", "{st}");
    // The resumed run found what the killed one had stored, and fetched only the rest.
    let (fetched, total) = (
        st["objects_fetched"].as_u64().unwrap(),
        st["objects_total"].as_u64().unwrap(),
    );
    assert!(
        fetched < total,
        "the resumed pull fetched all {total} objects again (had {before} bytes): {st}"
    );
    assert!(b.get_bytes(&raw(&root, 128, [0, 0, 0])) == a.get_bytes(&raw(&root, 128, [0, 0, 0])));
}

#[test]
fn p2p_a_peer_offering_the_version_mid_pull_serves_too() {
    // C holds the version (pulled from A at full speed); A then restarts with a slow uplink.
    let (a, da, root) = origin(128, &[]);
    let (c, _dc) = follower(&a, &["--listen", "/ip4/127.0.0.1/tcp/0"]);
    share(&a, &root, &c);
    c.wait_offered(&root);
    assert_eq!(c.pull(json!({"uuid": root}))["state"], "done");
    assert!(a.stop());
    let a = Node::start_p2p(da.path(), &["--max-upload-rate", "200000"]);
    // B starts pulling from A alone, then meets C, which offers the version too.
    let (b, _db) = follower(&a, &[]);
    share(&a, &root, &b);
    share(&c, &root, &b);
    b.wait_offered(&root);
    let job = b.post_json("/api/p2p/pull", json!({"uuid": root}))["job"]
        .as_str()
        .unwrap()
        .to_string();
    b.post_json("/api/p2p/dial", json!({"addr": c.p2p_addr()}));
    let st = b.wait_job(&job);
    assert_eq!(st["state"], "done", "{st}");
    assert!(b.get_bytes(&raw(&root, 128, [0, 0, 0])) == a.get_bytes(&raw(&root, 128, [0, 0, 0])));
    let served = c.get_json("/api/p2p/peers");
    let to_b = served
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["peer"] == b.peer_id())
        .unwrap_or_else(|| panic!("C never served B: {served}"));
    // Heads answers are a few hundred bytes: this much is objects.
    assert!(to_b["bytes_sent"].as_u64().unwrap() > 100_000, "{to_b}");
    println!(
        "C sent B {} of {} bytes",
        to_b["bytes_sent"], st["bytes_fetched"]
    );
}

#[test]
fn p2p_follow_catches_up_after_restart() {
    let (a, _da, root) = origin(32, &[]);
    let (b, db) = follower(&a, &[]);
    share(&a, &root, &b);
    b.post_json("/api/p2p/follow", json!({"repo": root}));
    b.wait_until("the followed version", 60, |n| {
        n.get(&format!("/api/node/{root}/commit"))
            .status()
            .is_success()
            .then_some(())
    });
    assert!(b.stop());
    // While the follower is away, the origin commits a new version.
    let child = a.new_version(&root);
    a.post_bytes(
        &format!("/api/node/{child}/kv/key/late"),
        b"while you were away".to_vec(),
    );
    a.commit(&child);
    let addr = a.p2p_addr();
    let b = Node::start(db.path(), &["--peer", &addr]);
    b.wait_until("the version committed while away", 60, |n| {
        let r = n.get(&format!("/api/node/{child}/kv/key/late"));
        r.status().is_success().then_some(())
    });
    assert_eq!(
        b.get_bytes(&format!("/api/node/{child}/kv/key/late")),
        b"while you were away"
    );
}

#[test]
fn p2p_upload_rate_cap_is_honoured() {
    let rate = 250_000u64;
    let (a, _da, root) = origin(128, &["--max-upload-rate", &rate.to_string()]);
    let (b, _db) = follower(&a, &[]);
    share(&a, &root, &b);
    b.wait_offered(&root);
    let t = Instant::now();
    let st = b.pull(json!({"uuid": root}));
    let secs = t.elapsed().as_secs_f64();
    assert_eq!(st["state"], "done", "{st}");
    let bytes = st["bytes_fetched"].as_u64().unwrap() as f64;
    // The bucket starts with one second of tokens; beyond that the cap sets the pace.
    let floor = bytes / rate as f64 - 1.0;
    assert!(floor > 1.0, "too few bytes ({bytes}) to see the cap");
    assert!(
        secs >= floor * 0.95,
        "{bytes} bytes in {secs:.2}s: faster than the {rate} B/s cap allows ({floor:.2}s)"
    );
    println!("{bytes} bytes at a {rate} B/s cap took {secs:.2}s (floor {floor:.2}s)");
}

#[test]
fn p2p_kademlia_finds_a_publisher_through_a_peer() {
    let (a, _da, root) = origin(32, &[]);
    a.post_json(&format!("/api/node/{root}/publish"), json!({}));
    // B knows A; C knows only B. C finds A, the provider of the published version, through Kademlia.
    let db = tempfile::tempdir().unwrap();
    let a_addr = a.p2p_addr();
    let b = Node::start_p2p(db.path(), &["--peer", &a_addr]);
    let a_id = a.peer_id();
    b.wait_until("B connected to A", 10, |n| {
        (n.get_json("/api/p2p/info")["connected_peers"] == json!([a_id])).then_some(())
    });
    let (c, _dc) = follower(&b, &[]);
    let st = c.pull(json!({"uuid": root}));
    assert_eq!(st["state"], "done", "{st}");
    let connected = c.get_json("/api/p2p/info")["connected_peers"].clone();
    assert!(
        connected.as_array().unwrap().contains(&json!(a_id)),
        "C never connected to A: {connected}"
    );
    assert!(c.get_bytes(&raw(&root, 32, [0, 0, 0])) == a.get_bytes(&raw(&root, 32, [0, 0, 0])));
}
