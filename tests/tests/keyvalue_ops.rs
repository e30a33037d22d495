//! keyvalue over HTTP: get, put, delete, head, keys, keyrange, across versions.

use dvid_tests::{Node, json};

#[test]
fn keyvalue_crud_keys_and_ranges() {
    let dir = tempfile::tempdir().unwrap();
    let n = Node::start(dir.path(), &[]);
    let root = n.new_repo("kv");
    n.new_instance(&root, "keyvalue", "kv", json!({}));
    let key = |k: &str| format!("/api/node/{root}/kv/key/{k}");
    assert_eq!(n.get(&key("a")).status(), 404);
    assert_eq!(n.head(&key("a")).status(), 404);
    for (k, v) in [
        ("b", "2"),
        ("a", "1"),
        ("c", "3"),
        ("a%2Fslash", "s"),
        ("empty", ""),
    ] {
        n.post_bytes(&key(k), v.as_bytes().to_vec());
    }
    assert_eq!(n.get_bytes(&key("a")), b"1");
    assert_eq!(n.get_bytes(&key("empty")), b"");
    assert_eq!(n.get_bytes(&key("a%2Fslash")), b"s");
    assert_eq!(n.head(&key("a")).status(), 200);
    n.post_bytes(&key("a"), b"one".to_vec());
    assert_eq!(n.get_bytes(&key("a")), b"one");
    assert_eq!(
        n.get_json(&format!("/api/node/{root}/kv/keys")),
        json!(["a", "a/slash", "b", "c", "empty"])
    );
    assert_eq!(
        n.get_json(&format!("/api/node/{root}/kv/keyrange/a%2F/c")),
        json!(["a/slash", "b", "c"])
    );
    // A start after the end is an empty range, as DVID answers.
    assert_eq!(
        n.get_json(&format!("/api/node/{root}/kv/keyrange/c/a")),
        json!([])
    );
    assert_eq!(n.delete(&key("b")).status(), 200);
    assert_eq!(n.get(&key("b")).status(), 404);
    n.commit(&root);
    let child = n.new_version(&root);
    let ckey = |k: &str| format!("/api/node/{child}/kv/key/{k}");
    assert_eq!(n.delete(&ckey("c")).status(), 200);
    n.post_bytes(&ckey("d"), b"4".to_vec());
    assert_eq!(
        n.get_json(&format!("/api/node/{child}/kv/keys")),
        json!(["a", "a/slash", "d", "empty"])
    );
    assert_eq!(
        n.get_json(&format!("/api/node/{root}/kv/keys")),
        json!(["a", "a/slash", "c", "empty"])
    );
    assert_eq!(n.get_bytes(&key("c")), b"3");
    assert_eq!(n.get(&ckey("c")).status(), 404);
    n.commit(&child);
    assert_eq!(
        n.get_json(&format!("/api/node/{child}/kv/keys")),
        json!(["a", "a/slash", "d", "empty"])
    );
    assert_eq!(n.get(&ckey("c")).status(), 404);
    assert_eq!(n.get_bytes(&ckey("d")), b"4");
    // Writes to the locked version are refused and change nothing.
    let r = n.post(&ckey("e"), "5");
    assert_eq!(r.status(), 400);
    assert!(r.text().unwrap().contains("locked"));
    assert_eq!(n.get(&ckey("e")).status(), 404);
}
