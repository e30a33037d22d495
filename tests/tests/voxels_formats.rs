//! The voxel formats viewers and scripts ask for, over HTTP against a real node: `raw` as bytes
//! (`/nD`, lz4, gzip, Neuroglancer's googlegzip), as a JPEG of stacked slices, 2-D slices as PNG
//! and JPEG (isotropic too), JPEG-compressed instances and their block records, multiscale levels
//! (built in proportion to the change, pulled with their version), CORS, and each one's bad input.

use dvid_tests::{Node, free_port, json, test_volume};
use std::io::Read;

fn node() -> (Node, tempfile::TempDir) {
    let d = tempfile::tempdir().unwrap();
    (Node::start(d.path(), &[]), d)
}

fn raw(data: &str, uuid: &str, size: [u32; 3], offset: [i32; 3]) -> String {
    format!(
        "/api/node/{uuid}/{data}/raw/0_1_2/{}_{}_{}/{}_{}_{}",
        size[0], size[1], size[2], offset[0], offset[1], offset[2]
    )
}

fn jpeg_decode(bytes: &[u8]) -> (usize, usize, Vec<u8>) {
    let options = zune_jpeg::zune_core::options::DecoderOptions::default()
        .jpeg_set_out_colorspace(zune_jpeg::zune_core::colorspace::ColorSpace::Luma);
    let mut d = zune_jpeg::JpegDecoder::new_with_options(bytes, options);
    let px = d.decode().expect("a JPEG");
    let info = d.info().unwrap();
    (info.width as usize, info.height as usize, px)
}

fn png_decode(bytes: &[u8]) -> (png::OutputInfo, Vec<u8>) {
    let mut r = png::Decoder::new(std::io::Cursor::new(bytes))
        .read_info()
        .expect("a PNG");
    let mut buf = vec![0; r.output_buffer_size().unwrap()];
    let info = r.next_frame(&mut buf).unwrap();
    buf.truncate(info.buffer_size());
    (info, buf)
}

fn worst_error(a: &[u8], b: &[u8]) -> u8 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| x.abs_diff(*y)).max().unwrap()
}

/// A smooth grayscale volume (JPEG keeps it close), x fastest; at most 132 in a 128x64x64 box.
fn smooth(size: [usize; 3]) -> Vec<u8> {
    let mut v = Vec::with_capacity(size.iter().product());
    for z in 0..size[2] {
        for y in 0..size[1] {
            for x in 0..size[0] {
                v.push(((x + 2 * y + z) / 3) as u8);
            }
        }
    }
    v
}

fn status_and_text(n: &Node, path: &str) -> (u16, String) {
    let r = n.get(path);
    (r.status().as_u16(), r.text().unwrap())
}

#[test]
fn voxels_raw_formats_and_slices() {
    let (n, _d) = node();
    let root = n.new_repo("formats");
    n.new_instance(&root, "uint8blk", "gray", json!({"VoxelSize": "4,4,40"}));
    n.new_instance(&root, "labelblk", "seg", json!({}));
    let info = n.get_json(&format!("/api/node/{root}/gray/info"));
    assert_eq!(
        info["Extended"]["BlockSize"],
        json!([32, 32, 32]),
        "DVID's default"
    );
    // Empty instances still give three integers (max below min).
    assert_eq!(info["Extended"]["MinPoint"], json!([0, 0, 0]));
    assert_eq!(info["Extended"]["MaxPoint"], json!([-1, -1, -1]));
    let gray = smooth([64, 48, 20]);
    n.post_bytes(&raw("gray", &root, [64, 48, 20], [3, 5, 7]), gray.clone());
    let labels: Vec<u8> = (0..40 * 30 * 10u64)
        .flat_map(|i| (i / 200 * 1_000_003).to_le_bytes()) // a label per 5 rows
        .collect();
    n.post_bytes(&raw("seg", &root, [40, 30, 10], [0, 0, 0]), labels.clone());

    // nD: the bytes, as dvision asks.
    let base = raw("gray", &root, [64, 48, 20], [3, 5, 7]);
    assert!(n.get_bytes(&format!("{base}/nD")) == gray);
    // lz4 and gzip, both ways.
    let lz = n.get_bytes(&format!("{base}?compression=lz4"));
    assert!(lz4_flex::block::decompress(&lz, gray.len()).unwrap() == gray);
    let gz = n.get_bytes(&format!("{base}?compression=gzip"));
    let mut back = Vec::new();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_end(&mut back)
        .unwrap();
    assert!(back == gray);
    let edited = vec![9u8; 64 * 48 * 20];
    let lz = lz4_flex::block::compress(&edited);
    n.post_bytes(&format!("{base}?compression=lz4"), lz);
    assert!(n.get_bytes(&base) == edited);
    n.post_bytes(&base, gray.clone());

    // One JPEG of the stacked z slices: width x, height y*z.
    let jpeg = n.get_bytes(&format!("{base}/jpeg?quality=95&app=Neuroglancer"));
    let (w, h, px) = jpeg_decode(&jpeg);
    assert_eq!((w, h), (64, 48 * 20));
    assert!(worst_error(&px, &gray) <= 6);

    // Slices: PNG by default, exact; JPEG on request.
    let (info, px) = png_decode(&n.get_bytes(&format!("/api/node/{root}/gray/raw/xz/64_20/3_9_7")));
    assert_eq!(
        (info.width, info.height, info.bit_depth),
        (64, 20, png::BitDepth::Eight)
    );
    let want: Vec<u8> = (0..20)
        .flat_map(|z| (0..64).map(move |x| (z, x)))
        .map(|(z, x)| gray[(z * 48 + 4) * 64 + x])
        .collect();
    assert_eq!(px, want);
    let (info, px) =
        png_decode(&n.get_bytes(&format!("/api/node/{root}/gray/raw/yz/48_20/5_5_7/png")));
    assert_eq!((info.width, info.height), (48, 20));
    assert_eq!(
        px[..48],
        (0..48).map(|y| gray[y * 64 + 2]).collect::<Vec<_>>()[..]
    );
    let jpg = n.get_bytes(&format!("/api/node/{root}/gray/raw/xy/64_48/3_5_8/jpg:90"));
    let (w, h, px) = jpeg_decode(&jpg);
    assert_eq!((w, h), (64, 48));
    assert!(worst_error(&px, &gray[64 * 48..2 * 64 * 48]) <= 8);
    // Isotropic: z voxels are 10x coarser, so an xz slice of 64x40 reads 4 z voxels, stretched.
    let (info, px) =
        png_decode(&n.get_bytes(&format!("/api/node/{root}/gray/isotropic/xz/64_40/3_5_7")));
    assert_eq!((info.width, info.height), (64, 40));
    assert_eq!(px[..64], gray[..64]);
    assert_eq!(px[39 * 64..], gray[3 * 48 * 64..3 * 48 * 64 + 64]);
    // Label slices: 16-bit RGBA PNG holding each label's little-endian bytes.
    let (info, px) = png_decode(&n.get_bytes(&format!("/api/node/{root}/seg/raw/xy/40_30/0_0_2")));
    assert_eq!(
        (info.bit_depth, info.color_type),
        (png::BitDepth::Sixteen, png::ColorType::Rgba)
    );
    assert_eq!(px, labels[40 * 30 * 8 * 2..40 * 30 * 8 * 3]);

    // googlegzip: gzip with Content-Encoding, compressed segmentation inside (one channel).
    let r = n.get(&format!(
        "{}?compression=googlegzip&app=Neuroglancer",
        raw("seg", &root, [40, 30, 10], [0, 0, 0])
    ));
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-encoding"], "gzip");
    let mut cs = Vec::new();
    flate2::read::GzDecoder::new(&r.bytes().unwrap()[..])
        .read_to_end(&mut cs)
        .unwrap();
    assert_eq!(cs[..4], 1u32.to_le_bytes(), "the channel offset word");
    assert!(
        cs.len() < labels.len() / 5,
        "{} bytes for {}",
        cs.len(),
        labels.len()
    );
}

#[test]
fn voxels_format_bad_input_is_refused_with_reasons() {
    let (n, _d) = node();
    let root = n.new_repo("bad");
    n.new_instance(&root, "uint8blk", "gray", json!({}));
    n.new_instance(&root, "labelblk", "seg", json!({}));
    n.new_instance(&root, "keyvalue", "kv", json!({}));
    let cases = [
        (
            format!("/api/node/{root}/gray/raw/0_1_2/8_8_8/0_0_0/jpeg?quality=0"),
            "quality",
        ),
        (
            format!("/api/node/{root}/gray/raw/0_1_2/8_8_8/0_0_0/jpeg:101"),
            "quality",
        ),
        (
            format!("/api/node/{root}/gray/raw/0_1_2/8_8_8/0_0_0/jpeg?quality=high"),
            "quality",
        ),
        (
            format!("/api/node/{root}/gray/raw/0_1_2/8_8_8/0_0_0?compression=zip"),
            "compression",
        ),
        (
            format!("/api/node/{root}/gray/raw/0_1_2/8_8_8/0_0_0?compression=googlegzip"),
            "labels",
        ),
        (
            format!("/api/node/{root}/seg/raw/0_1_2/8_8_8/0_0_0/jpeg"),
            "grayscale",
        ),
        (
            format!("/api/node/{root}/gray/raw/0_1_2/8_8_8/0_0_0/png"),
            "format",
        ),
        (
            format!("/api/node/{root}/gray/raw/xy/8_8_8/0_0_0"),
            "two integers",
        ),
        (
            format!("/api/node/{root}/gray/raw/xy/8/0_0_0"),
            "two integers",
        ),
        (
            format!("/api/node/{root}/gray/raw/0_1_2/8_8/0_0_0"),
            "three integers",
        ),
        (
            format!("/api/node/{root}/gray/raw/xy/8_8/0_0_0/nD"),
            "format",
        ),
        (
            format!("/api/node/{root}/gray/raw/xy/8_8/0_0_0/png:3"),
            "quality",
        ),
        (
            format!("/api/node/{root}/gray/raw/xy/8_8/0_0_0?compression=lz4"),
            "slices are images",
        ),
        (
            format!("/api/node/{root}/gray/raw/0_1_3/8_8_8/0_0_0"),
            "dims",
        ),
        (
            format!("/api/node/{root}/gray/raw/0_1_2/8_8_8/0_0_0?roi=cells"),
            "roi",
        ),
        (
            format!("/api/node/{root}/gray/isotropic/0_1_2/8_8_8/0_0_0"),
            "slices",
        ),
        (
            format!("/api/node/{root}/gray/raw/0_1_2/8_8_9000/0_0_0/jpeg"),
            "at most",
        ),
        (
            format!("/api/node/{root}/gray/subvolblocks/32_32_32/0_0_0?compression=jpeg"),
            "not jpeg",
        ),
    ];
    for (path, why) in &cases {
        let (status, text) = status_and_text(&n, path);
        assert_eq!(status, 400, "{path}: {text}");
        assert!(text.contains(why), "{path}: {text:?} should say {why:?}");
    }
    // Writes: slices are read-only; only lz4 and gzip bodies; a body of the wrong size.
    for (path, body, why) in [
        (
            format!("/api/node/{root}/gray/raw/xy/8_8/0_0_0"),
            vec![0u8; 64],
            "read-only",
        ),
        (
            format!("/api/node/{root}/gray/raw/0_1_2/8_8_8/0_0_0/jpeg"),
            vec![0; 512],
            "bytes (nD)",
        ),
        (
            format!("/api/node/{root}/gray/raw/0_1_2/8_8_8/0_0_0?compression=googlegzip"),
            vec![0; 9],
            "lz4 or gzip",
        ),
        (
            format!("/api/node/{root}/gray/raw/0_1_2/8_8_8/0_0_0?compression=gzip"),
            b"nope".to_vec(),
            "gzip",
        ),
        (
            format!("/api/node/{root}/gray/raw/0_1_2/8_8_8/0_0_0?compression=lz4"),
            lz4_flex::block::compress(&[1u8; 100]),
            "lz4",
        ),
    ] {
        let r = n.post(&path, body);
        let status = r.status().as_u16();
        let text = r.text().unwrap();
        assert_eq!(status, 400, "{path}: {text}");
        assert!(text.contains(why), "{path}: {text:?} should say {why:?}");
    }
    // Levels: too many, a type without levels, a level that does not exist.
    for (path, why) in [
        (format!("/api/node/{root}/gray/downres?levels=11"), "1..=10"),
        (
            format!("/api/node/{root}/gray/downres?levels=two"),
            "levels",
        ),
        (format!("/api/node/{root}/kv/downres"), "served by uint8blk"),
    ] {
        let r = n.post(&path, vec![]);
        let status = r.status().as_u16();
        let text = r.text().unwrap();
        assert_eq!(status, 400, "{path}: {text}");
        assert!(text.contains(why), "{path}: {text:?} should say {why:?}");
    }
    let (status, text) = status_and_text(
        &n,
        &format!("/api/node/{root}/gray_3/raw/0_1_2/8_8_8/0_0_0"),
    );
    assert_eq!(status, 404, "{text}");
    assert!(text.contains("gray_3"), "{text}");
    // jpeg compression is for grayscale only; jpeg blocks must fit a JPEG.
    for (settings, why) in [
        (
            json!({"typename": "labelblk", "dataname": "x", "Compression": "jpeg"}),
            "grayscale",
        ),
        (
            json!({"typename": "uint8blk", "dataname": "y", "Compression": "jpeg:0"}),
            "quality",
        ),
        (
            json!({"typename": "uint8blk", "dataname": "z", "Compression": "jpeg", "BlockSize": "64,512,256"}),
            "too large",
        ),
    ] {
        let r = n.post(&format!("/api/repo/{root}/instance"), settings.to_string());
        let status = r.status().as_u16();
        let text = r.text().unwrap();
        assert_eq!(status, 400, "{text}");
        assert!(text.contains(why), "{text:?} should say {why:?}");
    }
}

#[test]
fn voxels_jpeg_instances_serve_their_blocks_as_stored() {
    let (n, _d) = node();
    let root = n.new_repo("jpeg");
    n.new_instance(
        &root,
        "uint8blk",
        "em",
        json!({"Compression": "jpeg:90", "BlockSize": "64,64,64"}),
    );
    let info = n.get_json(&format!("/api/node/{root}/em/info"));
    let described = info["Base"]["Compression"].as_str().unwrap();
    assert!(
        described.contains("jpeg"),
        "Neuroglancer looks for \"jpeg\" in {described:?}"
    );
    let vol = smooth([128, 64, 64]);
    n.post_bytes(&raw("em", &root, [128, 64, 64], [0, 0, 0]), vol.clone());
    // Lossy: close, not equal.
    let back = n.get_bytes(&raw("em", &root, [128, 64, 64], [0, 0, 0]));
    assert!(worst_error(&back, &vol) <= 6);
    // Block records hold JPEGs (Neuroglancer drops the 16-byte record header and decodes).
    let records = n.get_bytes(&format!(
        "/api/node/{root}/em/subvolblocks/128_64_64/0_0_0?app=Neuroglancer"
    ));
    let mut at = 0;
    let mut blocks = Vec::new();
    while at < records.len() {
        let word =
            |i: usize| i32::from_le_bytes(records[at + 4 * i..at + 4 * i + 4].try_into().unwrap());
        let (b, len) = ([word(0), word(1), word(2)], word(3) as usize);
        let (w, h, px) = jpeg_decode(&records[at + 16..at + 16 + len]);
        assert_eq!((w, h), (64, 64 * 64));
        let x0 = b[0] as usize * 64;
        let want: Vec<u8> = (0..64 * 64)
            .flat_map(|r| vol[r * 128 + x0..r * 128 + x0 + 64].to_vec())
            .collect();
        assert!(worst_error(&px, &want) <= 6, "block {b:?}");
        blocks.push(b);
        at += 16 + len;
    }
    assert_eq!(blocks, vec![[0, 0, 0], [1, 0, 0]]);
    let raw_records = n.get_bytes(&format!(
        "/api/node/{root}/em/specificblocks?blocks=1,0,0&compression=uncompressed"
    ));
    assert_eq!(raw_records.len(), 16 + 64 * 64 * 64);
}

#[test]
fn voxels_levels_follow_the_change_and_sync_with_their_version() {
    let port = free_port();
    let listen = format!("/ip4/127.0.0.1/tcp/{port}");
    let da = tempfile::tempdir().unwrap();
    let a = Node::start(da.path(), &["--listen", &listen]);
    let root = a.new_repo("levels");
    a.new_instance(&root, "uint8blk", "gray", json!({}));
    a.new_instance(&root, "labelblk", "seg", json!({"BlockSize": "16,16,16"}));
    let vol = test_volume([128, 128, 128], 5);
    a.post_bytes(&raw("gray", &root, [128, 128, 128], [0, 0, 0]), vol.clone());
    let labels: Vec<u8> = (0..64 * 64 * 64u64)
        .flat_map(|i| (if (i % 64) < 32 { 3u64 } else { 1 << 50 }).to_le_bytes())
        .collect();
    a.post_bytes(&raw("seg", &root, [64, 64, 64], [0, 0, 0]), labels);
    let (ok, out, err) = a.cli(&["downres", &root, "gray", "--levels", "2"]);
    assert!(ok, "{err}");
    // 64 blocks of 32^3 make 8 blocks at level 1 and 1 at level 2.
    assert_eq!(out.trim(), "gray_1 8 blocks\ngray_2 1 blocks", "{out}");
    let l1 = a.get_bytes(&raw("gray_1", &root, [64, 64, 64], [0, 0, 0]));
    for (x, y, z) in [(0usize, 0usize, 0usize), (17, 40, 63), (63, 63, 63)] {
        let at = |dx: usize, dy: usize, dz: usize| {
            u32::from(vol[((2 * z + dz) * 128 + 2 * y + dy) * 128 + 2 * x + dx])
        };
        let sum: u32 = (0..8).map(|c| at(c & 1, (c >> 1) & 1, c >> 2)).sum();
        assert_eq!(
            u32::from(l1[(z * 64 + y) * 64 + x]),
            (sum + 4) / 8,
            "mean at ({x},{y},{z})"
        );
    }
    let info = a.get_json(&format!("/api/node/{root}/gray_1/info"));
    assert_eq!(info["Extended"]["VoxelSize"], json!([16.0, 16.0, 16.0]));
    assert_eq!(info["Extended"]["MaxPoint"], json!([63, 63, 63]));
    a.post_json(&format!("/api/node/{root}/seg/downres?levels=1"), json!({}));
    let seg1 = a.get_bytes(&raw("seg_1", &root, [32, 1, 1], [0, 0, 0]));
    let firsts: Vec<u64> = seg1
        .chunks(8)
        .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(
        firsts,
        [vec![3u64; 16], vec![1 << 50; 16]].concat(),
        "labels keep their ids"
    );
    a.commit(&root);

    // A child changes one block: the levels rebuild only what it covers.
    let child = a.new_version(&root);
    a.post_bytes(
        &raw("gray", &child, [32, 32, 32], [96, 0, 0]),
        vec![200u8; 32 * 32 * 32],
    );
    let r = a.post_json(
        &format!("/api/node/{child}/commit"),
        json!({"downres": true}),
    );
    let built: Vec<(String, u64)> = r["levels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["name"].as_str().unwrap().to_string(),
                l["blocks"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        built,
        vec![
            ("gray_1".into(), 1),
            ("gray_2".into(), 1),
            ("seg_1".into(), 0)
        ],
        "{r}"
    );
    let changed = a.get_bytes(&raw("gray_1", &child, [16, 16, 16], [48, 0, 0]));
    assert!(changed.iter().all(|&v| v == 200));
    assert!(
        a.get_bytes(&raw("gray_1", &root, [64, 64, 64], [0, 0, 0])) == l1,
        "the parent keeps its levels"
    );

    // The locked child's levels travel with it.
    let db = tempfile::tempdir().unwrap();
    let b = Node::start_p2p(db.path(), &["--peer", &a.p2p_addr()]);
    a.post_json(
        &format!("/api/repo/{root}/share"),
        json!({"peers": [b.peer_id()]}),
    );
    b.wait_offered(&child);
    let (ok, out, err) = b.cli(&["pull", &child]);
    assert!(ok, "{out}{err}");
    for name in ["gray_1", "gray_2"] {
        let path = raw(name, &child, [64, 64, 64], [0, 0, 0]);
        assert!(
            b.get_bytes(&path) == a.get_bytes(&path),
            "{name} differs after the pull"
        );
    }
    // Pulled extents are the box of the blocks pulled (never null, so viewers ask for data).
    let info = b.get_json(&format!("/api/node/{child}/gray/info"));
    assert_eq!(info["Extended"]["MinPoint"], json!([0, 0, 0]));
    assert_eq!(info["Extended"]["MaxPoint"], json!([127, 127, 127]));
}

#[test]
fn voxels_cors_lets_pages_read_and_only_listed_origins_write() {
    let client = reqwest::blocking::Client::new();
    let (n, _d) = node();
    let preflight = |url: &str, method: &str| {
        client
            .request(reqwest::Method::OPTIONS, url)
            .header("Origin", "https://viewer.example.org")
            .header("Access-Control-Request-Method", method)
            .header("Access-Control-Request-Headers", "authorization")
            .send()
            .unwrap()
    };
    let allowed = |r: &reqwest::blocking::Response| {
        r.headers()
            .get("access-control-allow-origin")
            .map(|v| v.to_str().unwrap().to_string())
    };
    let info = format!("{}/api/repos/info", n.url);
    let r = client
        .get(&info)
        .header("Origin", "https://viewer.example.org")
        .send()
        .unwrap();
    assert_eq!(allowed(&r).as_deref(), Some("https://viewer.example.org"));
    assert_eq!(
        allowed(&preflight(&info, "GET")).as_deref(),
        Some("https://viewer.example.org")
    );
    assert_eq!(
        allowed(&preflight(&format!("{}/api/repos", n.url), "POST")),
        None,
        "no writes by default"
    );

    let d = tempfile::tempdir().unwrap();
    let listed = Node::start(
        d.path(),
        &[
            "--cors-origin",
            "https://viewer.example.org",
            "--read-token",
            "r",
        ],
    );
    let repos = format!("{}/api/repos", listed.url);
    assert_eq!(
        allowed(&preflight(&repos, "POST")).as_deref(),
        Some("https://viewer.example.org")
    );
    // Tokens still hold; the refusal carries CORS headers so the page can read why.
    let r = client
        .get(format!("{}/api/repos/info", listed.url))
        .header("Origin", "https://viewer.example.org")
        .send()
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(allowed(&r).as_deref(), Some("https://viewer.example.org"));
    let r = client
        .get(format!("{}/api/repos/info", listed.url))
        .header("Origin", "https://elsewhere.example.org")
        .header("Authorization", "Bearer r")
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(allowed(&r), None, "an origin not listed");
    // The token endpoint gives a browser back the token its cookie carries.
    let r = client
        .get(format!("{}/api/server/token", listed.url))
        .header("Cookie", "dvid_token=r")
        .send()
        .unwrap();
    assert_eq!(
        (r.status().as_u16(), r.text().unwrap()),
        (200, "r".to_string())
    );
    let d2 = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(dvid_tests::dvid_bin())
        .args([
            "serve",
            "--memory",
            "--http",
            "127.0.0.1:0",
            "--cors-origin",
            "viewer",
        ])
        .arg("--data-dir")
        .arg(d2.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("expected an origin"));
}
