//! What a user reaches for around sync, against real `dvid` processes: a pull nobody can serve says
//! why at once and fails at its deadline; dial failures are reported; refusals are counted; sharing
//! and publishing can be taken back; follows and jobs can be listed and stopped.

use dvid_tests::{Node, Value, dvid_bin, json, test_volume};
use std::process::Command;
use std::time::{Duration, Instant};

fn origin(extra: &[&str]) -> (Node, tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let a = Node::start_p2p(dir.path(), extra);
    let root = a.new_repo("lifecycle");
    a.new_instance(&root, "uint8blk", "gray", json!({"BlockSize": "16,16,16"}));
    a.new_instance(&root, "keyvalue", "kv", json!({}));
    a.post_bytes(
        &format!("/api/node/{root}/gray/raw/0_1_2/128_128_128/0_0_0"),
        test_volume([128; 3], 2),
    );
    a.post_bytes(&format!("/api/node/{root}/kv/key/a"), b"1".to_vec());
    a.commit(&root);
    (a, dir, root)
}

fn peer_of(a: &Node) -> (Node, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    (Node::start(dir.path(), &["--peer", &a.p2p_addr()]), dir)
}

fn share(a: &Node, root: &str, b: &Node) {
    a.post_json(
        &format!("/api/repo/{root}/share"),
        json!({"peers": [b.peer_id()]}),
    );
}

fn peer_entry(n: &Node, peer: &str) -> Option<Value> {
    n.get_json("/api/p2p/peers")
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["peer"] == peer)
        .cloned()
}

#[test]
fn p2p_a_pull_nobody_serves_waits_with_a_reason_then_fails() {
    let dir = tempfile::tempdir().unwrap();
    let n = Node::start_p2p(dir.path(), &[]);
    let nowhere = "0123456789abcdef0123456789abcdef";
    let t = Instant::now();
    let job = n.post_json("/api/p2p/pull", json!({"uuid": nowhere, "wait": 3}))["job"]
        .as_str()
        .unwrap()
        .to_string();
    let st = n.wait_until("the waiting state", 5, |n| {
        let st = n.get_json(&format!("/api/p2p/jobs/{job}"));
        let told = st["reason"]
            .as_str()
            .is_some_and(|r| r.contains("no connected peer"));
        (st["state"] == "waiting" && told).then_some(st)
    });
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "waiting shown only after {:?}",
        t.elapsed()
    );
    let reason = st["reason"].as_str().unwrap();
    assert!(reason.contains("no connected peer offers"), "{reason}");
    assert!(reason.contains("0 peer(s) connected"), "{reason}");
    let st = n.wait_job(&job);
    assert_eq!(st["state"], "failed", "{st}");
    assert!(
        st["error"]
            .as_str()
            .unwrap()
            .starts_with("waited 3 s: no connected peer"),
        "{st}"
    );
    assert!(t.elapsed() < Duration::from_secs(8));
    // The command line shows the reason while it waits, and fails at its deadline.
    let (ok, _, err) = n.cli(&["pull", nowhere, "--wait", "2"]);
    assert!(!ok);
    assert!(err.contains("waiting: no connected peer offers"), "{err}");
    assert!(err.contains("waited 2 s"), "{err}");
}

#[test]
fn p2p_dial_failures_are_returned_logged_and_listed() {
    let (a, _da, _root) = origin(&[]);
    // A dead address: the dial answers with the reason.
    let dead = format!("/ip4/127.0.0.1/tcp/{}", dvid_tests::free_port());
    let r = a.post("/api/p2p/dial", json!({"addr": dead}).to_string());
    assert_eq!(r.status(), 400);
    let text = r.text().unwrap();
    assert!(
        text.contains("cannot dial") && text.to_lowercase().contains("refused"),
        "{text}"
    );
    // A live dial answers with the PeerId reached.
    let db = tempfile::tempdir().unwrap();
    let b = Node::start_p2p(db.path(), &[]);
    let got = a.post_json("/api/p2p/dial", json!({"addr": b.p2p_addr()}));
    assert_eq!(got["peer"], b.peer_id());
    // A --peer whose PeerId is wrong (the address is A's, the id B's) is listed as unreachable.
    let a_addr = a.p2p_addr();
    let wrong = format!(
        "{}/p2p/{}",
        a_addr.rsplit_once("/p2p/").unwrap().0,
        b.peer_id()
    );
    let dc = tempfile::tempdir().unwrap();
    let c = Node::start(dc.path(), &["--peer", &wrong]);
    let entry = c.wait_until("the wrong peer listed", 20, |n| {
        peer_entry(n, &b.peer_id()).filter(|e| e["state"] == "unreachable")
    });
    let error = entry["last_error"].as_str().unwrap();
    assert!(
        error.contains(&a.peer_id()) && error.contains("not the PeerId"),
        "{entry}"
    );
    assert_eq!(entry["connected"], false);
    // A --peer at a dead address is listed with the transport's reason.
    let gone = format!("{dead}/p2p/{}", a.peer_id());
    let dd = tempfile::tempdir().unwrap();
    let d = Node::start(dd.path(), &["--peer", &gone]);
    let entry = d.wait_until("the dead peer listed", 20, |n| {
        peer_entry(n, &a.peer_id()).filter(|e| e["state"] == "unreachable")
    });
    let error = entry["last_error"].as_str().unwrap();
    assert!(error.to_lowercase().contains("refused"), "{entry}");
    assert_eq!(entry["addr"], gone.as_str(), "{entry}");
}

#[test]
fn p2p_refusals_are_counted_and_sharing_can_be_taken_back() {
    let (a, _da, root) = origin(&[]);
    let (b, _db) = peer_of(&a);
    let a_id = a.peer_id();
    b.wait_until("a connection", 10, |n| {
        n.get_json("/api/p2p/info")["connected_peers"]
            .as_array()
            .unwrap()
            .contains(&json!(a_id))
            .then_some(())
    });
    // Not shared: refused, and counted at A.
    let st = b.pull(json!({"uuid": root, "peers": [a_id]}));
    assert_eq!(st["state"], "failed", "{st}");
    let entry = peer_entry(&a, &b.peer_id()).unwrap();
    assert!(entry["requests_refused"].as_u64().unwrap() >= 1, "{entry}");
    // Shared: pulled. Unshared: the next version is refused, the pulled one stays.
    share(&a, &root, &b);
    b.wait_offered(&root);
    assert_eq!(b.pull(json!({"uuid": root}))["state"], "done");
    let (ok, out, err) = a.cli(&["unshare", &root, &b.peer_id()]);
    assert!(ok, "{out}{err}");
    assert_eq!(
        a.get_json(&format!("/api/repo/{root}/sharing"))["shared_with"],
        json!([])
    );
    let child = a.new_version(&root);
    a.post_bytes(&format!("/api/node/{child}/kv/key/b"), b"2".to_vec());
    a.commit(&child);
    let st = b.pull(json!({"uuid": child, "peers": [a_id]}));
    assert_eq!(st["state"], "failed", "{st}");
    assert!(st["error"].as_str().unwrap().contains("not shared"), "{st}");
    assert_eq!(b.get_bytes(&format!("/api/node/{root}/kv/key/a")), b"1");
    // Published then unpublished: a stranger sees the head come and go.
    let (c, _dc) = peer_of(&a);
    a.post_json(&format!("/api/node/{child}/publish"), json!({}));
    c.wait_offered(&child);
    let (ok, out, err) = a.cli(&["unpublish", &child]);
    assert!(ok, "{out}{err}");
    c.wait_until("the unpublished head to go", 20, |n| {
        (n.get_json("/api/p2p/heads") == json!([])).then_some(())
    });
    let st = c.pull(json!({"uuid": child, "peers": [a_id]}));
    assert_eq!(st["state"], "failed", "{st}");
    // A write to an instance a partial replica did not pull says so.
    let (d, _dd) = peer_of(&a);
    share(&a, &root, &d);
    d.wait_offered(&root);
    let st = d.pull(json!({"uuid": root, "instances": ["gray"]}));
    assert_eq!(st["state"], "done", "{st}");
    let mine = d.new_version(&root);
    let r = d.post(&format!("/api/node/{mine}/kv/key/x"), "y");
    assert_eq!(r.status(), 404);
    assert!(r.text().unwrap().contains("pull it to write to it"));
    // Pulling an instance the version does not have is refused at once.
    let r = d.post(
        "/api/p2p/pull",
        json!({"uuid": root, "instances": ["nosuch"]}).to_string(),
    );
    assert_eq!(r.status(), 400);
    let text = r.text().unwrap();
    assert!(
        text.contains("no data instance \"nosuch\"") && text.contains("gray, kv"),
        "{text}"
    );
}

#[test]
fn p2p_follows_and_jobs_are_listed_and_stopped() {
    let (a, _da, root) = origin(&["--max-upload-rate", "100000"]);
    let (b, _db) = peer_of(&a);
    // A repo nobody offers cannot be followed.
    let r = b.post(
        "/api/p2p/follow",
        json!({"repo": "0123456789abcdef0123456789abcdef"}).to_string(),
    );
    assert_eq!(r.status(), 404, "{}", r.text().unwrap());
    share(&a, &root, &b);
    b.wait_offered(&root);
    // A slow pull (capped uplink), listed, then cancelled.
    let job = b.post_json("/api/p2p/pull", json!({"uuid": root}))["job"]
        .as_str()
        .unwrap()
        .to_string();
    b.wait_until("bytes to flow", 30, |n| {
        let st = n.get_json(&format!("/api/p2p/jobs/{job}"));
        (st["bytes_fetched"].as_u64().unwrap_or(0) > 0).then_some(())
    });
    let jobs = b.get_json("/api/p2p/jobs");
    let listed = jobs
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["job"] == job.as_str())
        .unwrap();
    assert_eq!(listed["state"], "running", "{jobs}");
    assert_eq!(listed["uuid"], root);
    let (ok, out, err) = b.cli(&["cancel", &job]);
    assert!(ok, "{out}{err}");
    let st = b.wait_job(&job);
    assert_eq!(st["state"], "cancelled", "{st}");
    let stopped_at = st["bytes_fetched"].as_u64().unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let st = b.get_json(&format!("/api/p2p/jobs/{job}"));
    assert_eq!(st["state"], "cancelled");
    assert!(
        st["bytes_fetched"].as_u64().unwrap() <= stopped_at + 200_000,
        "{st}"
    );
    let (ok, _, err) = b.cli(&["cancel", &job]);
    assert!(!ok && err.contains("already ended"), "{err}");
    let (ok, out, _) = b.cli(&["jobs"]);
    assert!(ok && out.contains("cancelled"), "{out}");
    // Follow, list, unfollow: a version committed after unfollowing is not pulled.
    b.post_json("/api/p2p/follow", json!({"repo": root}));
    let (ok, out, _) = b.cli(&["follows"]);
    assert!(ok && out.contains(&root), "{out}");
    let (ok, out, err) = b.cli(&["unfollow", &root]);
    assert!(ok, "{out}{err}");
    assert_eq!(b.get_json("/api/p2p/follow")["following"], json!([]));
    let before = b.get_json("/api/p2p/jobs").as_array().unwrap().len();
    let child = a.new_version(&root);
    a.post_bytes(&format!("/api/node/{child}/kv/key/late"), b"x".to_vec());
    a.commit(&child);
    b.wait_offered(&child);
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(
        b.get_json("/api/p2p/jobs").as_array().unwrap().len(),
        before
    );
}

#[test]
fn diff_lists_changed_blocks_and_keys() {
    let dir = tempfile::tempdir().unwrap();
    let n = Node::start(dir.path(), &[]);
    let root = n.new_repo("diff");
    n.new_instance(&root, "uint8blk", "gray", json!({"BlockSize": "16,16,16"}));
    n.new_instance(&root, "keyvalue", "kv", json!({}));
    n.post_bytes(
        &format!("/api/node/{root}/gray/raw/0_1_2/64_64_64/0_0_0"),
        test_volume([64; 3], 5),
    );
    for k in ["a", "b", "c"] {
        n.post_bytes(
            &format!("/api/node/{root}/kv/key/{k}"),
            k.as_bytes().to_vec(),
        );
    }
    n.commit(&root);
    let child = n.new_version(&root);
    // Two blocks changed, one block added beyond the old extent; one key changed, one gone, one new.
    n.post_bytes(
        &format!("/api/node/{child}/gray/raw/0_1_2/16_16_32/16_0_0"),
        vec![1; 16 * 16 * 32],
    );
    n.post_bytes(
        &format!("/api/node/{child}/gray/raw/0_1_2/16_16_16/64_64_64"),
        vec![2; 4096],
    );
    n.post_bytes(&format!("/api/node/{child}/kv/key/a"), b"changed".to_vec());
    assert_eq!(
        n.delete(&format!("/api/node/{child}/kv/key/b")).status(),
        200
    );
    n.post_bytes(&format!("/api/node/{child}/kv/key/d"), b"new".to_vec());
    // A mutable version diffs by its working set; the same after commit.
    for stage in ["mutable", "committed"] {
        let d = n.get_json(&format!("/api/node/{root}/gray/diff/{child}"));
        assert_eq!(d["changed"], 3, "{stage}: {d}");
        assert_eq!(
            (d["added"].clone(), d["modified"].clone()),
            (json!(1), json!(2)),
            "{d}"
        );
        assert_eq!(
            d["blocks"],
            json!([{"block": [1, 0, 0], "change": "modified"}, {"block": [1, 0, 1], "change": "modified"}, {"block": [4, 4, 4], "change": "added"}]),
            "{d}"
        );
        assert_eq!(
            d["voxel_box"],
            json!({"min": [16, 0, 0], "max": [79, 79, 79]})
        );
        let k = n.get_json(&format!("/api/node/{root}/kv/diff/{child}"));
        assert_eq!(
            k["keys"],
            json!([{"key": "a", "change": "modified"}, {"key": "b", "change": "removed"}, {"key": "d", "change": "added"}]),
            "{stage}: {k}"
        );
        if stage == "mutable" {
            n.commit(&child);
        }
    }
    let (ok, out, err) = n.cli(&["diff", &root, &child, "--data", "gray"]);
    assert!(ok, "{err}");
    assert!(
        out.contains("modified\tblock 1,0,0") && out.contains("3 changed"),
        "{out}"
    );
    // Diffing a version with itself finds nothing; an instance missing is a 404.
    assert_eq!(
        n.get_json(&format!("/api/node/{child}/gray/diff/{child}"))["changed"],
        0
    );
    assert_eq!(
        n.get(&format!("/api/node/{root}/nosuch/diff/{child}"))
            .status(),
        404
    );
}

#[test]
fn cli_output_into_a_closed_pipe_ends_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let n = Node::start(dir.path(), &[]);
    // Enough repos that the listing outgrows a pipe's buffer.
    for i in 0..400 {
        n.new_repo(&format!(
            "repo {i} with a description long enough to fill the pipe"
        ));
    }
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "{} --server {} repos | head -1; exit ${{PIPESTATUS[0]}}",
            dvid_bin().display(),
            n.url
        ))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "exit {:?}: {err}", out.status);
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 1);
}
