//! Durability: everything acknowledged survives a clean restart and `kill -9`.

use dvid_tests::{Node, json, test_volume};

#[test]
fn persist_survives_clean_restart() {
    let dir = tempfile::tempdir().unwrap();
    let n = Node::start(dir.path(), &[]);
    let root = n.new_repo("restart");
    n.new_instance(&root, "uint8blk", "gray", json!({"BlockSize": "32,32,32"}));
    n.new_instance(&root, "keyvalue", "kv", json!({}));
    let vol = test_volume([70, 40, 33], 9);
    n.post_bytes(
        &format!("/api/node/{root}/gray/raw/0_1_2/70_40_33/-3_-5_7"),
        vol.clone(),
    );
    n.post_bytes(&format!("/api/node/{root}/kv/key/k"), b"v".to_vec());
    n.commit(&root);
    let child = n.new_version(&root);
    n.post_bytes(&format!("/api/node/{child}/kv/key/k2"), b"v2".to_vec());
    let before = n.get_json("/api/repos/info");
    assert!(n.stop(), "dvid did not exit cleanly on SIGTERM");

    let n = Node::start(dir.path(), &[]);
    assert_eq!(n.get_json("/api/repos/info"), before);
    assert!(n.get_bytes(&format!("/api/node/{root}/gray/raw/0_1_2/70_40_33/-3_-5_7")) == vol);
    assert_eq!(
        n.get_json(&format!("/api/node/{child}/kv/keys")),
        json!(["k", "k2"])
    );
    // The restarted node keeps working: commit the child it left mutable.
    n.commit(&child);
    assert_eq!(
        n.get_json(&format!("/api/node/{child}/commit")),
        json!({"Locked": true})
    );
}

#[test]
fn persist_survives_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let n = Node::start(dir.path(), &[]);
    let root = n.new_repo("kill");
    n.new_instance(&root, "uint8blk", "gray", json!({"BlockSize": "16,16,16"}));
    n.new_instance(&root, "keyvalue", "kv", json!({}));
    let mut written = Vec::new();
    for i in 0..20 {
        let vol = test_volume([20, 20, 20], i);
        let path = format!("/api/node/{root}/gray/raw/0_1_2/20_20_20/{}_0_0", i * 20);
        n.post_bytes(&path, vol.clone());
        n.post_bytes(&format!("/api/node/{root}/kv/key/k{i}"), vec![i as u8; 100]);
        written.push((path, vol));
    }
    n.commit(&root);
    let child = n.new_version(&root);
    n.post_bytes(
        &format!("/api/node/{child}/kv/key/after"),
        b"acknowledged".to_vec(),
    );
    n.kill9();

    let n = Node::start(dir.path(), &[]);
    for (path, vol) in &written {
        assert!(&n.get_bytes(path) == vol, "{path} lost after kill -9");
    }
    for i in 0..20u8 {
        assert_eq!(
            n.get_bytes(&format!("/api/node/{root}/kv/key/k{i}")),
            vec![i; 100]
        );
    }
    assert_eq!(
        n.get_json(&format!("/api/node/{root}/commit")),
        json!({"Locked": true})
    );
    assert_eq!(
        n.get_bytes(&format!("/api/node/{child}/kv/key/after")),
        b"acknowledged"
    );
    // Killed again in the middle of nothing, a second time: the store still opens.
    n.kill9();
    let n = Node::start(dir.path(), &[]);
    assert_eq!(
        n.get_bytes(&format!("/api/node/{child}/kv/key/after")),
        b"acknowledged"
    );
}
