//! Repos and the version DAG over HTTP: info shapes, commit, branch, newversion, UUID prefixes,
//! conflict-free merge and its refusals, and the CLI client.

use dvid_tests::{Node, dvid_bin, json};
use std::process::Command;

fn node() -> (Node, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    (Node::start(dir.path(), &[]), dir)
}

#[test]
fn repo_info_has_dvid_shapes() {
    let (n, _d) = node();
    let root = n.new_repo("shapes");
    n.new_instance(
        &root,
        "uint8blk",
        "grayscale",
        json!({"BlockSize": "32,32,32", "VoxelSize": "4,4,40", "VoxelUnits": "nanometers"}),
    );
    n.new_instance(&root, "keyvalue", "kv", json!({}));
    n.commit(&root);
    let child = n.new_version(&root);
    let all = n.get_json("/api/repos/info");
    let repo = &all[&root];
    assert_eq!(repo["Root"], root.as_str());
    assert_eq!(repo["Alias"], "shapes");
    assert_eq!(repo["DAG"]["Root"], root.as_str());
    let nodes = repo["DAG"]["Nodes"].as_object().unwrap();
    assert_eq!(nodes.len(), 2);
    let r = &nodes[&root];
    let c = &nodes[&child];
    assert_eq!(r["UUID"], root.as_str());
    assert_eq!(r["Locked"], true);
    assert_eq!(c["Locked"], false);
    assert_eq!(c["Parents"], json!([r["VersionID"]]));
    assert_eq!(r["Children"], json!([c["VersionID"]]));
    assert_eq!(r["Note"], "test commit");
    for field in ["Branch", "Created", "Updated", "Log"] {
        assert!(r.get(field).is_some(), "DAG node lacks {field}");
    }
    let gray = &repo["DataInstances"]["grayscale"];
    assert_eq!(gray["Base"]["TypeName"], "uint8blk");
    assert_eq!(gray["Base"]["Compression"], "LZ4 compression, level -1");
    assert_eq!(gray["Extended"]["VoxelSize"], json!([4.0, 4.0, 40.0]));
    // Never null, so viewers can parse them: an empty instance's max lies below its min.
    assert_eq!(gray["Extended"]["MinPoint"], json!([0, 0, 0]));
    assert_eq!(gray["Extended"]["MaxPoint"], json!([-1, -1, -1]));
    assert_eq!(repo["DataInstances"]["kv"]["Base"]["TypeName"], "keyvalue");
    assert_eq!(
        n.get_json(&format!("/api/repo/{child}/info"))["Root"],
        root.as_str()
    );
    assert_eq!(
        n.get_json(&format!("/api/node/{root}/commit")),
        json!({"Locked": true})
    );
    assert_eq!(
        n.get_json(&format!("/api/node/{child}/commit")),
        json!({"Locked": false})
    );
    let info = n.get_json("/api/server/info");
    assert_eq!(info["Storage backend"], "fjall");
}

#[test]
fn repo_dag_rules_and_prefixes() {
    let (n, _d) = node();
    let root = n.new_repo("dag");
    // Children need a locked parent.
    let r = n.post(&format!("/api/node/{root}/newversion"), "{}");
    assert_eq!(r.status(), 400);
    assert!(r.text().unwrap().contains("not committed"));
    assert_eq!(
        n.post(&format!("/api/node/{root}/branch"), r#"{"branch":"x"}"#)
            .status(),
        400
    );
    n.commit(&root);
    assert_eq!(
        n.post(&format!("/api/node/{root}/commit"), "{}").status(),
        400
    );
    // Any unique prefix works.
    let child = n.new_version(&root[..8]);
    // A second child on the same branch is refused: that takes a named branch.
    assert_eq!(
        n.post(&format!("/api/node/{root}/newversion"), "{}")
            .status(),
        400
    );
    let side = n.branch(&root, "side");
    assert_eq!(
        n.post(&format!("/api/node/{root}/branch"), r#"{"branch":"side"}"#)
            .status(),
        400
    );
    let info = n.get_json(&format!("/api/repo/{root}/info"));
    assert_eq!(info["DAG"]["Nodes"][&side]["Branch"], "side");
    assert_eq!(info["DAG"]["Nodes"][&child]["Branch"], "");
    // Make enough versions that two share a first hex digit, then ask for that digit: ambiguous.
    let mut uuids = vec![root.clone(), child.clone(), side.clone()];
    let mut tip = side.clone();
    for _ in 0..17 {
        n.commit(&tip);
        tip = n.new_version(&tip);
        uuids.push(tip.clone());
    }
    let digit = (0..16)
        .map(|d| format!("{d:x}"))
        .find(|d| uuids.iter().filter(|u| u.starts_with(d.as_str())).count() > 1)
        .expect("pigeonhole");
    let r = n.get(&format!("/api/node/{digit}/commit"));
    assert_eq!(r.status(), 400);
    assert!(r.text().unwrap().contains("ambiguous"));
    // Notes and logs.
    n.post_json(&format!("/api/node/{tip}/note"), json!({"note": "hello"}));
    assert_eq!(
        n.get_json(&format!("/api/node/{tip}/note")),
        json!({"note": "hello"})
    );
    n.post_json(
        &format!("/api/node/{tip}/log"),
        json!({"log": ["one", "two"]}),
    );
    assert_eq!(
        n.get_json(&format!("/api/node/{tip}/log")),
        json!({"log": ["one", "two"]})
    );
    n.post_json(
        &format!("/api/repo/{root}/log"),
        json!({"log": ["repo line"]}),
    );
    assert_eq!(
        n.get_json(&format!("/api/repo/{root}/log")),
        json!({"log": ["repo line"]})
    );
}

fn raw(uuid: &str, off: [i32; 3]) -> String {
    format!(
        "/api/node/{uuid}/gray/raw/0_1_2/4_4_4/{}_{}_{}",
        off[0], off[1], off[2]
    )
}

#[test]
fn repo_merge_disjoint_and_conflicting() {
    let (n, _d) = node();
    let root = n.new_repo("merge");
    n.new_instance(&root, "uint8blk", "gray", json!({"BlockSize": "4,4,4"}));
    n.new_instance(&root, "keyvalue", "kv", json!({}));
    n.post_bytes(&raw(&root, [0, 0, 0]), vec![1; 64]);
    n.post_bytes(&format!("/api/node/{root}/kv/key/shared"), b"base".to_vec());
    n.commit(&root);
    let a = n.branch(&root, "a");
    let b = n.branch(&root, "b");
    n.post_bytes(&raw(&a, [4, 0, 0]), vec![2; 64]);
    n.post_bytes(&format!("/api/node/{a}/kv/key/from-a"), b"A".to_vec());
    n.post_bytes(&raw(&b, [8, 0, 0]), vec![3; 64]);
    assert_eq!(
        n.delete(&format!("/api/node/{b}/kv/key/shared")).status(),
        200
    );
    // Merging unlocked parents is refused.
    let body = json!({"mergeType": "conflict-free", "parents": [a, b], "note": "m"});
    let r = n.post(&format!("/api/repo/{root}/merge"), body.to_string());
    assert_eq!(r.status(), 400);
    assert!(r.text().unwrap().contains("not committed"));
    n.commit(&a);
    n.commit(&b);
    let merged = n.post_json(&format!("/api/repo/{root}/merge"), body.clone())["child"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(n.get_bytes(&raw(&merged, [0, 0, 0])), vec![1; 64]);
    assert_eq!(n.get_bytes(&raw(&merged, [4, 0, 0])), vec![2; 64]);
    assert_eq!(n.get_bytes(&raw(&merged, [8, 0, 0])), vec![3; 64]);
    assert_eq!(
        n.get_json(&format!("/api/node/{merged}/kv/keys")),
        json!(["from-a"])
    );
    let info = n.get_json(&format!("/api/repo/{root}/info"));
    assert_eq!(
        info["DAG"]["Nodes"][&merged]["Parents"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(info["DAG"]["Nodes"][&merged]["Locked"], false);

    // Two branches that change the same block and key differently conflict, named in the answer.
    n.commit(&merged);
    let c = n.branch(&merged, "c");
    let d = n.branch(&merged, "d");
    n.post_bytes(&raw(&c, [4, 0, 0]), vec![5; 64]);
    n.post_bytes(&raw(&d, [5, 1, 1]), vec![6; 64]);
    n.post_bytes(&format!("/api/node/{c}/kv/key/k"), b"c".to_vec());
    n.post_bytes(&format!("/api/node/{d}/kv/key/k"), b"d".to_vec());
    n.commit(&c);
    n.commit(&d);
    let r = n.post(
        &format!("/api/repo/{root}/merge"),
        json!({"mergeType": "conflict-free", "parents": [c, d]}).to_string(),
    );
    assert_eq!(r.status(), 409);
    let msg = r.text().unwrap();
    assert!(msg.contains("gray") || msg.contains("kv"), "{msg}");
    assert!(
        msg.contains("block (1,0,0)") || msg.contains("key \"k\""),
        "{msg}"
    );
    // Nothing was created by the refused merge.
    let nodes = n.get_json(&format!("/api/repo/{root}/info"))["DAG"]["Nodes"]
        .as_object()
        .unwrap()
        .len();
    assert_eq!(nodes, 6);
    let r = n.post(
        &format!("/api/repo/{root}/merge"),
        json!({"mergeType": "tiebreak", "parents": [c, d]}).to_string(),
    );
    assert_eq!(r.status(), 400);
}

#[test]
fn repo_cli_client_drives_a_node() {
    let (n, _d) = node();
    let cli = |args: &[&str]| {
        let out = Command::new(dvid_bin())
            .args(["--server", &n.url])
            .args(args)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).trim().to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (ok, root, err) = cli(&["repo", "new", "--alias", "cli"]);
    assert!(ok, "{err}");
    assert_eq!(root.len(), 32);
    assert!(
        cli(&[
            "instance",
            &root,
            "uint8blk",
            "gray",
            "--block-size",
            "16,16,16"
        ])
        .0
    );
    let (ok, committed, _) = cli(&["commit", &root, "--note", "from cli"]);
    assert!(ok);
    assert_eq!(committed, root);
    let (ok, child, _) = cli(&["newversion", &root]);
    assert!(ok && child.len() == 32);
    let (ok, _, err) = cli(&["newversion", &root]);
    assert!(!ok && err.contains("400"), "{err}");
    let (ok, repos, _) = cli(&["repos"]);
    assert!(ok && repos.contains(&child));
    let help = Command::new(dvid_bin()).arg("--help").output().unwrap();
    assert!(String::from_utf8_lossy(&help.stdout).contains("serve"));
}
