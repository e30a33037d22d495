//! labelmap through a real node, as neuclease calls it: write supervoxels, read mapped and
//! unmapped voxels, merge, cleave, sizes, sparse volumes, label indices (DVID's protobuf), label
//! allocation, mutations; bad input gets a 4xx with a message and changes nothing; a locked
//! version refuses edits.

use dvid_store::types::labelmap::proto::{LabelIndex, LabelIndices};
use dvid_tests::{Node, Value, json};
use prost::Message;

/// 64³ voxels in 32³ blocks: supervoxel 1 + (x ≥ 32) + 2·(y ≥ 32) + 4·(z ≥ 32).
fn octants() -> Vec<u8> {
    let mut v = Vec::with_capacity(64 * 64 * 64 * 8);
    for z in 0..64u64 {
        for y in 0..64u64 {
            for x in 0..64u64 {
                v.extend_from_slice(&(1 + x / 32 + 2 * (y / 32) + 4 * (z / 32)).to_le_bytes());
            }
        }
    }
    v
}

fn start() -> (tempfile::TempDir, Node, String) {
    let dir = tempfile::tempdir().unwrap();
    let n = Node::start(dir.path(), &[]);
    let root = n.new_repo("proofread");
    n.new_instance(&root, "labelmap", "seg", json!({"BlockSize": "32,32,32"}));
    n.post_bytes(
        &format!("/api/node/{root}/seg/raw/0_1_2/64_64_64/0_0_0"),
        octants(),
    );
    (dir, n, root)
}

fn labels(n: &Node, path: &str, body: Value) -> Value {
    let r = n.get_body(path, body.to_string());
    assert_eq!(r.status(), 200, "{path}");
    r.json().unwrap()
}

#[test]
fn labelmap_proofreading_calls_as_neuclease_makes_them() {
    let (_d, n, root) = start();
    let at = |p: &str| format!("/api/node/{root}/seg/{p}");
    let info = n.get_json(&at("info"));
    assert_eq!(info["Base"]["TypeName"], "labelmap");
    assert_eq!(info["Extended"]["IndexedLabels"], true);
    assert_eq!(info["Extended"]["MaxDownresLevel"], 0);
    assert_eq!(n.get_json(&at("maxlabel"))["maxlabel"], 8);

    let m = n.post_json(&format!("{}?u=ann&app=test", at("merge")), json!([1, 2, 3]));
    assert_eq!(m["MutationID"], 1);
    assert_eq!(
        labels(&n, &at("mapping"), json!([1, 2, 3, 4, 99])),
        json!([1, 1, 1, 4, 0])
    );
    assert_eq!(
        labels(&n, &at("sizes"), json!([1, 4])),
        json!([3 * 32768, 32768])
    );
    assert_eq!(
        labels(&n, &format!("{}?supervoxels=true", at("sizes")), json!([2])),
        json!([32768])
    );
    assert_eq!(n.get_json(&at("supervoxels/1")), json!([1, 2, 3]));
    assert_eq!(n.get_json(&at("label/40_0_0"))["Label"], 1);
    assert_eq!(n.get_json(&at("label/40_0_0?supervoxels=true"))["Label"], 2);
    assert_eq!(n.get_json(&at("lastmod/1"))["last mod user"], "ann");
    assert_eq!(n.get(&at("mappings")).text().unwrap(), "2 1\n3 1\n");

    // Voxels read as bodies, or as supervoxels.
    let voxel = |q: &str| {
        let b = n.get_bytes(&at(&format!("raw/0_1_2/1_1_1/40_0_0{q}")));
        u64::from_le_bytes(b.try_into().unwrap())
    };
    assert_eq!((voxel(""), voxel("?supervoxels=true")), (1, 2));

    // The label index is DVID's protobuf, block keys as DVID encodes them.
    let idx = LabelIndex::decode(&n.get_bytes(&at("index/1"))[..]).unwrap();
    assert_eq!(
        (idx.label, idx.last_mutid, idx.voxels(None)),
        (1, 1, 3 * 32768)
    );
    assert!(idx.blocks.contains_key(&(1 << 21)), "block (0,1,0)");
    let r = n.get_body(&at("indices"), "[1, 42]");
    let many = LabelIndices::decode(r.bytes().unwrap()).unwrap();
    assert_eq!(many.indices.len(), 2);
    assert!(many.indices[1].blocks.is_empty() && many.indices[1].label == 42);

    // Sparse volumes: RLEs with DVID's 12-byte header; coarse ones in block coordinates.
    let rles = n.get_bytes(&at("sparsevol/4"));
    assert_eq!(&rles[..4], &[0, 3, 0, 0]);
    let runs = u32::from_le_bytes(rles[8..12].try_into().unwrap()) as usize;
    assert_eq!((runs, rles.len()), (32 * 32, 12 + 16 * 32 * 32));
    let coarse = n.get_bytes(&at("sparsevol-coarse/1"));
    // Blocks (0..1, 0, 0) and (0, 1, 0): two runs.
    assert_eq!(u32::from_le_bytes(coarse[8..12].try_into().unwrap()), 2);
    assert_eq!(n.head(&at("sparsevol/4")).status(), 200);
    assert_eq!(n.head(&at("sparsevol/2")).status(), 204);
    let size = n.get_json(&at("sparsevol-size/4"));
    assert_eq!(size["maxvoxel"], json!([63, 63, 31]));
    // At scale 1 (level seg_1, 32³ voxels), in that level's voxels.
    let d = n.post_json(&format!("{}?levels=1", at("downres")), json!({}));
    assert_eq!(d["levels"][0]["name"], "seg_1", "{d}");
    let scaled = n.get_bytes(&at("sparsevol/4?scale=1"));
    let run = |i: usize| -> Vec<i32> {
        (0..4)
            .map(|k| i32::from_le_bytes(scaled[12 + 16 * i + 4 * k..][..4].try_into().unwrap()))
            .collect()
    };
    assert_eq!(
        u32::from_le_bytes(scaled[8..12].try_into().unwrap()),
        16 * 16
    );
    assert_eq!(
        (run(0), run(255)),
        (vec![16, 16, 0, 16], vec![16, 31, 15, 16])
    );
    assert_eq!(n.get_json(&at("label/20_20_0?scale=1"))["Label"], 4);
    assert_eq!(
        n.get_json(&at("label/20_0_0?scale=1"))["Label"],
        1,
        "supervoxel 2 is body 1"
    );
    assert_eq!(
        n.get_json(&at("label/20_0_0?scale=1&supervoxels=true"))["Label"],
        2
    );

    let c = n.post_json(&at("cleave/1"), json!([3]));
    assert_eq!(
        (c["CleavedLabel"].as_u64(), c["MutationID"].as_u64()),
        (Some(9), Some(2))
    );
    assert_eq!(labels(&n, &at("mapping"), json!([3])), json!([9]));
    let next = n.post_json(&at("nextlabel/5"), json!({}));
    assert_eq!(
        (next["start"].as_u64(), next["end"].as_u64()),
        (Some(10), Some(14))
    );
    assert_eq!(n.get_json(&at("nextlabel"))["nextlabel"], 15);
    let muts = n.get_json(&at("mutations"));
    let actions: Vec<&str> = muts
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["Action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["merge-complete", "cleave-complete"]);

    // A locked version's segmentation never changes.
    n.commit(&root);
    let r = n.post(&at("merge"), "[1, 4]");
    assert_eq!(r.status(), 400);
    assert!(r.text().unwrap().contains("locked"));
}

#[test]
fn labelmap_bad_input_is_a_4xx_with_a_message_and_changes_nothing() {
    let (_d, n, root) = start();
    let at = |p: &str| format!("/api/node/{root}/seg/{p}");
    let cases: &[(&str, &str, &str, u16, &str)] = &[
        ("POST", "merge", "[1, 1]", 400, "into itself"),
        ("POST", "merge", "[1]", 400, "at least one"),
        ("POST", "merge", "[]", 400, "empty list"),
        ("POST", "merge", "[1, 42]", 400, "body 42 has no voxels"),
        ("POST", "merge", "{\"a\": 1}", 400, "JSON list"),
        ("POST", "cleave/1", "[2]", 400, "not in body 1"),
        ("POST", "cleave/1", "[1]", 400, "leave it empty"),
        ("POST", "cleave/0", "[1]", 400, "background"),
        ("POST", "cleave/x", "[1]", 400, "positive 64-bit"),
        ("POST", "nextlabel/0", "", 400, "at least 1"),
        ("GET", "size/42", "", 404, "no voxels"),
        ("GET", "supervoxels/42", "", 404, "no voxels"),
        ("GET", "index/42", "", 404, "no voxels"),
        ("GET", "sparsevol/42", "", 404, "no voxels"),
        ("GET", "sparsevol/1?format=zip", "", 400, "rles"),
        ("GET", "sparsevol/1?scale=2", "", 400, "downres"),
        ("GET", "label/1_1_1?scale=x", "", 400, "level number"),
        ("GET", "mapping?nolookup=maybe", "[1]", 400, "true or false"),
        ("GET", "mappings?format=csv", "", 400, "binary"),
        ("GET", "raw/0_1_2/8_8_8/0_0_0?scale=3", "", 400, "downres"),
    ];
    for &(method, path, body, status, want) in cases {
        let r = match method {
            "POST" => n.post(&at(path), body.to_string()),
            _ => n.get_body(&at(path), body.to_string()),
        };
        assert_eq!(r.status().as_u16(), status, "{method} {path}");
        let text = r.text().unwrap();
        assert!(
            text.contains(want),
            "{method} {path}: {text:?} lacks {want:?}"
        );
    }
    let r = n.get(&at("mappings"));
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().unwrap().trim(), "", "no supervoxel is mapped");
    assert_eq!(n.get_json(&at("mutations")), json!([]));
    assert_eq!(
        labels(&n, &at("sizes"), json!([1, 2])),
        json!([32768, 32768])
    );
}

/// Splits a block stream: `i32 bx, by, bz`, `u32` length, payload.
fn frames(stream: &[u8]) -> Vec<([i32; 3], Vec<u8>)> {
    let mut out = Vec::new();
    let mut rest = stream;
    while !rest.is_empty() {
        let word = |i: usize| i32::from_le_bytes(rest[4 * i..4 * i + 4].try_into().unwrap());
        let (b, len) = ([word(0), word(1), word(2)], word(3) as usize);
        out.push((b, rest[16..16 + len].to_vec()));
        rest = &rest[16 + len..];
    }
    out
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(bytes), &mut out).unwrap();
    out
}

#[test]
fn labelmap_blocks_stream_in_dvids_label_block_format() {
    let (_d, n, root) = start();
    let at = |p: &str| format!("/api/node/{root}/seg/{p}");
    n.post_json(&at("merge"), json!([1, 2]));

    // Each octant is one solid 32³ block: DVID's Block is gx, gy, gz (sub-blocks of 8³), one
    // label count and the label, 24 bytes, gzipped.
    let svs = frames(&n.get_bytes(&at(
        "blocks/64_64_64/0_0_0?compression=blocks&supervoxels=true",
    )));
    assert_eq!(svs.len(), 8);
    for (b, payload) in &svs {
        let block = gunzip(payload);
        let sv = 1 + b[0] + 2 * b[1] + 4 * b[2];
        let mut want = [4u32, 4, 4, 1].map(u32::to_le_bytes).concat();
        want.extend_from_slice(&(sv as u64).to_le_bytes());
        assert_eq!(block, want, "block {b:?}");
    }
    // specificblocks defaults to Blocks, of bodies: block (1,0,0) is supervoxel 2, now body 1.
    let one = frames(&n.get_bytes(&at("specificblocks?blocks=1,0,0,9,9,9")));
    assert_eq!(one.len(), 1, "only stored blocks are sent");
    assert_eq!(gunzip(&one[0].1)[16..], 1u64.to_le_bytes());
    // blocks defaults to lz4 of the u64 labels.
    let lz4 = frames(&n.get_bytes(&at("blocks/32_32_32/32_0_0")));
    let voxels = lz4_flex::block::decompress(&lz4[0].1, 32 * 32 * 32 * 8).unwrap();
    assert!(voxels.chunks(8).all(|l| l == 1u64.to_le_bytes()));

    // The stream written to a second labelmap gives the same supervoxels and label indices.
    n.new_instance(&root, "labelmap", "copy", json!({"BlockSize": "32,32,32"}));
    let stream = n.get_bytes(&at(
        "blocks/64_64_64/0_0_0?compression=blocks&supervoxels=true",
    ));
    let copy = |p: &str| format!("/api/node/{root}/copy/{p}");
    assert_eq!(n.post(&copy("blocks"), stream.clone()).status(), 200);
    let whole = "raw/0_1_2/64_64_64/0_0_0?supervoxels=true";
    assert!(n.get_bytes(&copy(whole)) == n.get_bytes(&at(whole)));
    assert_eq!(
        labels(&n, &copy("sizes"), json!([1, 8])),
        json!([32768, 32768])
    );

    // Bad streams are refused whole, with a reason, and write nothing.
    n.new_instance(&root, "labelmap", "empty", json!({"BlockSize": "32,32,32"}));
    let empty = |p: &str| format!("/api/node/{root}/empty/{p}");
    let mut twice = stream[..16 + svs[0].1.len()].to_vec();
    twice.extend_from_slice(&twice.clone());
    let mut wrong_size = [0i32, 0, 0].map(i32::to_le_bytes).concat();
    let mut small = [2u32, 2, 2, 1].map(u32::to_le_bytes).concat();
    small.extend_from_slice(&5u64.to_le_bytes());
    let gz = {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut e, &small).unwrap();
        e.finish().unwrap()
    };
    wrong_size.extend_from_slice(&(gz.len() as u32).to_le_bytes());
    wrong_size.extend_from_slice(&gz);
    let mut not_gzip = stream[..16].to_vec();
    not_gzip[12..16].copy_from_slice(&4u32.to_le_bytes());
    not_gzip.extend_from_slice(b"junk");
    let bad: &[(&str, Vec<u8>, &str)] = &[
        (
            "blocks",
            stream[..stream.len() - 3].to_vec(),
            "but the stream has",
        ),
        ("blocks", twice, "twice"),
        ("blocks", wrong_size, "block [0, 0, 0]"),
        ("blocks", not_gzip, "block [0, 0, 0]"),
        (
            "blocks?compression=lz4",
            stream.clone(),
            "gzipped label Blocks",
        ),
        ("blocks?scale=1&downres=true", stream.clone(), "scale 0"),
    ];
    for (path, body, want) in bad {
        let r = n.post(&empty(path), body.clone());
        assert_eq!(r.status(), 400, "{path}");
        let text = r.text().unwrap();
        assert!(text.contains(want), "{path}: {text:?} lacks {want:?}");
    }
    assert_eq!(labels(&n, &empty("sizes"), json!([1])), json!([0]));
    for (path, want) in [
        ("blocks/64_64_64/16_0_0", "block-aligned"),
        ("blocks/64_64_64/0_0_0?compression=png", "compression"),
        ("specificblocks", "blocks="),
    ] {
        let r = n.get(&at(path));
        assert_eq!(r.status(), 400, "{path}");
        assert!(r.text().unwrap().contains(want), "{path}");
    }
}

/// DVID's RLE body, as neuclease's `construct_rle_payload_from_ranges` builds it.
fn rles(runs: &[[i32; 4]]) -> Vec<u8> {
    let mut out = vec![0, 3, 0, 0, 0, 0, 0, 0];
    out.extend_from_slice(&(runs.len() as u32).to_le_bytes());
    for r in runs {
        for v in r {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
    out
}

#[test]
fn labelmap_split_mappings_listings_as_neuclease_calls_them() {
    use dvid_store::types::labelmap::proto::{MappingOp, MappingOps};
    let (_d, n, root) = start();
    let at = |p: &str| format!("/api/node/{root}/seg/{p}");
    n.post_json(&at("merge"), json!([1, 2]));

    // split-supervoxel: the first 8 voxels of each row of z = 0 in supervoxel 2 (x 32..63).
    let runs: Vec<[i32; 4]> = (0..32).map(|y| [32, y, 0, 8]).collect();
    let r = n.post(&at("split-supervoxel/2"), rles(&[[32, 0, 0, 0]]));
    assert_eq!(r.status(), 400, "a run of length 0");
    let r = n.post(&format!("{}?u=ann", at("split-supervoxel/2")), rles(&runs));
    assert_eq!(r.status(), 200);
    let s: Value = r.json().unwrap();
    let (split, remain) = (
        s["SplitSupervoxel"].as_u64().unwrap(),
        s["RemainSupervoxel"].as_u64().unwrap(),
    );
    assert!(s["MutationID"].as_u64().is_some(), "{s}");
    assert_eq!(
        labels(&n, &at("mapping"), json!([2, split, remain])),
        json!([0, 1, 1])
    );
    assert_eq!(
        labels(
            &n,
            &format!("{}?supervoxels=true", at("sizes")),
            json!([split, remain])
        ),
        json!([8 * 32, 32768 - 8 * 32])
    );
    assert_eq!(
        n.get_json(&at("label/33_0_0?supervoxels=true"))["Label"],
        split
    );
    assert_eq!(n.get_json(&at("label/33_0_0"))["Label"], 1);
    let splits = n.get_json(&at("supervoxel-splits"));
    assert_eq!(splits, json!([root, [[s["MutationID"], 2, remain, split]]]));
    let actions = n.get_json(&at("mutations"));
    assert_eq!(actions[1]["Action"], "split-supervoxel-complete");
    assert_eq!(actions[1]["User"], "ann");
    // history: the records naming a label between two versions (here one).
    let h = n.get_json(&at(&format!("history/2/{root}/{root}")));
    assert_eq!(h, actions, "both the merge and the split name supervoxel 2");
    assert_eq!(
        n.get_json(&at(&format!("history/{split}/{root}/{root}"))),
        json!([actions[1]])
    );
    assert_eq!(
        n.get_json(&at(&format!("history/4/{root}/{root}"))),
        json!([])
    );

    // POST mappings (DVID's MappingOps): supervoxels 3 and 4 join body 5; their counts move.
    let ops = MappingOps {
        mappings: vec![MappingOp {
            mutid: 77,
            mapped: 5,
            original: vec![3, 4],
        }],
    };
    assert_eq!(
        n.post(&at("mappings"), prost::Message::encode_to_vec(&ops))
            .status(),
        200
    );
    assert_eq!(
        labels(&n, &at("mapping"), json!([3, 4, 5])),
        json!([5, 5, 5])
    );
    assert_eq!(
        labels(&n, &at("sizes"), json!([5, 3])),
        json!([3 * 32768, 0])
    );
    assert_eq!(n.get_json(&at("supervoxels/5")), json!([3, 4, 5]));

    // listlabels: bodies from `start`, u64 LE, with sizes as pairs.
    let words = |b: Vec<u8>| -> Vec<u64> {
        b.chunks(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
            .collect()
    };
    assert_eq!(words(n.get_bytes(&at("listlabels"))), vec![1, 5, 6, 7, 8]);
    assert_eq!(
        words(n.get_bytes(&at("listlabels?start=5&number=2&sizes=true"))),
        vec![5, 3 * 32768, 6, 32768]
    );

    // indices-compressed: u64 length, u64 label, 0x80, u32 size, an LZ4 block of the LabelIndex.
    let r = n.get_body(&at("indices-compressed"), "[5, 42]");
    assert_eq!(r.status(), 200);
    let bytes = r.bytes().unwrap();
    let len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    assert_eq!(u64::from_le_bytes(bytes[8..16].try_into().unwrap()), 5);
    let stored = &bytes[16..16 + len];
    assert_eq!(stored[0], 0x80);
    let size = u32::from_le_bytes(stored[1..5].try_into().unwrap()) as usize;
    let pb = lz4_flex::block::decompress(&stored[5..], size).unwrap();
    let idx = LabelIndex::decode(&pb[..]).unwrap();
    assert_eq!((idx.label, idx.voxels(None)), (5, 3 * 32768));
    assert_eq!(pb, n.get_bytes(&at("index/5")));
    let rest = &bytes[16 + len..];
    assert_eq!(rest, [0u64.to_le_bytes(), 42u64.to_le_bytes()].concat());

    // Bad input: a 4xx with a message, and nothing changed.
    let before = n.get_bytes(&at("mappings"));
    let cases: &[(&str, Vec<u8>, u16, &str)] = &[
        ("split-supervoxel/6", vec![0, 3, 0], 400, "12-byte header"),
        (
            "split-supervoxel/6",
            rles(&[[0, 32, 0, 4]])[..20].to_vec(),
            400,
            "1 runs",
        ),
        (
            "split-supervoxel/6",
            rles(&[[0, 0, 0, 4]]),
            400,
            "where supervoxel 6 has no voxels",
        ),
        ("split-supervoxel/6", rles(&[]), 400, "no voxels"),
        (
            "split-supervoxel/99",
            rles(&[[0, 0, 0, 1]]),
            404,
            "no voxels",
        ),
        (
            "split-supervoxel/2",
            rles(&[[32, 0, 0, 1]]),
            400,
            "split before",
        ),
        (
            "split-supervoxel/6?split=7",
            rles(&[[32, 0, 32, 1]]),
            400,
            "in use",
        ),
        (
            "split-supervoxel/6?split=x",
            rles(&[[32, 0, 32, 1]]),
            400,
            "64-bit label",
        ),
        ("mappings", b"\xff\xff\xff".to_vec(), 400, "MappingOps"),
        (
            "mappings",
            prost::Message::encode_to_vec(&MappingOps {
                mappings: vec![MappingOp {
                    mutid: 1,
                    mapped: 0,
                    original: vec![6],
                }],
            }),
            400,
            "mapping to 0",
        ),
    ];
    for (path, body, status, want) in cases {
        let r = n.post(&at(path), body.clone());
        assert_eq!(r.status().as_u16(), *status, "{path}");
        let text = r.text().unwrap();
        assert!(text.contains(want), "{path}: {text:?} lacks {want:?}");
    }
    let r = n.post(
        &at(&format!("split-supervoxel/{remain}")),
        rles(&[[32, 0, 0, 2]]),
    );
    assert_eq!(r.status(), 400);
    assert!(
        r.text()
            .unwrap()
            .contains(&format!("is supervoxel {split}"))
    );
    for (path, want) in [
        ("listlabels?number=x", "non-negative"),
        ("listlabels?sizes=maybe", "true or false"),
    ] {
        let r = n.get(&at(path));
        assert_eq!(r.status(), 400, "{path}");
        assert!(r.text().unwrap().contains(want), "{path}");
    }
    assert_eq!(
        n.get_bytes(&at("mappings")),
        before,
        "refused edits changed the mapping"
    );
    assert_eq!(
        labels(&n, &format!("{}?supervoxels=true", at("sizes")), json!([6])),
        json!([32768])
    );
}

/// NeuTu's calls (its `ZDvidReader`/`ZDvidWriter` and cleave protocol, every URL with `u` and
/// `app`): a click reads `label`, `lastmod` tells whether cached meshes are stale, a supervoxel
/// is checked with `HEAD sparsevol?supervoxels=true` and loaded with `sparsevol` over a z range
/// (`exact`), the body's size bounds a cleave, each cleaved group is one `cleave`, and a
/// supervoxel split into several pieces is one `split-supervoxel` per piece on the remainder.
#[test]
fn labelmap_calls_as_neutu_makes_them() {
    let (_d, n, root) = start();
    let at = |p: &str| format!("/api/node/{root}/seg/{p}?u=neutu&app=NeuTu");
    let and = |p: &str, q: &str| format!("/api/node/{root}/seg/{p}?{q}&u=neutu&app=NeuTu");
    assert_eq!(n.get_json(&at("label/40_0_0"))["Label"], 2);
    assert_eq!(n.post(&at("merge"), "[1, 2, 3, 4]").status(), 200);
    let lastmod = n.get_json(&at("lastmod/1"));
    for field in [
        "mutation id",
        "last mod user",
        "last mod app",
        "last mod time",
    ] {
        assert!(
            !lastmod[field].is_null(),
            "lastmod lacks {field:?}: {lastmod}"
        );
    }
    assert_eq!(lastmod["last mod app"], "NeuTu");
    assert_eq!(
        n.head(&and("sparsevol/2", "supervoxels=true")).status(),
        200
    );
    assert_eq!(
        n.head(&and("sparsevol/99", "supervoxels=true")).status(),
        204
    );
    let slab = n.get_bytes(&and("sparsevol/1", "minz=10&maxz=11&exact=false"));
    let runs = u32::from_le_bytes(slab[8..12].try_into().unwrap());
    assert_eq!(
        runs,
        2 * 64,
        "two z planes of 64 rows, each one run across x"
    );
    let size = n.get_json(&at("size/1"))["voxels"].as_u64().unwrap();
    assert_eq!(size, 4 * 32768);
    // Cleave two groups off body 1, one POST each.
    let g1 = n.post_json(&at("cleave/1"), json!([2]));
    let g2 = n.post_json(&at("cleave/1"), json!([3, 4]));
    assert!(g1["CleavedLabel"] != g2["CleavedLabel"] && g2["MutationID"].is_u64());
    assert_eq!(
        labels(
            &n,
            &at("sizes"),
            json!([1, g1["CleavedLabel"], g2["CleavedLabel"]])
        ),
        json!([32768, 32768, 2 * 32768])
    );
    // Split supervoxel 5 into three pieces: each split is of what remained of the last.
    let mut remainder = 5u64;
    let mut pieces = Vec::new();
    for z in [0, 1] {
        let runs: Vec<[i32; 4]> = (0..32).map(|y| [0, y, 32 + z, 32]).collect();
        let r = n.post(&at(&format!("split-supervoxel/{remainder}")), rles(&runs));
        assert_eq!(r.status(), 200);
        let s: Value = r.json().unwrap();
        pieces.push(s["SplitSupervoxel"].as_u64().unwrap());
        remainder = s["RemainSupervoxel"].as_u64().unwrap();
    }
    pieces.push(remainder);
    assert_eq!(
        labels(&n, &and("sizes", "supervoxels=true"), json!(pieces)),
        json!([1024, 1024, 32768 - 2048])
    );
    assert_eq!(labels(&n, &at("mapping"), json!(pieces)), json!([5, 5, 5]));

    // NeuTu loads bodies as `format=blocks`: the same voxels as the RLEs, a whole block flagged
    // whole, bounds choosing whole blocks.
    let blocks = |q: &str| block_voxels(&n.get_bytes(&and("sparsevol/5", q)));
    let (whole, count) = blocks("format=blocks");
    assert_eq!((whole, count.len()), (1, 32768));
    let piece = format!("sparsevol/{}", pieces[0]);
    let (whole, voxels) =
        block_voxels(&n.get_bytes(&and(&piece, "format=blocks&supervoxels=true")));
    assert_eq!(whole, 0);
    assert_eq!(
        voxels,
        rle_voxels(&n.get_bytes(&and(&piece, "supervoxels=true")))
    );
    assert_eq!(voxels.len(), 1024);
    let bounded = |q: &str| block_voxels(&n.get_bytes(&and("sparsevol/1", q))).1;
    assert_eq!(bounded("format=blocks&minz=10&maxz=11").len(), 32768);
    assert_eq!(
        bounded("format=blocks&minz=10&maxz=11"),
        rle_voxels(&n.get_bytes(&and("sparsevol/1", "minz=0&maxz=31")))
    );
}

/// How many blocks a `sparsevol?format=blocks` body flags whole, and its voxels, read as NeuTu
/// reads them.
fn block_voxels(b: &[u8]) -> (usize, std::collections::BTreeSet<[i32; 3]>) {
    let i32_at = |at: usize| i32::from_le_bytes(b[at..at + 4].try_into().unwrap());
    let subs = [0, 4, 8].map(i32_at);
    let (mut at, mut whole, mut voxels) = (20, 0, std::collections::BTreeSet::new());
    while at < b.len() {
        let origin = [at, at + 4, at + 8].map(i32_at);
        let flag = b[at + 12];
        at += 13;
        let mut sub_flags = Vec::new();
        for sz in 0..subs[2] {
            for sy in 0..subs[1] {
                for sx in 0..subs[0] {
                    let f = if flag == 1 { 1 } else { b[at] };
                    if flag != 1 {
                        at += 1;
                    }
                    let mask = (f == 2).then(|| &b[at..at + 64]);
                    if f == 2 {
                        at += 64;
                    }
                    sub_flags.push(f);
                    for i in 0..512usize {
                        if f == 1 || mask.is_some_and(|m| m[i / 8] >> (i % 8) & 1 == 1) {
                            let (x, y, z) = ((i % 8) as i32, (i / 8 % 8) as i32, (i / 64) as i32);
                            voxels.insert([
                                origin[0] + sx * 8 + x,
                                origin[1] + sy * 8 + y,
                                origin[2] + sz * 8 + z,
                            ]);
                        }
                    }
                }
            }
        }
        whole += usize::from(flag == 1);
        assert!(
            flag == 1 || sub_flags.iter().any(|&f| f != 0),
            "a block without voxels"
        );
    }
    (whole, voxels)
}

/// The voxels of DVID's RLEs (12-byte header, then x, y, z, length).
fn rle_voxels(b: &[u8]) -> std::collections::BTreeSet<[i32; 3]> {
    let mut voxels = std::collections::BTreeSet::new();
    for r in b[12..].chunks_exact(16) {
        let v: Vec<i32> = r
            .chunks_exact(4)
            .map(|c| i32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        for x in v[0]..v[0] + v[3] {
            voxels.insert([x, v[1], v[2]]);
        }
    }
    voxels
}

#[test]
fn labelmap_body_split_renumber_and_stored_indices() {
    let (_d, n, root) = start();
    let at = |p: &str| format!("/api/node/{root}/seg/{p}");
    n.post_json(&at("merge"), json!([1, 2]));

    // split: rows y 0..3 of z = 0, x 28..35, across supervoxels 1 (x < 32) and 2 (x ≥ 32).
    let runs: Vec<[i32; 4]> = (0..4).map(|y| [28, y, 0, 8]).collect();
    let r = n.post(&format!("{}?u=ann", at("split/1")), rles(&runs));
    assert_eq!(r.status(), 200);
    let s: Value = r.json().unwrap();
    let (new, mutation) = (s["label"].as_u64().unwrap(), &s["MutationID"]);
    assert!(new > 8, "{s}");
    assert_eq!(
        labels(&n, &at("mapping"), json!([1, 2])),
        json!([0, 0]),
        "split supervoxels leave the mapping"
    );
    assert_eq!(
        labels(&n, &at("sizes"), json!([1, new])),
        json!([2 * 32768 - 32, 32])
    );
    let want: std::collections::BTreeSet<[i32; 3]> = runs
        .iter()
        .flat_map(|&[x, y, z, l]| (x..x + l).map(move |x| [x, y, z]))
        .collect();
    assert_eq!(
        rle_voxels(&n.get_bytes(&at(&format!("sparsevol/{new}")))),
        want
    );
    assert_eq!(n.get_json(&at("label/28_0_0"))["Label"], new);
    assert_eq!(n.get_json(&at("label/28_4_0"))["Label"], 1);
    assert_eq!(n.get_json(&at("label/35_3_0"))["Label"], new);

    // Each touched supervoxel split in two: split half in the new body, remain in body 1.
    let new_svs = n.get_json(&at(&format!("supervoxels/{new}")));
    let old_svs = n.get_json(&at("supervoxels/1"));
    assert_eq!(
        (
            new_svs.as_array().unwrap().len(),
            old_svs.as_array().unwrap().len()
        ),
        (2, 2)
    );
    let record = n.get_json(&at("mutations"))[1].clone();
    assert_eq!(record["Action"], "split-complete");
    assert_eq!(record["User"], "ann");
    assert_eq!(
        (
            &record["Target"],
            &record["NewLabel"],
            &record["SplitSize"],
            &record["RemainSize"]
        ),
        (&json!(1), &json!(new), &json!(32), &json!(2 * 32768 - 32))
    );
    let sv_split = |sv: &str| {
        let h = &record["SVSplits"][sv];
        [h["Split"].as_u64().unwrap(), h["Remain"].as_u64().unwrap()]
    };
    let ([s1, r1], [s2, r2]) = (sv_split("1"), sv_split("2"));
    assert_eq!(new_svs, json!([s1, s2]));
    assert_eq!(old_svs, json!([r1, r2]));
    assert_eq!(
        labels(
            &n,
            &format!("{}?supervoxels=true", at("sizes")),
            json!([s1, r1, s2, r2])
        ),
        json!([16, 32768 - 16, 16, 32768 - 16])
    );
    assert_eq!(
        n.get_json(&at("supervoxel-splits")),
        json!([root, [[mutation, 1, r1, s1], [mutation, 2, r2, s2]]])
    );
    assert_eq!(
        n.get_json(&at(&format!("history/{new}/{root}/{root}"))),
        json!([record])
    );

    // Bad splits: a 4xx with a message, and nothing changed.
    let before = n.get_bytes(&at("mappings"));
    let all_of_4: Vec<[i32; 4]> = (0..32)
        .flat_map(|z| (0..32).map(move |y| [32, y + 32, z, 32]))
        .collect();
    let cases: &[(&str, Vec<u8>, u16, &str)] = &[
        ("split/4", rles(&all_of_4), 400, "nothing would remain"),
        ("split/1", rles(&[[28, 0, 0, 1]]), 400, "not in body 1"),
        (
            "split/1",
            rles(&[[0, 40, 0, 1]]),
            400,
            "where body 1 has no voxels",
        ),
        (
            "split/99",
            rles(&[[0, 0, 0, 1]]),
            404,
            "body 99 has no voxels",
        ),
        ("split/0", rles(&[[0, 0, 0, 1]]), 400, "background"),
        ("split/1", rles(&[]), 400, "no voxels"),
        ("split/1", vec![0, 3, 0], 400, "12-byte header"),
    ];
    for (path, body, status, want) in cases {
        let r = n.post(&at(path), body.clone());
        assert_eq!(r.status().as_u16(), *status, "{path}");
        let text = r.text().unwrap();
        assert!(text.contains(want), "{path}: {text:?} lacks {want:?}");
    }
    assert_eq!(
        n.get_bytes(&at("mappings")),
        before,
        "refused splits changed the mapping"
    );
    assert_eq!(labels(&n, &at("sizes"), json!([4])), json!([32768]));

    // renumber: pairs [new, old]; each its own mutation; a failing pair stops the rest.
    let r = n.post(
        &format!("{}?u=ann", at("renumber")),
        json!([100, 4, 200, 5]).to_string(),
    );
    assert_eq!(r.status(), 200);
    assert_eq!(labels(&n, &at("mapping"), json!([4, 5])), json!([100, 200]));
    assert_eq!(labels(&n, &at("sizes"), json!([100, 4])), json!([32768, 0]));
    assert_eq!(n.get(&at("index/4")).status(), 404);
    let actions = n.get_json(&at("mutations"));
    let last = &actions[actions.as_array().unwrap().len() - 1];
    assert_eq!(
        (&last["Action"], &last["NewLabel"], &last["OrigLabel"]),
        (&json!("renumber-complete"), &json!(200), &json!(5))
    );
    for (body, want) in [
        (json!([300]), "pairs"),
        (json!([]), "pairs"),
        (json!([7, 6]), "label 7 is in use"),
        (json!([4, 6]), "label 4 is in use"),
        (json!([300, 99]), "body 99 has no voxels"),
        (json!([300, 6, 8, 7]), "1 pairs before it were renumbered"),
    ] {
        let r = n.post(&at("renumber"), body.to_string());
        assert_eq!(r.status(), 400, "{body}");
        let text = r.text().unwrap();
        assert!(text.contains(want), "{body}: {text:?} lacks {want:?}");
    }
    assert_eq!(
        labels(&n, &at("mapping"), json!([6, 7, 8])),
        json!([300, 7, 8]),
        "the pair before the failing one stays renumbered"
    );

    // POST index / indices: what GET index answers stores back; an empty index deletes.
    let eight = n.get_bytes(&at("index/8"));
    assert_eq!(n.post(&at("index/8"), eight.clone()).status(), 200);
    assert_eq!(n.get_bytes(&at("index/8")), eight);
    let empty = LabelIndex {
        label: 8,
        ..Default::default()
    };
    assert_eq!(n.post(&at("index/8"), empty.encode_to_vec()).status(), 200);
    assert_eq!(n.get(&at("index/8")).status(), 404);
    let both = LabelIndices {
        indices: vec![LabelIndex::decode(&eight[..]).unwrap(), {
            let mut i = LabelIndex::decode(&eight[..]).unwrap();
            i.label = 500;
            i
        }],
    };
    assert_eq!(n.post(&at("indices"), both.encode_to_vec()).status(), 200);
    assert_eq!(n.get_bytes(&at("index/8")), eight);
    assert_eq!(labels(&n, &at("sizes"), json!([500])), json!([32768]));

    let bad_block = {
        let mut i = LabelIndex::decode(&eight[..]).unwrap();
        let counts = i.blocks.values().next().unwrap().clone();
        i.blocks.insert(1 << 63, counts);
        i
    };
    let zero_count = {
        let mut i = LabelIndex::decode(&eight[..]).unwrap();
        i.blocks.values_mut().next().unwrap().counts.insert(8, 0);
        i
    };
    let label_0 = LabelIndex {
        label: 0,
        ..LabelIndex::decode(&eight[..]).unwrap()
    };
    let twice = LabelIndices {
        indices: vec![empty.clone(), empty.clone()],
    };
    let cases: &[(&str, Vec<u8>, &str)] = &[
        (
            "index/8",
            b"\xff\xff\xff".to_vec(),
            "not a LabelIndex protobuf",
        ),
        ("index/9", eight.clone(), "posted to index/9"),
        ("index/8", bad_block.encode_to_vec(), "names no block"),
        ("index/8", zero_count.encode_to_vec(), "with 0 voxels"),
        ("index/0", label_0.encode_to_vec(), "label 0"),
        (
            "indices",
            b"\xff\xff\xff".to_vec(),
            "not a LabelIndices protobuf",
        ),
        ("indices", twice.encode_to_vec(), "two indices"),
    ];
    for (path, body, want) in cases {
        let r = n.post(&at(path), body.clone());
        assert_eq!(r.status(), 400, "{path}");
        let text = r.text().unwrap();
        assert!(text.contains(want), "{path}: {text:?} lacks {want:?}");
    }
    assert_eq!(
        n.get_bytes(&at("index/8")),
        eight,
        "refused indices changed an index"
    );
}
