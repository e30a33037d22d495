//! The laptop's round trip, between real `dvid` processes: a server holds a 512×512×256 volume; a
//! laptop pulls a 128³ region of it, edits inside the region while the server is down, commits, and
//! hands the version back when the server returns (`dvid push`), voxel for voxel. A third node pulls
//! the laptop's version from the laptop (its edits) and the server (the rest); a node that can reach
//! only the laptop is told at once which part nobody it reaches holds, and can take the part the
//! laptop holds. A second laptop's disjoint edit reaches the server by `follow`, and the server
//! merges both versions conflict-free.

use dvid_tests::{Node, free_port, json, test_volume};
use std::time::{Duration, Instant};

const SIZE: [usize; 3] = [512, 512, 256];

fn whole(uuid: &str) -> String {
    format!(
        "/api/node/{uuid}/grayscale/raw/0_1_2/{}_{}_{}/0_0_0",
        SIZE[0], SIZE[1], SIZE[2]
    )
}

/// Writes `value` into `vol` over the box at `off` of edge `n`.
fn paint(vol: &mut [u8], off: [usize; 3], n: usize, value: u8) {
    for z in off[2]..off[2] + n {
        for y in off[1]..off[1] + n {
            let row = (z * SIZE[1] + y) * SIZE[0];
            vol[row + off[0]..row + off[0] + n].fill(value);
        }
    }
}

fn edit(laptop: &Node, version: &str, off: [usize; 3], n: usize, value: u8) {
    laptop.post_bytes(
        &format!(
            "/api/node/{version}/grayscale/raw/0_1_2/{n}_{n}_{n}/{}_{}_{}",
            off[0], off[1], off[2]
        ),
        vec![value; n * n * n],
    );
}

fn share(from: &Node, root: &str, to: &Node) {
    from.post_json(
        &format!("/api/repo/{root}/share"),
        json!({"peers": [to.peer_id()]}),
    );
}

fn connected(n: &Node, peer: &str) -> bool {
    n.get_json("/api/p2p/info")["connected_peers"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p == peer)
}

#[test]
fn p2p_laptop_edits_come_back_and_merge() {
    let port = free_port();
    let listen = format!("/ip4/127.0.0.1/tcp/{port}");
    let ds = tempfile::tempdir().unwrap();
    let server = Node::start(ds.path(), &["--listen", &listen]);
    let server_id = server.peer_id();
    let root = server.new_repo("lab");
    server.new_instance(
        &root,
        "uint8blk",
        "grayscale",
        json!({"BlockSize": "64,64,64"}),
    );
    let original = test_volume(SIZE, 7);
    server.post_bytes(&whole(&root), original.clone());
    server.commit(&root);
    let server_addr = server.p2p_addr();

    // Laptop 1 takes a 128^3 region (8 of the 256 blocks) with it.
    let dl1 = tempfile::tempdir().unwrap();
    let laptop = Node::start_p2p(dl1.path(), &["--peer", &server_addr]);
    share(&server, &root, &laptop);
    laptop.wait_offered(&root);
    let (ok, out, err) = laptop.cli(&["pull", &root, "--region", "128,128,64:128,128,128"]);
    assert!(ok, "laptop region pull: {out}{err}");
    // The laptop's instance info shows the part it holds, so a viewer asks only for that.
    let info = laptop.get_json(&format!("/api/node/{root}/grayscale/info"));
    assert_eq!(info["Extended"]["MinPoint"], json!([128, 128, 64]));
    assert_eq!(info["Extended"]["MaxPoint"], json!([255, 255, 191]));
    // Its Zarr view serves the blocks it holds as the server wrote them, and answers 404 for
    // those it does not hold, saying so: never zeros passed off as the version's voxels.
    let chunk = laptop.get(&format!("/api/node/{root}/grayscale/zarr/c/1/2/2"));
    assert_eq!(chunk.status(), 200);
    let voxels = zstd::decode_all(&chunk.bytes().unwrap()[..]).unwrap();
    let block = laptop.get_bytes(&format!(
        "/api/node/{root}/grayscale/raw/0_1_2/64_64_64/128_128_64"
    ));
    assert!(
        voxels == block,
        "the Zarr chunk differs from raw of its block"
    );
    let missing = laptop.get(&format!("/api/node/{root}/grayscale/zarr/c/0/0/0"));
    assert_eq!(missing.status(), 404);
    assert!(missing.text().unwrap().contains("partial replica"));

    // Offline: the server stops; the laptop edits inside its region and commits.
    assert!(server.stop());
    let c1 = laptop.new_version(&root);
    edit(&laptop, &c1, [150, 150, 80], 32, 7);
    let (ok, out, err) = laptop.cli(&["commit", &c1, "--note", "edited on the train"]);
    assert!(ok, "{out}{err}");
    let (ok, out, err) = laptop.cli(&["share", &root, &server_id]);
    assert!(ok, "{out}{err}");
    let mut expected1 = original.clone();
    paint(&mut expected1, [150, 150, 80], 32, 7);

    // The server comes back at the same address; the laptop reconnects by itself.
    let server = Node::start(ds.path(), &["--listen", &listen]);
    laptop.wait_until("the laptop to reconnect to the server", 30, |n| {
        connected(n, &server_id).then_some(())
    });

    // A third node reaching both pulls the laptop's version whole: the edit from the laptop, the
    // rest from the server, which holds the parent.
    let dt = tempfile::tempdir().unwrap();
    let laptop_addr = laptop.p2p_addr();
    let third = Node::start(dt.path(), &["--peer", &server_addr, "--peer", &laptop_addr]);
    share(&server, &root, &third);
    share(&laptop, &root, &third);
    third.wait_offered(&c1);
    let st = third.pull(json!({"uuid": c1}));
    assert_eq!(st["state"], "done", "{st}");
    assert!(
        third.get_bytes(&whole(&c1)) == expected1,
        "the third node's copy differs"
    );

    // A node that reaches only the laptop is told at once what nobody it reaches holds...
    let du = tempfile::tempdir().unwrap();
    let lonely = Node::start(du.path(), &["--peer", &laptop_addr]);
    share(&laptop, &root, &lonely);
    lonely.wait_offered(&c1);
    let heads = lonely.get_json("/api/p2p/heads");
    let head = heads
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["uuid"] == c1.as_str())
        .unwrap();
    assert_eq!(
        head["partial"][laptop.peer_id()],
        json!([{"instances": null, "region": {"min": [128, 128, 64], "max": [255, 255, 191]}}]),
        "{heads}"
    );
    let t = Instant::now();
    let st = lonely.pull(json!({"uuid": c1}));
    assert_eq!(st["state"], "failed", "{st}");
    let error = st["error"].as_str().unwrap();
    assert!(error.contains("no reachable peer holds"), "{error}");
    assert!(error.contains("\"grayscale\""), "{error}");
    assert!(
        !error.contains("Uuid(") && !error.contains("Node {"),
        "{error}"
    );
    assert!(
        t.elapsed() < Duration::from_secs(20),
        "failed only after {:?}",
        t.elapsed()
    );
    // ...and can take what the laptop holds, as a partial replica.
    let st = lonely
        .pull(json!({"uuid": c1, "region": {"offset": [128, 128, 64], "size": [128, 128, 128]}}));
    assert_eq!(st["state"], "done", "{st}");
    let inside = format!("/api/node/{c1}/grayscale/raw/0_1_2/64_64_64/140_140_70");
    assert!(lonely.get_bytes(&inside) == laptop.get_bytes(&inside));

    // The README's command hands the version back.
    let (ok, out, err) = laptop.cli(&["push", &c1, "--to", &server_id]);
    assert!(ok, "push: {out}{err}");
    assert!(
        server.get_bytes(&whole(&c1)) == expected1,
        "the server's copy differs"
    );

    // Laptop 2 edits a disjoint region; the server follows the repo and picks it up by itself.
    let dl2 = tempfile::tempdir().unwrap();
    let laptop2 = Node::start_p2p(dl2.path(), &["--peer", &server_addr]);
    share(&server, &root, &laptop2);
    laptop2.wait_offered(&root);
    let st = laptop2
        .pull(json!({"uuid": root, "region": {"offset": [0, 0, 0], "size": [128, 128, 128]}}));
    assert_eq!(st["state"], "done", "{st}");
    let c2 = laptop2.branch(&root, "laptop-2");
    edit(&laptop2, &c2, [10, 20, 30], 40, 200);
    laptop2.commit(&c2);
    share(&laptop2, &root, &server);
    let (ok, out, err) = server.cli(&["follow", &root]);
    assert!(ok, "follow: {out}{err}");
    server.wait_until("the followed laptop version", 60, |n| {
        n.get(&whole(&c2)).status().is_success().then_some(())
    });
    let mut expected2 = original.clone();
    paint(&mut expected2, [10, 20, 30], 40, 200);
    assert!(server.get_bytes(&whole(&c2)) == expected2);

    // Both laptops' work merges on the server.
    let (ok, merged, err) = server.cli(&["merge", &c1, &c2, "--note", "both laptops"]);
    assert!(ok, "merge: {merged}{err}");
    let merged = merged.trim();
    let mut both = expected1;
    paint(&mut both, [10, 20, 30], 40, 200);
    assert!(
        server.get_bytes(&whole(merged)) == both,
        "the merge lost an edit"
    );
    assert!(server.stop());
    let out = std::process::Command::new(dvid_tests::dvid_bin())
        .args(["fsck", "--data-dir"])
        .arg(ds.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
