//! `dvid fsck` passes a healthy data dir and exits non-zero, naming the damage, when a stored
//! object's bytes are changed on disk.

use dvid_tests::{Node, dvid_bin, json, test_volume};
use std::path::Path;
use std::process::{Command, Output};

fn fsck(dir: &Path) -> Output {
    Command::new(dvid_bin())
        .args(["fsck", "--data-dir"])
        .arg(dir)
        .output()
        .unwrap()
}

#[test]
fn store_fsck_catches_a_corrupted_object() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), &[]);
    let root = node.new_repo("fsck");
    node.new_instance(&root, "uint8blk", "gray", json!({"BlockSize": "32,32,32"}));
    node.new_instance(&root, "keyvalue", "kv", json!({}));
    node.post_bytes(
        &format!("/api/node/{root}/gray/raw/0_1_2/128_128_64/0_0_0"),
        test_volume([128, 128, 64], 7),
    );
    for i in 0..50 {
        node.post_bytes(&format!("/api/node/{root}/kv/key/k{i}"), vec![i; 500]);
    }
    node.commit(&root);
    let child = node.new_version(&root);
    node.post_bytes(&format!("/api/node/{child}/kv/key/k1"), b"new".to_vec());
    assert!(node.stop(), "node did not stop cleanly");

    let healthy = fsck(dir.path());
    let out = String::from_utf8_lossy(&healthy.stdout);
    assert!(
        healthy.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&healthy.stderr)
    );
    assert!(out.contains("no problems found"), "{out}");
    println!("healthy: {}", out.lines().next().unwrap_or_default());

    // Flip one byte in the middle of each blob file, where object payloads live.
    let mut flipped = 0;
    for file in files(dir.path()) {
        if file.components().any(|c| c.as_os_str() == "blobs") {
            let mut bytes = std::fs::read(&file).unwrap();
            if bytes.len() > 4096 {
                let mid = bytes.len() / 2;
                bytes[mid] ^= 0x5a;
                std::fs::write(&file, bytes).unwrap();
                flipped += 1;
            }
        }
    }
    assert!(flipped > 0, "a clean stop left no blob file to corrupt");
    let damaged = fsck(dir.path());
    let out = String::from_utf8_lossy(&damaged.stdout);
    let err = String::from_utf8_lossy(&damaged.stderr);
    assert!(
        !damaged.status.success(),
        "fsck passed a damaged store: {out}"
    );
    assert!(out.contains("problem: object"), "{out}");
    assert!(err.contains("problem(s) found"), "{err}");
    println!("damaged: {}", out.lines().nth(1).unwrap_or_default());
}

#[test]
fn store_fsck_refuses_a_missing_dir() {
    let dir = tempfile::tempdir().unwrap();
    let r = fsck(&dir.path().join("nothing-here"));
    assert!(!r.status.success());
    assert!(String::from_utf8_lossy(&r.stderr).contains("does not exist"));
}

fn files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(files(&p));
        } else {
            out.push(p);
        }
    }
    out
}
