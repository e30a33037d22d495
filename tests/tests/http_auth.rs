//! Bearer tokens: writes need the write token, reads the read token when one is set; refused
//! requests change nothing; a wide bind without a token is announced at start.

use dvid_tests::{Node, dvid_bin, json};
use std::process::Command;

#[test]
fn http_auth_tokens_gate_writes_and_reads() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = Node::start(
        dir.path(),
        &["--write-token", "w-secret", "--read-token", "r-secret"],
    );
    assert!(
        !node.startup.iter().any(|l| l.contains("warning")),
        "{:?}",
        node.startup
    );

    // No token: reads and writes are refused with 401 and a reason.
    let r = node.get("/api/server/info");
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["www-authenticate"], "Bearer");
    assert!(r.text().unwrap().contains("read token"));
    let r = node.post("/api/repos", json!({"alias": "a"}).to_string());
    assert_eq!(r.status(), 401);
    assert!(r.text().unwrap().contains("write token"));

    // The read token reads but does not write.
    node.authorize("r-secret");
    assert_eq!(node.get("/api/repos/info").status(), 200);
    let r = node.post("/api/repos", json!({"alias": "a"}).to_string());
    assert_eq!(r.status(), 401);
    assert!(r.text().unwrap().contains("wrong token"));

    // A wrong token is refused for both.
    node.authorize("guess");
    assert_eq!(node.get("/api/repos/info").status(), 401);
    assert_eq!(node.delete("/api/node/abc/kv/key/k").status(), 401);

    // The write token does both.
    node.authorize("w-secret");
    let root = node.new_repo("granted");
    node.new_instance(&root, "keyvalue", "kv", json!({}));
    node.post_bytes(&format!("/api/node/{root}/kv/key/k"), b"v".to_vec());
    assert_eq!(node.get_bytes(&format!("/api/node/{root}/kv/key/k")), b"v");

    // Refused writes created nothing.
    let repos = node.get_json("/api/repos/info");
    assert_eq!(repos.as_object().unwrap().len(), 1, "{repos}");

    // The command-line client sends --token.
    let cli = |token: Option<&str>| {
        let mut c = Command::new(dvid_bin());
        c.args(["--server", &node.url]);
        if let Some(t) = token {
            c.args(["--token", t]);
        }
        c.args(["repo", "new", "--alias", "cli"]).output().unwrap()
    };
    let refused = cli(None);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("401"));
    let made = cli(Some("w-secret"));
    assert!(made.status.success(), "{made:?}");
    assert_eq!(String::from_utf8_lossy(&made.stdout).trim().len(), 32);
}

#[test]
fn http_auth_wide_bind_without_token_warns() {
    let dir = tempfile::tempdir().unwrap();
    let open = Node::start_on(dir.path(), "0.0.0.0:0", &[]);
    assert!(
        open.startup
            .iter()
            .any(|l| l.contains("warning") && l.contains("--write-token")),
        "{:?}",
        open.startup
    );
    assert_eq!(open.get("/api/server/info").status(), 200);
    drop(open);

    let dir = tempfile::tempdir().unwrap();
    let guarded = Node::start_on(dir.path(), "0.0.0.0:0", &["--write-token", "t"]);
    assert!(
        !guarded.startup.iter().any(|l| l.contains("warning")),
        "{:?}",
        guarded.startup
    );
}
