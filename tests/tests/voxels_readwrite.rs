//! uint8blk and labelblk over HTTP: any offset and size, partial blocks, unwritten zeros, block
//! records, labels, versions kept apart, codecs.

use dvid_tests::{Node, json, test_volume};

fn node() -> (Node, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    (Node::start(dir.path(), &[]), dir)
}

/// Reference model of a volume: a dense buffer over a box, zero where unwritten.
struct Model {
    origin: [i64; 3],
    size: [usize; 3],
    vox: Vec<u8>,
}

impl Model {
    fn new(origin: [i64; 3], size: [usize; 3]) -> Self {
        Self {
            origin,
            size,
            vox: vec![0; size[0] * size[1] * size[2]],
        }
    }
    fn idx(&self, p: [i64; 3]) -> usize {
        let l: Vec<usize> = (0..3).map(|a| (p[a] - self.origin[a]) as usize).collect();
        (l[2] * self.size[1] + l[1]) * self.size[0] + l[0]
    }
    fn write(&mut self, off: [i64; 3], size: [usize; 3], data: &[u8]) {
        let mut i = 0;
        for z in 0..size[2] {
            for y in 0..size[1] {
                for x in 0..size[0] {
                    let j = self.idx([off[0] + x as i64, off[1] + y as i64, off[2] + z as i64]);
                    self.vox[j] = data[i];
                    i += 1;
                }
            }
        }
    }
    fn read(&self, off: [i64; 3], size: [usize; 3]) -> Vec<u8> {
        let mut out = Vec::new();
        for z in 0..size[2] {
            for y in 0..size[1] {
                for x in 0..size[0] {
                    out.push(
                        self.vox
                            [self.idx([off[0] + x as i64, off[1] + y as i64, off[2] + z as i64])],
                    );
                }
            }
        }
        out
    }
}

fn raw(name: &str, uuid: &str, size: [usize; 3], off: [i64; 3]) -> String {
    format!(
        "/api/node/{uuid}/{name}/raw/0_1_2/{}_{}_{}/{}_{}_{}",
        size[0], size[1], size[2], off[0], off[1], off[2]
    )
}

#[test]
fn voxels_any_offset_and_size_match_a_model() {
    let (n, _d) = node();
    let root = n.new_repo("vox");
    n.new_instance(&root, "uint8blk", "gray", json!({"BlockSize": "16,16,16"}));
    let mut model = Model::new([-40, -40, -40], [120, 120, 120]);
    // Unaligned writes that straddle blocks, cross zero, and overlap each other.
    let writes: [([i64; 3], [usize; 3]); 5] = [
        ([-7, 3, 5], [37, 21, 9]),
        ([0, 0, 0], [16, 16, 16]),
        ([-33, -20, -1], [50, 3, 40]),
        ([10, 10, 10], [1, 1, 1]),
        ([5, -9, 2], [23, 40, 17]),
    ];
    for (i, (off, size)) in writes.iter().enumerate() {
        let data = test_volume(*size, i as u64);
        n.post_bytes(&raw("gray", &root, *size, *off), data.clone());
        model.write(*off, *size, &data);
    }
    for (off, size) in [
        ([-40, -40, -40], [120, 120, 120]),
        ([-8, 2, 4], [40, 30, 20]),
        ([9, 9, 9], [3, 3, 3]),
    ] {
        let got = n.get_bytes(&raw("gray", &root, size, off));
        assert!(
            got == model.read(off, size),
            "read at {off:?} size {size:?} differs from the model"
        );
    }
    // Extents follow the writes.
    let info = n.get_json(&format!("/api/node/{root}/gray/info"));
    assert_eq!(info["Extended"]["MinPoint"], json!([-33, -20, -1]));
    assert_eq!(info["Extended"]["MaxPoint"], json!([29, 30, 38]));
    assert_eq!(info["Extended"]["MinIndex"], json!([-3, -2, -1]));
    assert_eq!(info["Extended"]["BlockSize"], json!([16, 16, 16]));
    assert_eq!(info["Base"]["TypeName"], "uint8blk");
    assert_eq!(info["Extended"]["Values"][0]["DataType"], "uint8");
}

#[test]
fn voxels_unwritten_read_zero_and_versions_stay_apart() {
    let (n, _d) = node();
    let root = n.new_repo("ver");
    n.new_instance(&root, "uint8blk", "gray", json!({}));
    assert_eq!(
        n.get_bytes(&raw("gray", &root, [10, 10, 10], [1000, 0, 0])),
        vec![0u8; 1000]
    );
    let a = test_volume([64, 64, 64], 1);
    n.post_bytes(&raw("gray", &root, [64, 64, 64], [0, 0, 0]), a.clone());
    n.commit(&root);
    let child = n.new_version(&root);
    let b = vec![7u8; 8 * 8 * 8];
    n.post_bytes(&raw("gray", &child, [8, 8, 8], [4, 4, 4]), b);
    // The parent keeps its bytes; the child sees its overwrite on top of the parent.
    assert!(n.get_bytes(&raw("gray", &root, [64, 64, 64], [0, 0, 0])) == a);
    let got = n.get_bytes(&raw("gray", &child, [64, 64, 64], [0, 0, 0]));
    let mut expected = a.clone();
    for z in 4..12 {
        for y in 4..12 {
            for x in 4..12 {
                expected[(z * 64 + y) * 64 + x] = 7;
            }
        }
    }
    assert!(got == expected);
    // Overwrites of a mutable node replace, they do not accumulate.
    n.post_bytes(&raw("gray", &child, [8, 8, 8], [4, 4, 4]), vec![9u8; 512]);
    assert_eq!(
        n.get_bytes(&raw("gray", &child, [1, 1, 1], [4, 4, 4])),
        vec![9]
    );
    n.commit(&child);
    assert_eq!(
        n.get_bytes(&raw("gray", &child, [1, 1, 1], [4, 4, 4])),
        vec![9]
    );
}

#[test]
fn voxels_block_records_in_dvid_format() {
    let (n, _d) = node();
    let root = n.new_repo("blocks");
    n.new_instance(
        &root,
        "uint8blk",
        "gray",
        json!({"BlockSize": "8,8,8", "Compression": "zstd"}),
    );
    let data = test_volume([16, 8, 8], 3);
    n.post_bytes(&raw("gray", &root, [16, 8, 8], [8, 0, 0]), data.clone());
    let info = n.get_json(&format!("/api/node/{root}/gray/info"));
    assert_eq!(info["Base"]["Compression"], "Zstd compression, level 3");

    let parse = |bytes: &[u8]| {
        let mut out = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            let w =
                |k: usize| i32::from_le_bytes(bytes[i + 4 * k..i + 4 * k + 4].try_into().unwrap());
            let (b, len) = ([w(0), w(1), w(2)], w(3) as usize);
            out.push((b, bytes[i + 16..i + 16 + len].to_vec()));
            i += 16 + len;
        }
        out
    };
    // Blocks (1,0,0) and (2,0,0) hold the data; (0,0,0) and (3,0,0) were never written.
    let recs = parse(&n.get_bytes(&format!("/api/node/{root}/gray/subvolblocks/32_8_8/0_0_0")));
    assert_eq!(recs.len(), 2);
    assert_eq!(recs[0].0, [1, 0, 0]);
    assert_eq!(recs[1].0, [2, 0, 0]);
    let block = |bx: usize| -> Vec<u8> {
        let mut out = Vec::new();
        for z in 0..8 {
            for y in 0..8 {
                out.extend_from_slice(
                    &data[(z * 8 + y) * 16 + bx * 8..(z * 8 + y) * 16 + bx * 8 + 8],
                );
            }
        }
        out
    };
    assert!(recs[0].1 == block(0) && recs[1].1 == block(1));
    let recs = parse(&n.get_bytes(&format!(
        "/api/node/{root}/gray/specificblocks?blocks=2,0,0,5,5,5,1,0,0"
    )));
    assert_eq!(
        recs.iter().map(|r| r.0).collect::<Vec<_>>(),
        vec![[2, 0, 0], [1, 0, 0]]
    );
    assert!(recs[0].1 == block(1));
}

#[test]
fn voxels_labels_are_uint64_little_endian() {
    let (n, _d) = node();
    let root = n.new_repo("labels");
    n.new_instance(&root, "labelblk", "seg", json!({"BlockSize": "32,32,32"}));
    let info = n.get_json(&format!("/api/node/{root}/seg/info"));
    assert_eq!(info["Base"]["TypeName"], "labelblk");
    assert_eq!(info["Extended"]["Values"][0]["DataType"], "uint64");
    let size = [40usize, 5, 3];
    let mut bytes = Vec::new();
    for i in 0..size.iter().product::<usize>() {
        bytes.extend_from_slice(&((i as u64) * 1_000_000_007).to_le_bytes());
    }
    n.post_bytes(&raw("seg", &root, size, [20, 30, 40]), bytes.clone());
    assert!(n.get_bytes(&raw("seg", &root, size, [20, 30, 40])) == bytes);
    // Voxel (x=21, y=31, z=40) is index 1 + 1*40 = 41.
    assert_eq!(
        n.get_json(&format!("/api/node/{root}/seg/label/21_31_40")),
        json!({"Label": 41u64 * 1_000_000_007})
    );
    assert_eq!(
        n.get_json(&format!("/api/node/{root}/seg/label/0_0_0")),
        json!({"Label": 0})
    );
    let r = n.get_body(
        &format!("/api/node/{root}/seg/labels"),
        "[[20,30,40],[59,34,42],[-5,0,0]]",
    );
    assert!(r.status().is_success());
    let last = (40 * 5 * 3 - 1) as u64 * 1_000_000_007;
    assert_eq!(r.json::<serde_json::Value>().unwrap(), json!([0, last, 0]));
    // Label endpoints refuse non-label instances.
    n.new_instance(&root, "uint8blk", "gray", json!({}));
    assert_eq!(
        n.get(&format!("/api/node/{root}/gray/label/0_0_0"))
            .status(),
        400
    );
}
