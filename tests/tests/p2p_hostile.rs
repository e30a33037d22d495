//! Real nodes against hostile peers (nodes started with the hidden `--misbehave` test mode): a
//! peer serving corrupt objects, forged and conflicting heads, a flood of requests, oversized
//! frames. Each time the hostile peer is cut off and honest peers are still served.

use dvid_tests::{Node, Value, json, test_volume};

/// An origin with one committed version of 128^3 voxels in 16^3 blocks (512 objects).
fn origin() -> (Node, tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let o = Node::start_p2p(dir.path(), &[]);
    let root = o.new_repo("hostile");
    o.new_instance(&root, "uint8blk", "gray", json!({"BlockSize": "16,16,16"}));
    o.post_bytes(&raw(&root), test_volume([128; 3], 5));
    o.commit(&root);
    (o, dir, root)
}

fn raw(uuid: &str) -> String {
    format!("/api/node/{uuid}/gray/raw/0_1_2/128_128_128/0_0_0")
}

fn share(node: &Node, root: &str, with: &[&Node]) {
    let peers: Vec<String> = with.iter().map(|n| n.peer_id()).collect();
    node.post_json(
        &format!("/api/repo/{root}/share"),
        json!({ "peers": peers }),
    );
}

/// A node dialling `peers`, with extra flags.
fn node(peers: &[&Node], extra: &[&str]) -> (Node, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let addrs: Vec<String> = peers.iter().map(|p| p.p2p_addr()).collect();
    let mut args: Vec<&str> = Vec::new();
    for a in &addrs {
        args.extend(["--peer", a.as_str()]);
    }
    args.extend_from_slice(extra);
    (Node::start_p2p(dir.path(), &args), dir)
}

/// A hostile node that first pulls `root` from `o` like any other.
fn hostile_holder(o: &Node, root: &str, mode: &str) -> (Node, tempfile::TempDir) {
    let (h, dir) = node(&[o], &["--misbehave", mode]);
    share(o, root, &[&h]);
    h.wait_offered(root);
    let st = h.pull(json!({"uuid": root}));
    assert_eq!(st["state"], "done", "{st}");
    (h, dir)
}

/// `node`'s record of `peer` in /api/p2p/peers, once `ready` accepts it.
fn conduct(node: &Node, peer: &str, what: &str, ready: impl Fn(&Value) -> bool) -> Value {
    node.wait_until(what, 60, |n| {
        let list = n.get_json("/api/p2p/peers");
        list.as_array()?
            .iter()
            .find(|p| p["peer"] == peer && ready(p))
            .cloned()
    })
}

#[test]
fn p2p_hostile_corrupt_objects_get_the_peer_banned() {
    let (o, _do, root) = origin();
    let (h, _dh) = hostile_holder(&o, &root, "corrupt-objects");
    let (r, _dr) = node(&[&o, &h], &[]);
    share(&o, &root, &[&h, &r]);
    share(&h, &root, &[&r]);
    r.wait_until("both peers to offer the version", 30, |n| {
        let heads = n.get_json("/api/p2p/heads");
        let h0 = heads
            .as_array()?
            .iter()
            .find(|x| x["uuid"] == root.as_str())?;
        (h0["peers"].as_array()?.len() == 2).then_some(())
    });

    let st = r.pull(json!({"uuid": root, "peers": [o.peer_id(), h.peer_id()]}));
    assert_eq!(st["state"], "done", "{st}");
    assert!(r.get_bytes(&raw(&root)) == o.get_bytes(&raw(&root)));

    let liar = conduct(&r, &h.peer_id(), "the liar to be banned", |p| {
        p["banned"].is_string()
    });
    assert!(
        liar["banned"].as_str().unwrap().contains("fail their hash"),
        "{liar}"
    );
    r.wait_until("the liar to be disconnected", 30, |n| {
        let info = n.get_json("/api/p2p/info");
        let connected = info["connected_peers"].as_array()?;
        (!connected.iter().any(|p| p == h.peer_id().as_str())).then_some(())
    });
    // The honest origin is still connected and serving.
    let info = r.get_json("/api/p2p/info");
    assert!(
        info["connected_peers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p == o.peer_id().as_str())
    );
}

#[test]
fn p2p_hostile_forged_and_conflicting_heads() {
    let (o, _do, root) = origin();
    let (forger, _df) = hostile_holder(&o, &root, "forge-heads");
    let (resealer, _ds) = hostile_holder(&o, &root, "reseal-heads");
    let (r, _dr) = node(&[&o, &forger, &resealer], &[]);
    share(&o, &root, &[&r]);
    share(&forger, &root, &[&r]);
    share(&resealer, &root, &[&r]);

    // Altered heads under the original seal are dropped, and the forger is banned in the end.
    let f = conduct(&r, &forger.peer_id(), "forged heads to be rejected", |p| {
        p["heads_rejected"].as_u64() >= Some(1)
    });
    println!("forger: {f}");
    conduct(&r, &forger.peer_id(), "the forger to be banned", |p| {
        p["banned"].is_string()
    });

    // A validly sealed but different commit hash for the same UUID is a reported conflict.
    let conflict = r.wait_until("the conflict to be reported", 30, |n| {
        let list = n.get_json("/api/p2p/conflicts");
        list.as_array()?
            .iter()
            .find(|c| c["uuid"] == root.as_str())
            .cloned()
    });
    let claims = conflict["claims"].as_array().unwrap();
    assert_eq!(claims.len(), 2, "{conflict}");
    let lockers: Vec<&str> = claims
        .iter()
        .map(|c| c["locked_by"].as_str().unwrap())
        .collect();
    assert!(lockers.contains(&o.peer_id().as_str()), "{conflict}");
    assert!(lockers.contains(&resealer.peer_id().as_str()), "{conflict}");
    let heads = r.get_json("/api/p2p/heads");
    assert!(
        !heads
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h["uuid"] == root.as_str()),
        "a conflicted version is offered: {heads}"
    );

    // Never merged silently: a pull that names no peer refuses; naming the origin works.
    let st = r.pull(json!({"uuid": root}));
    assert_eq!(st["state"], "failed", "{st}");
    assert!(
        st["error"]
            .as_str()
            .unwrap()
            .contains("different commit hashes"),
        "{st}"
    );
    let st = r.pull(json!({"uuid": root, "peers": [o.peer_id()]}));
    assert_eq!(st["state"], "done", "{st}");
    assert!(r.get_bytes(&raw(&root)) == o.get_bytes(&raw(&root)));
    let info = &r.get_json("/api/repos/info")[&root];
    assert_eq!(info["DAG"]["Nodes"][&root]["Locked"], true);
}

#[test]
fn p2p_hostile_flood_and_oversized_frames_are_cut_off() {
    let (o, _do, root) = origin();
    let (flooder, _d1) = node(&[&o], &["--misbehave", "flood"]);
    let (bloater, _d2) = node(&[&o], &["--misbehave", "oversized"]);
    let (r, _dr) = node(&[&o], &[]);
    share(&o, &root, &[&r]);

    let f = conduct(&o, &flooder.peer_id(), "the flooder to be banned", |p| {
        p["banned"].is_string()
    });
    println!("flooder: {f}");
    assert!(f["requests_refused"].as_u64().unwrap() > 0, "{f}");
    let b = conduct(&o, &bloater.peer_id(), "the bloater to be banned", |p| {
        p["banned"].is_string()
    });
    assert!(b["banned"].as_str().unwrap().contains("oversized"), "{b}");

    // The honest peer is served in full meanwhile.
    r.wait_offered(&root);
    let st = r.pull(json!({"uuid": root}));
    assert_eq!(st["state"], "done", "{st}");
    assert!(r.get_bytes(&raw(&root)) == o.get_bytes(&raw(&root)));
    let honest = conduct(&o, &r.peer_id(), "the honest peer's record", |_| true);
    assert!(honest["banned"].is_null(), "{honest}");
    assert_eq!(o.get("/api/server/info").status(), 200);
}

#[test]
fn p2p_hostile_manifest_must_match_the_announced_head() {
    let (o, _do, root) = origin();
    let child = o.new_version(&root);
    o.post_bytes(
        &format!("/api/node/{child}/gray/raw/0_1_2/16_16_16/0_0_0"),
        vec![9; 4096],
    );
    o.commit(&child);
    let (forger, _df) = hostile_holder(&o, &root, "forge-manifests");
    forger.wait_offered(&child);
    let st = forger.pull(json!({"uuid": child}));
    assert_eq!(st["state"], "done", "{st}");

    let (r, _dr) = node(&[&forger], &[]);
    share(&forger, &root, &[&r]);
    r.wait_offered(&child);
    // Honest heads, then a manifest giving the child its parent's contents under a fresh seal.
    let st = r.pull(json!({"uuid": child}));
    assert_eq!(st["state"], "failed", "{st}");
    assert!(
        st["error"]
            .as_str()
            .unwrap()
            .contains("differs from the head it announced"),
        "{st}"
    );
    let repos = r.get_json("/api/repos/info");
    assert!(
        repos.get(&root).is_none(),
        "a forged version was imported: {repos}"
    );
    let f = conduct(&r, &forger.peer_id(), "the forger's strike", |p| {
        p["strikes"].as_f64() > Some(0.0)
    });
    println!("forger: {f}");
}
