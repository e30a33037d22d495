//! Data dirs of older catalog formats still work: they open, pass fsck, serve the same bytes, and a
//! peer can still pull from them. `tests/fixtures/datadir-v1` was written by dvid 0.1.0 (before
//! catalog records carried a format; its versions verify although that release hashed the instance
//! added after a commit into them), `datadir-v2` by the release that stored types by enum index with
//! block fields on every instance. Both were made by `tests/fixtures/make-datadir.sh`.

use dvid_tests::{Node, Value, dvid_bin, json};
use sha2::{Digest, Sha256};
use std::path::Path;
use std::process::Command;

fn fixture(name: &str) -> (tempfile::TempDir, Value) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name);
    let dir = tempfile::tempdir().unwrap();
    // The migration rewrites records in place: work on a copy, never on the committed fixture.
    let status = Command::new("cp")
        .arg("-r")
        .arg(src.join("node"))
        .arg(dir.path().join("node"))
        .status()
        .unwrap();
    assert!(status.success());
    let expected: Value =
        serde_json::from_slice(&std::fs::read(src.join("expected.json")).unwrap()).unwrap();
    (dir, expected)
}

fn fsck(data: &Path) -> (bool, String) {
    let out = Command::new(dvid_bin())
        .args(["fsck", "--data-dir"])
        .arg(data)
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn upgrade_opens_a_v1_data_dir_verifies_serves_and_shares_it() {
    upgrade("datadir-v1");
}

#[test]
fn upgrade_opens_a_v2_data_dir_verifies_serves_and_shares_it() {
    upgrade("datadir-v2");
}

fn upgrade(fixture_name: &str) {
    let (dir, expected) = fixture(fixture_name);
    let data = dir.path().join("node");
    let (clean, report) = fsck(&data);
    assert!(clean, "fsck of the migrated data dir: {report}");
    // 4 versions: the repo's root, its child, a mutable branch, and a partial replica's version.
    assert!(report.contains("4 versions"), "{report}");

    let node = Node::start_p2p(&data, &[]);
    for read in expected["reads"].as_array().unwrap() {
        let path = format!("/api/{}", read["path"].as_str().unwrap());
        let r = node.get(&path);
        assert_eq!(r.status().as_u16() as u64, read["status"], "GET {path}");
        let body = r.bytes().unwrap();
        // JSON answers end with a newline since 0.1.0; the bytes before it are those it sent.
        let trimmed = match body.strip_suffix(b"\n") {
            Some(b) if path.ends_with("/keys") => b,
            _ => &body[..],
        };
        assert!(
            [sha256(&body), sha256(trimmed)]
                .contains(&read["sha256"].as_str().unwrap().to_string()),
            "GET {path} changed"
        );
    }
    let (root, v2, v3) = (
        expected["root"].as_str().unwrap(),
        expected["v2"].as_str().unwrap(),
        expected["v3"].as_str().unwrap(),
    );
    // "notes" was added after the root was committed: the root never held it.
    let r = node.get(&format!("/api/node/{root}/notes/key/n1"));
    assert_eq!(r.status(), 404);
    assert!(r.text().unwrap().contains("did not exist at version"));
    // The partial replica still refuses what it does not hold.
    let origin = expected["origin"].as_str().unwrap();
    let r = node.get(&format!(
        "/api/node/{origin}/grayscale/raw/0_1_2/16_16_16/0_0_0"
    ));
    assert_eq!(r.status(), 400, "{}", r.text().unwrap());
    // The mutable branch still takes writes and commits, and the store stays clean.
    node.post_bytes(&format!("/api/node/{v3}/kv/key/gamma"), b"after".to_vec());
    node.commit(v3);

    // A peer pulls the migrated versions and gets the same bytes.
    let peer_dir = tempfile::tempdir().unwrap();
    let peer = Node::start(peer_dir.path(), &["--peer", &node.p2p_addr()]);
    node.post_json(
        &format!("/api/repo/{root}/share"),
        json!({"peers": [peer.peer_id()]}),
    );
    peer.wait_offered(v3);
    let st = peer.pull(json!({"uuid": v3}));
    assert_eq!(st["state"], "done", "{st}");
    let st = peer.pull(json!({"uuid": v2}));
    assert_eq!(st["state"], "done", "{st}");
    for path in [
        format!("/api/node/{v2}/grayscale/raw/0_1_2/64_64_32/0_0_0"),
        format!("/api/node/{v2}/labels/raw/0_1_2/32_32_32/0_0_0"),
        format!("/api/node/{v3}/notes/key/n1"),
        format!("/api/node/{v3}/kv/key/gamma"),
    ] {
        assert!(
            peer.get_bytes(&path) == node.get_bytes(&path),
            "{path} differs on the peer"
        );
    }
    assert!(node.stop());
    let (clean, report) = fsck(&data);
    assert!(clean, "fsck after use: {report}");
}
