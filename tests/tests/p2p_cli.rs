//! `dvid pull` from the command line: starts the pull on the node, shows progress, exits when the
//! version is complete (and non-zero, with the reason, when it cannot be).

use dvid_tests::{Node, Value, dvid_bin, json, test_volume};
use std::process::Command;

#[test]
fn p2p_cli_pull_waits_for_the_version() {
    let da = tempfile::tempdir().unwrap();
    let a = Node::start_p2p(da.path(), &[]);
    let root = a.new_repo("cli");
    a.new_instance(&root, "uint8blk", "gray", json!({"BlockSize": "16,16,16"}));
    let path = format!("/api/node/{root}/gray/raw/0_1_2/64_64_64/0_0_0");
    a.post_bytes(&path, test_volume([64; 3], 3));
    a.commit(&root);
    let db = tempfile::tempdir().unwrap();
    let b = Node::start(db.path(), &["--peer", &a.p2p_addr()]);
    let pull = |uuid: &str| {
        Command::new(dvid_bin())
            .args(["--server", &b.url, "pull", uuid, "--from", &a.peer_id()])
            .output()
            .unwrap()
    };

    // Not shared yet: the pull fails and says why.
    let refused = pull(&root);
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("pull failed"), "{err}");

    a.post_json(
        &format!("/api/repo/{root}/share"),
        json!({"peers": [b.peer_id()]}),
    );
    // A UUID prefix names a version among those peers offer: B must have heard of it first.
    b.wait_offered(&root);
    let done = pull(&root[..8]);
    assert!(done.status.success(), "{done:?}");
    let st: Value = serde_json::from_slice(&done.stdout).unwrap();
    assert_eq!(st["state"], "done", "{st}");
    assert!(st["objects_fetched"].as_u64().unwrap() >= 64, "{st}");
    assert!(b.get_bytes(&path) == a.get_bytes(&path));
}
