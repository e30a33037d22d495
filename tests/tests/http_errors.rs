//! Bad input gets a 4xx with a message that says what was wrong, and loses nothing.

use dvid_tests::{Node, json};

#[test]
fn http_bad_requests_get_clear_4xx() {
    let dir = tempfile::tempdir().unwrap();
    let n = Node::start(dir.path(), &["--max-request-bytes", "100000"]);
    let root = n.new_repo("errors");
    n.new_instance(&root, "uint8blk", "gray", json!({"BlockSize": "8,8,8"}));
    n.new_instance(&root, "keyvalue", "kv", json!({}));
    n.post_bytes(
        &format!("/api/node/{root}/gray/raw/0_1_2/8_8_8/0_0_0"),
        vec![5; 512],
    );
    let locked = root.clone();
    n.commit(&locked);
    let head = n.new_version(&root);
    let g = |rest: &str| format!("/api/node/{head}/gray/{rest}");

    // (method, path, body, expected status, words the message must contain)
    let cases: Vec<(&str, String, Vec<u8>, u16, &str)> = vec![
        (
            "GET",
            "/api/node/nothex/gray/info".into(),
            vec![],
            400,
            "not a UUID",
        ),
        (
            "GET",
            format!("/api/node/{}0/gray/info", head),
            vec![],
            400,
            "not a UUID",
        ),
        (
            "GET",
            "/api/node/0123456789abcdef0123456789abcdef/gray/info".into(),
            vec![],
            404,
            "no version",
        ),
        (
            "GET",
            format!("/api/node/{head}/nosuch/info"),
            vec![],
            404,
            "no data instance",
        ),
        (
            "GET",
            g("raw/0_1_2/8_8/0_0_0"),
            vec![],
            400,
            "three integers",
        ),
        (
            "GET",
            g("raw/0_1_2/8_8_x/0_0_0"),
            vec![],
            400,
            "three integers",
        ),
        ("GET", g("raw/0_1_2/-8_8_8/0_0_0"), vec![], 400, "bad size"),
        ("GET", g("raw/0_1_2/0_8_8/0_0_0"), vec![], 400, "at least 1"),
        (
            "GET",
            g("raw/0_1_2/8_8_8/0_0_99999999999"),
            vec![],
            400,
            "bad offset",
        ),
        (
            "GET",
            g("raw/0_1_2/8_8_8/2147483647_0_0"),
            vec![],
            400,
            "largest coordinate",
        ),
        (
            "GET",
            g("raw/0_1_2/4000000000_1_1/0_0_0"),
            vec![],
            400,
            "largest coordinate",
        ),
        (
            "GET",
            g("raw/0_1_2/1000_1000_2/-1000_0_0"),
            vec![],
            413,
            "limit",
        ),
        (
            "GET",
            g("raw/0_1_2/1000_1000_1000/0_0_0"),
            vec![],
            413,
            "limit",
        ),
        // 2^22 * 2^22 * 2^20 voxels: a product that wraps u64 around to 0.
        (
            "GET",
            g("raw/0_1_2/4194304_4194304_1048576/0_0_0"),
            vec![],
            413,
            "limit",
        ),
        ("GET", g("raw/0_1/8_8_8/0_0_0"), vec![], 400, "slice takes two integers"),
        ("GET", g("raw/0_1_3/8_8_8/0_0_0"), vec![], 400, "use 0_1_2"),
        (
            "POST",
            g("raw/0_1_2/8_8_8/0_0_0"),
            vec![1; 511],
            400,
            "needs 512",
        ),
        (
            "POST",
            g("raw/0_1_2/8_8_8/0_0_0"),
            vec![1; 513],
            400,
            "needs 512",
        ),
        (
            "POST",
            g("raw/0_1_2/8_8_8/0_0_0"),
            vec![1; 2_000_000],
            413,
            "exceeds this node's limit",
        ),
        (
            "POST",
            format!("/api/node/{locked}/gray/raw/0_1_2/8_8_8/0_0_0"),
            vec![1; 512],
            400,
            "locked",
        ),
        (
            "POST",
            format!("/api/node/{locked}/kv/key/a"),
            b"x".to_vec(),
            400,
            "locked",
        ),
        ("GET", g("specificblocks"), vec![], 400, "blocks="),
        (
            "GET",
            g("specificblocks?blocks=1,2"),
            vec![],
            400,
            "multiple of 3",
        ),
        (
            "GET",
            g("specificblocks?blocks=a,b,c"),
            vec![],
            400,
            "integers",
        ),
        (
            "GET",
            g("subvolblocks/8_8_8/0_0_0?compression=jpeg"),
            vec![],
            400,
            "compression",
        ),
        ("GET", g("label/0_0_0"), vec![], 400, "served by labelblk"),
        (
            "GET",
            format!("/api/node/{head}/kv/raw/0_1_2/8_8_8/0_0_0"),
            vec![],
            400,
            "keyvalue",
        ),
        ("GET", g("key/a"), vec![], 400, "keyvalue"),
        (
            "GET",
            format!("/api/node/{head}/kv/key/missing"),
            vec![],
            404,
            "not found",
        ),
        (
            "POST",
            "/api/repos".into(),
            b"{not json".to_vec(),
            400,
            "JSON",
        ),
        (
            "POST",
            "/api/repos".into(),
            br#"{"alias": 5}"#.to_vec(),
            400,
            "JSON",
        ),
        (
            "POST",
            "/api/repos".into(),
            br#"["alias", "description"]"#.to_vec(),
            400,
            "JSON object",
        ),
        (
            "POST",
            format!("/api/repo/{root}/instance"),
            br#"{"typename":"uint8blk"}"#.to_vec(),
            400,
            "dataname",
        ),
        (
            "POST",
            format!("/api/repo/{root}/instance"),
            br#"{"typename":"nosuch","dataname":"x"}"#.to_vec(),
            400,
            "unknown data type",
        ),
        (
            "POST",
            format!("/api/repo/{root}/instance"),
            br#"{"typename":"uint8blk","dataname":"gray"}"#.to_vec(),
            400,
            "already exists",
        ),
        (
            "POST",
            format!("/api/repo/{root}/instance"),
            br#"{"typename":"uint8blk","dataname":"b","BlockSize":"0,8,8"}"#.to_vec(),
            400,
            "BlockSize",
        ),
        (
            "POST",
            format!("/api/repo/{root}/instance"),
            br#"{"typename":"uint8blk","dataname":"b","BlockSize":"8,8"}"#.to_vec(),
            400,
            "BlockSize",
        ),
        (
            "POST",
            format!("/api/repo/{root}/instance"),
            br#"{"typename":"uint8blk","dataname":"b","VoxelSize":"nan,inf,8"}"#.to_vec(),
            400,
            "VoxelSize",
        ),
        (
            "POST",
            format!("/api/repo/{root}/instance"),
            br#"{"typename":"uint8blk","dataname":"b","Compression":"gzip"}"#.to_vec(),
            400,
            "compression",
        ),
        (
            "POST",
            format!("/api/repo/{root}/instance"),
            br#"{"typename":"uint8blk","dataname":"b","BlokSize":"8,8,8"}"#.to_vec(),
            400,
            "unknown instance setting",
        ),
        (
            "POST",
            format!("/api/repo/{root}/instance"),
            br#"{"typename":"uint8blk","dataname":"a/b"}"#.to_vec(),
            400,
            "name",
        ),
        (
            "POST",
            format!("/api/node/{head}/branch"),
            br#"{"branch":"new"}"#.to_vec(),
            400,
            "not committed",
        ),
        (
            "POST",
            format!("/api/node/{locked}/branch"),
            b"{}".to_vec(),
            400,
            "branch",
        ),
        (
            "POST",
            format!("/api/repo/{root}/merge"),
            format!(r#"{{"parents":["{locked}"]}}"#).into_bytes(),
            400,
            "two",
        ),
        (
            "POST",
            format!("/api/repo/{root}/merge"),
            br#"{"parents":["x","y"]}"#.to_vec(),
            400,
            "not a UUID",
        ),
        (
            "POST",
            format!("/api/repo/{root}/merge"),
            format!(r#"{{"parents":["{locked}","{locked}"]}}"#).into_bytes(),
            400,
            "twice",
        ),
        (
            "POST",
            format!("/api/repo/{root}/merge"),
            format!(r#"{{"parents":["{locked}","{head}"]}}"#).into_bytes(),
            400,
            "not committed",
        ),
        ("GET", "/api/nosuch".into(), vec![], 404, "no endpoint"),
        (
            "POST",
            "/api/p2p/pull".into(),
            br#"{"uuid":"xyz"}"#.to_vec(),
            400,
            "not a UUID",
        ),
        (
            "POST",
            "/api/p2p/pull".into(),
            format!(r#"{{"uuid":"{root}","peers":["nope"]}}"#).into_bytes(),
            400,
            "PeerId",
        ),
        (
            "POST",
            "/api/p2p/pull".into(),
            format!(r#"{{"uuid":"{root}","region":{{"offset":[0,0,0],"size":[0,1,1]}}}}"#)
                .into_bytes(),
            400,
            "at least 1",
        ),
        (
            "POST",
            "/api/p2p/pull".into(),
            format!(r#"{{"uuid":"{root}","instances":[]}}"#).into_bytes(),
            400,
            "empty",
        ),
        ("GET", "/api/p2p/jobs/abc".into(), vec![], 400, "job number"),
        ("GET", "/api/p2p/jobs/999".into(), vec![], 404, "no job"),
        (
            "POST",
            "/api/p2p/dial".into(),
            br#"{"addr":"not a multiaddr"}"#.to_vec(),
            400,
            "multiaddr",
        ),
        (
            "POST",
            "/api/p2p/follow".into(),
            br#"{"repo":"12"}"#.to_vec(),
            400,
            "repo root",
        ),
        (
            "POST",
            format!("/api/repo/{root}/share"),
            br#"{"peers":["nope"]}"#.to_vec(),
            400,
            "PeerId",
        ),
        (
            "POST",
            format!("/api/node/{head}/publish"),
            vec![],
            400,
            "mutable",
        ),
        (
            "POST",
            "/api/p2p/pull".into(),
            format!(r#"{{"uuid":"{root}","region":{{"offset":[0,0,0],"size":[-5,1,1]}}}}"#)
                .into_bytes(),
            400,
            "at least 1",
        ),
        (
            "POST",
            "/api/p2p/follow".into(),
            br#"{"repo":"0123456789abcdef0123456789abcdef"}"#.to_vec(),
            404,
            "no repo",
        ),
        (
            "POST",
            "/api/p2p/unfollow".into(),
            format!(r#"{{"repo":"{root}"}}"#).into_bytes(),
            404,
            "not followed",
        ),
        (
            "POST",
            "/api/p2p/jobs/999/cancel".into(),
            vec![],
            404,
            "no job",
        ),
        (
            "POST",
            format!("/api/repo/{root}/unshare"),
            br#"{"peers":["12D3KooWNYdFk6mqFLJDiBCX2g5CT6TQWqYjfW5rnJs2qeCNt61H"]}"#.to_vec(),
            400,
            "not shared with",
        ),
        (
            "POST",
            format!("/api/node/{locked}/unpublish"),
            vec![],
            400,
            "not published",
        ),
        (
            "POST",
            "/api/p2p/push".into(),
            format!(r#"{{"uuid":"{head}","peer":"12D3KooWNYdFk6mqFLJDiBCX2g5CT6TQWqYjfW5rnJs2qeCNt61H"}}"#)
                .into_bytes(),
            400,
            "commit it before pushing",
        ),
        (
            "POST",
            "/api/p2p/push".into(),
            format!(r#"{{"uuid":"{locked}","peer":"12D3KooWNYdFk6mqFLJDiBCX2g5CT6TQWqYjfW5rnJs2qeCNt61H"}}"#)
                .into_bytes(),
            400,
            "not shared with peer",
        ),
        (
            "GET",
            format!("/api/node/{locked}/nosuch/diff/{head}"),
            vec![],
            404,
            "no data instance",
        ),
        ("DELETE", "/api/repos/info".into(), vec![], 405, "it takes: GET"),
        ("PUT", format!("/api/node/{head}/commit"), vec![], 405, "not allowed"),
    ];
    let total = cases.len();
    for (method, path, body, status, words) in cases {
        let r = match method {
            "GET" => n.get_body(&path, body),
            "DELETE" => n.delete(&path),
            "PUT" => n.put(&path, body),
            _ => n.post(&path, body),
        };
        let got = r.status().as_u16();
        let text = r.text().unwrap_or_default();
        assert_eq!(
            got, status,
            "{method} {path}: expected {status}, got {got}: {text}"
        );
        assert!(
            text.to_lowercase().contains(&words.to_lowercase()),
            "{method} {path}: message {text:?} lacks {words:?}"
        );
        assert!(
            !text.trim().is_empty() || status == 413,
            "{method} {path}: empty message"
        );
        assert!(
            !text.contains("Uuid(") && !text.contains(" { "),
            "{method} {path}: Rust debug text in {text:?}"
        );
    }
    println!("{total} bad requests refused with the expected 4xx");
    // Nothing was lost or changed, and the node still serves.
    assert_eq!(n.get_bytes(&g("raw/0_1_2/8_8_8/0_0_0")), vec![5; 512]);
    assert_eq!(n.get(&format!("/api/node/{head}/kv/key/a")).status(), 404);
    let nodes = n.get_json(&format!("/api/repo/{root}/info"))["DAG"]["Nodes"]
        .as_object()
        .unwrap()
        .len();
    assert_eq!(nodes, 2);
}

#[test]
fn http_answers_end_with_a_newline_and_help_lists_every_route() {
    let dir = tempfile::tempdir().unwrap();
    let n = Node::start(dir.path(), &[]);
    let root = n.new_repo("newlines");
    for path in [
        "/api/server/info".to_string(),
        "/api/repos/info".into(),
        format!("/api/repo/{root}/info"),
        "/api/p2p/info".into(),
        "/api/p2p/jobs".into(),
        "/api/help".into(),
        "/api/nosuch".into(),
    ] {
        let text = n.get(&path).text().unwrap();
        assert!(
            text.ends_with('\n'),
            "GET {path}: no final newline in {text:?}"
        );
    }
    let help = n.get("/api/help").text().unwrap();
    for route in [
        "/api/p2p/pull",
        "/api/p2p/jobs/{job}/cancel",
        "/api/p2p/push",
        "/api/p2p/unfollow",
        "/api/repo/{uuid}/unshare",
        "/api/node/{uuid}/unpublish",
        "/diff/{b}",
        "/api/p2p/peers",
    ] {
        assert!(help.contains(route), "/api/help lacks {route}");
    }
}
