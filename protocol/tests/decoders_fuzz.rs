//! Fuzzing of every decoder that takes untrusted bytes: wire frames and bodies (requests, responses,
//! head announcements with their seals), version manifests, tree nodes, block payloads and keys.
//!
//! Inputs come from a seeded generator mixing purely random bytes, structure-aware mutations of valid
//! encodings (bit flips, truncations, inflated length fields, splices) and boundary lengths. Each input
//! runs under `catch_unwind`, and a counting global allocator checks that no single allocation made
//! while decoding exceeds the decoder's declared bound. `DVID_FUZZ_INPUTS` sets the total count
//! (default 20,000), `DVID_FUZZ_SEED` the seed. The long run:
//! `DVID_FUZZ_INPUTS=1000000 cargo test --release -p dvid-protocol --test decoders_fuzz -- --nocapture`

use dvid_protocol::seal::{self, KeySealer};
use dvid_protocol::wire::{
    self, Head, MAX_FRAME_BYTES, ObjectReply, Request, Response, Want, WantPath,
};
use dvid_store::catalog::Uuid;
use dvid_store::codec::decode_block;
use dvid_store::geometry::{block_box_of_prefix, block_from_key, block_key};
use dvid_store::keys;
use dvid_store::manifest::{
    InstanceDef, MAX_MANIFEST_BYTES, VersionDef, commit_hash, seal_message,
};
use dvid_store::tree::{Change, Entry, MAX_NODE_BYTES, Node, TreeRef, Trees};
use dvid_store::{
    Codec, InstanceSpec, MAX_BLOCK_BYTES, MemEngine, ObjectId, Sealer, VersionManifest,
};
use libp2p_identity::Keypair;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::BTreeMap;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Instant;

/// Inputs in a plain `cargo test` run: a few seconds in a debug build.
const DEFAULT_INPUTS: usize = 20_000;
const DEFAULT_SEED: u64 = 0x0d1d_f022;
/// Allowance for the error message a refusing decoder formats: far below any bound that matters.
const ERROR_SLACK: usize = 1024;

#[test]
fn fuzz_every_decoder() {
    let total = env_number("DVID_FUZZ_INPUTS").unwrap_or(DEFAULT_INPUTS as u64) as usize;
    let seed = env_number("DVID_FUZZ_SEED").unwrap_or(DEFAULT_SEED);
    let corpus = Corpus::build();
    let weight_sum: usize = Kind::ALL.iter().map(|k| k.weight()).sum();
    let started = Instant::now();
    let mut stats = Vec::new();
    let mut failures = Vec::new();
    for kind in Kind::ALL {
        let count = (total * kind.weight() / weight_sum).max(1);
        let mut st = Stats::new(kind);
        let kind_started = Instant::now();
        for (index, input) in kind.edge_inputs().into_iter().enumerate() {
            check(kind, &input, Origin::Edge(index), &mut st, &mut failures);
        }
        for index in 0..count {
            let mut rng = Rng::new(seed ^ kind.salt() ^ (index as u64).wrapping_mul(0x9e37_79b9));
            let (input, strategy) = generate(kind, &corpus, &mut rng);
            let origin = Origin::Generated { seed, index };
            let ok_before = st.decoded;
            check(kind, &input, origin, &mut st, &mut failures);
            if strategy == Strategy::Valid && st.decoded == ok_before {
                failures.push(failure(
                    kind,
                    origin,
                    &input,
                    "an unmodified valid encoding was refused",
                ));
            }
        }
        st.secs = kind_started.elapsed().as_secs_f64();
        stats.push(st);
    }
    let secs = started.elapsed().as_secs_f64();
    println!("decoder fuzzing, seed {seed:#x}, {secs:.1}s:");
    println!(
        "  {:<34} {:>9} {:>9} {:>12} {:>12} {:>12} {:>7}",
        "decoder", "inputs", "decoded", "largest", "peak live", "bound", "secs"
    );
    let mut all = 0;
    for st in &stats {
        all += st.inputs;
        println!(
            "  {:<34} {:>9} {:>9} {:>12} {:>12} {:>12} {:>7.1}",
            st.kind.name(),
            st.inputs,
            st.decoded,
            st.largest,
            st.peak,
            st.kind.bound_text(),
            st.secs
        );
    }
    for st in &stats {
        println!("{}: inputs fuzzed: {}", st.kind.name(), st.inputs);
    }
    println!("inputs fuzzed: {all} in {secs:.1}s");
    assert!(
        failures.is_empty(),
        "{} failing inputs; the first ones:\n{}",
        failures.len(),
        failures
            .iter()
            .take(3)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// The same seed gives the same inputs (a digest over the first ones), so a printed seed reproduces.
#[test]
fn fuzz_same_seed_same_inputs() {
    let corpus = Corpus::build();
    let digest = || {
        let mut all = Vec::new();
        for kind in Kind::ALL {
            for index in 0..200u64 {
                let mut rng = Rng::new(7 ^ kind.salt() ^ index.wrapping_mul(0x9e37_79b9));
                let (input, _) = generate(kind, &corpus, &mut rng);
                all.extend_from_slice(&input.bytes);
                all.extend_from_slice(&input.arg.to_le_bytes());
            }
        }
        ObjectId::of(&all)
    };
    assert_eq!(digest(), digest());
}

/// Regression: a leaf claiming as many entries as it has bytes made serde reserve 80 bytes per claimed
/// entry (up to 1 MiB) before reading one, past the node bound; now it reserves at most `LEAF_MAX`.
#[test]
fn fuzz_tree_node_inflated_count_stays_within_bound() {
    let corpus = Corpus::build();
    let leaf = corpus
        .nodes
        .iter()
        .map(|n| &n.bytes)
        .filter(|b| b[1] == 0)
        .max_by_key(|b| b.len())
        .expect("a leaf");
    let mut bytes = leaf.clone();
    let claimed = (bytes.len() - 3) as u64;
    bytes.splice(2..3, varint(claimed));
    let m = measure(|| Node::decode(&bytes).is_err());
    assert!(matches!(m.result, Ok(true)), "the inflated leaf decoded");
    assert!(
        m.largest <= MAX_NODE_BYTES,
        "a {}-byte node claiming {claimed} entries allocated {} bytes at once",
        bytes.len(),
        m.largest
    );
}

// ---------------------------------------------------------------------------------------------------
// Decoders under test.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    FrameLen,
    RequestFrame,
    RequestBody,
    ResponseFrame,
    ResponseBody,
    Announcement,
    Manifest,
    TreeNode,
    BlockLz4,
    BlockZstd,
    BlockKey,
    WorkingKey,
    PrefixBox,
}

impl Kind {
    const ALL: [Kind; 13] = [
        Kind::FrameLen,
        Kind::RequestFrame,
        Kind::RequestBody,
        Kind::ResponseFrame,
        Kind::ResponseBody,
        Kind::Announcement,
        Kind::Manifest,
        Kind::TreeNode,
        Kind::BlockLz4,
        Kind::BlockZstd,
        Kind::BlockKey,
        Kind::WorkingKey,
        Kind::PrefixBox,
    ];

    fn name(self) -> &'static str {
        match self {
            Kind::FrameLen => "wire::frame_len",
            Kind::RequestFrame => "wire::decode::<Request>",
            Kind::RequestBody => "wire::decode_body::<Request>",
            Kind::ResponseFrame => "wire::decode::<Response>",
            Kind::ResponseBody => "wire::decode_body::<Response>",
            Kind::Announcement => "announcement (Heads + seal check)",
            Kind::Manifest => "VersionManifest::decode + seals",
            Kind::TreeNode => "tree::Node::decode",
            Kind::BlockLz4 => "codec::decode_block (lz4)",
            Kind::BlockZstd => "codec::decode_block (zstd)",
            Kind::BlockKey => "geometry::block_from_key",
            Kind::WorkingKey => "keys::parse_working",
            Kind::PrefixBox => "geometry::block_box_of_prefix",
        }
    }

    /// Share of the inputs.
    fn weight(self) -> usize {
        match self {
            Kind::FrameLen | Kind::BlockKey | Kind::WorkingKey | Kind::PrefixBox => 3,
            Kind::RequestBody | Kind::ResponseBody => 7,
            Kind::Announcement | Kind::BlockZstd => 9,
            Kind::RequestFrame | Kind::ResponseFrame | Kind::Manifest | Kind::BlockLz4 => 10,
            Kind::TreeNode => 16,
        }
    }

    fn salt(self) -> u64 {
        (self as u64 + 1).wrapping_mul(0xa076_1d64_78bd_642f)
    }

    /// The largest single allocation a decode of `input` may make.
    fn bound(self, input: &Input) -> usize {
        match self {
            Kind::FrameLen | Kind::BlockKey | Kind::WorkingKey | Kind::PrefixBox => 0,
            Kind::RequestFrame
            | Kind::RequestBody
            | Kind::ResponseFrame
            | Kind::ResponseBody
            | Kind::Announcement => MAX_FRAME_BYTES,
            Kind::Manifest => MAX_MANIFEST_BYTES,
            Kind::TreeNode => MAX_NODE_BYTES,
            // The caller's expected size (an instance's block bytes, at most MAX_BLOCK_BYTES).
            Kind::BlockLz4 | Kind::BlockZstd => input.arg as usize,
        }
        .max(match self {
            Kind::FrameLen | Kind::BlockKey | Kind::WorkingKey | Kind::PrefixBox => 0,
            _ => ERROR_SLACK,
        })
    }

    fn bound_text(self) -> &'static str {
        match self {
            Kind::FrameLen | Kind::BlockKey | Kind::WorkingKey | Kind::PrefixBox => "0",
            Kind::Manifest => "MANIFEST 16M",
            Kind::TreeNode => "NODE 64K",
            Kind::BlockLz4 | Kind::BlockZstd => "expected len",
            _ => "FRAME 64M",
        }
    }

    fn is_frame(self) -> bool {
        matches!(self, Kind::RequestFrame | Kind::ResponseFrame)
    }

    fn is_block(self) -> bool {
        matches!(self, Kind::BlockLz4 | Kind::BlockZstd)
    }

    /// Large boundary inputs, too costly to generate at random: each runs once.
    fn edge_inputs(self) -> Vec<Input> {
        let plain = |bytes: Vec<u8>| Input { bytes, arg: 0 };
        match self {
            Kind::ResponseFrame => {
                // A frame of exactly MAX_FRAME_BYTES, then one byte more. The body is a refusal
                // (variant, 4-byte varint length, text): a string decodes in one copy, where bytes
                // decode one by one, which takes seconds in a debug build.
                let exact = wire::encode(&Response::Refused("x".repeat(MAX_FRAME_BYTES - 5)));
                assert_eq!(exact.len(), 4 + MAX_FRAME_BYTES);
                let mut over = exact.clone();
                over.push(0);
                let body_len = (over.len() - 4) as u32;
                over[..4].copy_from_slice(&body_len.to_le_bytes());
                vec![plain(exact), plain(over)]
            }
            Kind::ResponseBody => vec![plain(vec![2; MAX_FRAME_BYTES + 1])],
            Kind::Manifest => vec![plain(vec![0x80; MAX_MANIFEST_BYTES + 1])],
            Kind::TreeNode => vec![
                plain(vec![b'T'; MAX_NODE_BYTES]),
                plain(vec![b'T'; MAX_NODE_BYTES + 1]),
                plain([&[b'T', 0][..], &vec![0xff; MAX_NODE_BYTES - 2]].concat()),
            ],
            Kind::BlockLz4 | Kind::BlockZstd => {
                let tag = if self == Kind::BlockLz4 { 1 } else { 2 };
                let len = MAX_BLOCK_BYTES as u32;
                let mut header = vec![tag];
                header.extend_from_slice(&len.to_le_bytes());
                let mut zeros = header.clone();
                zeros.extend(vec![0; 1 << 16]);
                vec![
                    Input {
                        bytes: header,
                        arg: MAX_BLOCK_BYTES as u64,
                    },
                    Input {
                        bytes: zeros,
                        arg: MAX_BLOCK_BYTES as u64,
                    },
                ]
            }
            _ => vec![],
        }
    }
}

/// One generated input: bytes and, for block decoders the expected length, for prefix boxes the bits.
#[derive(Clone, Debug)]
struct Input {
    bytes: Vec<u8>,
    arg: u64,
}

#[derive(Clone, Copy, Debug)]
enum Origin {
    Edge(usize),
    Generated { seed: u64, index: usize },
}

struct Stats {
    kind: Kind,
    inputs: usize,
    decoded: usize,
    largest: usize,
    peak: usize,
    secs: f64,
}

impl Stats {
    fn new(kind: Kind) -> Self {
        Self {
            kind,
            inputs: 0,
            decoded: 0,
            largest: 0,
            peak: 0,
            secs: 0.0,
        }
    }
}

/// Runs one input through its decoder: no panic, no allocation over the bound, and what decodes
/// re-encodes to the same value.
fn check(kind: Kind, input: &Input, origin: Origin, st: &mut Stats, failures: &mut Vec<String>) {
    st.inputs += 1;
    let m = measure(|| run(kind, input));
    st.largest = st.largest.max(m.largest);
    st.peak = st.peak.max(m.peak);
    let bound = kind.bound(input);
    match m.result {
        Err(p) => {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            failures.push(failure(kind, origin, input, &format!("panicked: {msg}")));
        }
        Ok(Err(why)) => failures.push(failure(kind, origin, input, &why)),
        Ok(Ok(decoded)) => st.decoded += usize::from(decoded),
    }
    if m.largest > bound {
        failures.push(failure(
            kind,
            origin,
            input,
            &format!(
                "allocated {} bytes at once; the bound is {bound}",
                m.largest
            ),
        ));
    }
}

fn failure(kind: Kind, origin: Origin, input: &Input, why: &str) -> String {
    let shown = &input.bytes[..input.bytes.len().min(4096)];
    let hex: String = shown.iter().map(|b| format!("{b:02x}")).collect();
    let origin = match origin {
        Origin::Edge(i) => format!("edge input {i}"),
        Origin::Generated { seed, index } => format!("seed {seed:#x} index {index}"),
    };
    format!(
        "{}: {why}\n  {origin}, arg {}, {} bytes{}: {hex}",
        kind.name(),
        input.arg,
        input.bytes.len(),
        if shown.len() < input.bytes.len() {
            " (first 4096 shown)"
        } else {
            ""
        }
    )
}

/// Decodes `input` as the node would; `Ok(true)` if it decoded, `Ok(false)` if refused, `Err` if a
/// decoded value breaks a property. Runs under the allocation counter: keep checks cheap.
fn run(kind: Kind, input: &Input) -> Result<bool, String> {
    let b = &input.bytes[..];
    match kind {
        Kind::FrameLen => {
            let prefix: [u8; 4] = b.try_into().map_err(|_| "frame_len input of 4 bytes")?;
            let value = u32::from_le_bytes(prefix) as usize;
            match wire::frame_len(prefix) {
                Ok(len) if len == value && len <= MAX_FRAME_BYTES => Ok(true),
                Err(wire::WireError::TooLarge(n)) if n == value && n > MAX_FRAME_BYTES => Ok(false),
                other => Err(format!("frame_len({value}) gave {other:?}")),
            }
        }
        Kind::RequestFrame => Ok(wire::decode::<Request>(b).is_ok()),
        Kind::RequestBody => Ok(wire::decode_body::<Request>(b).is_ok()),
        Kind::ResponseFrame => Ok(wire::decode::<Response>(b).map(follow_response).is_ok()),
        Kind::ResponseBody => Ok(wire::decode_body::<Response>(b)
            .map(follow_response)
            .is_ok()),
        Kind::Announcement => match wire::decode::<Response>(b) {
            Ok(Response::Heads(heads)) => {
                // As the node treats an announcement: each head's seal is checked, bad ones dropped.
                Ok(heads.iter().all(|h| seal::verify_head(h).is_ok()))
            }
            Ok(_) | Err(_) => Ok(false),
        },
        Kind::Manifest => match VersionManifest::decode(b) {
            Ok(m) => Ok(seal::verify_manifest(&m).is_ok()),
            Err(_) => Ok(false),
        },
        Kind::TreeNode => Ok(Node::decode(b).is_ok()),
        Kind::BlockLz4 | Kind::BlockZstd => match decode_block(b, input.arg as usize) {
            Ok(raw) if raw.len() == input.arg as usize => Ok(true),
            Ok(raw) => Err(format!(
                "decoded {} bytes, {} expected",
                raw.len(),
                input.arg
            )),
            Err(_) => Ok(false),
        },
        Kind::BlockKey => match (block_from_key(b), b.len() == 12) {
            // Every 12-byte key is some block's key, and maps back to itself.
            (Some(p), true) if block_key(p)[..] == *b => Ok(true),
            (None, false) => Ok(false),
            (got, _) => Err(format!("block_from_key gave {got:?}")),
        },
        Kind::WorkingKey => match keys::parse_working(b) {
            // Compared in place: this decoder must not allocate at all.
            Some((i, v)) if b[..4] == i.to_be_bytes() && b[4..8] == v.to_be_bytes() => Ok(true),
            None if b.len() < 8 => Ok(false),
            other => Err(format!("parse_working gave {other:?}")),
        },
        Kind::PrefixBox => {
            let (lo, hi) = block_box_of_prefix(b, input.arg as usize);
            match (0..3).all(|a| lo[a] <= hi[a]) {
                true => Ok(true),
                false => Err(format!("empty box {lo:?}..{hi:?}")),
            }
        }
    }
}

/// What the node does next with a decoded response: a manifest is decoded and its seals checked,
/// heads have their seals checked.
fn follow_response(r: Response) {
    match r {
        Response::Manifest(bytes) => {
            if let Ok(m) = VersionManifest::decode(&bytes) {
                let _ = seal::verify_manifest(&m);
            }
        }
        Response::Heads(heads) => {
            for h in &heads {
                let _ = seal::verify_head(h);
            }
        }
        Response::Objects(_)
        | Response::Refused(_)
        | Response::HeadsUnchanged
        | Response::PushState { .. }
        | Response::LabelGrant(_) => {}
    }
}

// ---------------------------------------------------------------------------------------------------
// Allocation counting.

#[global_allocator]
static ALLOC: Counting = Counting;

/// The system allocator, noting (per thread, while tracking) the largest single allocation and the
/// peak of bytes allocated and not yet freed.
struct Counting;

thread_local! {
    static TRACKING: Cell<bool> = const { Cell::new(false) };
    static LARGEST: Cell<usize> = const { Cell::new(0) };
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn note_alloc(size: usize) {
    let _ = TRACKING.try_with(|t| {
        if t.get() {
            LARGEST.set(LARGEST.get().max(size));
            let live = LIVE.get() + size as isize;
            LIVE.set(live);
            PEAK.set(PEAK.get().max(live));
        }
    });
}

fn note_free(size: usize) {
    let _ = TRACKING.try_with(|t| {
        if t.get() {
            LIVE.set(LIVE.get() - size as isize);
        }
    });
}

// SAFETY: every call is forwarded unchanged to the system allocator; the bookkeeping touches only
// const-initialised thread-locals without destructors, which never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_alloc(layout.size());
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, which System shares.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_alloc(layout.size());
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        note_free(layout.size());
        // SAFETY: `ptr` came from System with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_free(layout.size());
        note_alloc(new_size);
        // SAFETY: as for `dealloc` and `alloc`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

struct Measured<R> {
    result: std::thread::Result<R>,
    largest: usize,
    peak: usize,
}

fn measure<R>(f: impl FnOnce() -> R) -> Measured<R> {
    LARGEST.set(0);
    LIVE.set(0);
    PEAK.set(0);
    TRACKING.set(true);
    let result = panic::catch_unwind(AssertUnwindSafe(f));
    TRACKING.set(false);
    Measured {
        result,
        largest: LARGEST.get(),
        peak: PEAK.get().max(0) as usize,
    }
}

// ---------------------------------------------------------------------------------------------------
// Input generation.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Strategy {
    Random,
    Boundary,
    Mutated,
    Valid,
}

/// Lengths where off-by-one bugs live.
const BOUNDARY_LENS: &[usize] = &[
    0, 1, 2, 3, 4, 5, 7, 8, 9, 11, 12, 13, 15, 16, 17, 31, 32, 33, 37, 63, 64, 65, 127, 128, 129,
    255, 256, 257, 1023, 1024, 4095, 4096, 4097,
];

/// Values to write into length fields.
const BIG_VALUES: &[u64] = &[
    64,
    65,
    127,
    128,
    255,
    256,
    4096,
    65_535,
    65_536,
    1 << 20,
    MAX_FRAME_BYTES as u64,
    MAX_FRAME_BYTES as u64 + 1,
    1 << 31,
    u32::MAX as u64,
    u64::MAX,
];

fn generate(kind: Kind, corpus: &Corpus, rng: &mut Rng) -> (Input, Strategy) {
    let items = corpus.items(kind);
    let roll = rng.below(100);
    let strategy = match roll {
        0..20 => Strategy::Random,
        20..32 => Strategy::Boundary,
        32..95 => Strategy::Mutated,
        _ => Strategy::Valid,
    };
    let base = items[rng.below(items.len())].clone();
    let input = match strategy {
        Strategy::Valid => base,
        Strategy::Random => random_input(kind, rng),
        Strategy::Boundary => boundary_input(kind, base, rng),
        Strategy::Mutated => mutated_input(kind, base, items, rng),
    };
    (fit(kind, input), strategy)
}

/// Purely random bytes, with just enough structure for some kinds to get past the first check.
fn random_input(kind: Kind, rng: &mut Rng) -> Input {
    let len = match rng.below(10) {
        0..6 => rng.below(64),
        6..9 => rng.below(1024),
        _ => rng.below(16 * 1024),
    };
    let mut bytes = rng.bytes(len);
    let mut arg = rng.next() % 300;
    match kind {
        Kind::TreeNode if rng.chance(80) => bytes.insert(0, b'T'),
        Kind::RequestFrame | Kind::ResponseFrame | Kind::Announcement if rng.chance(70) => {
            let n = bytes.len() as u32;
            bytes.splice(0..0, n.to_le_bytes());
        }
        Kind::BlockLz4 | Kind::BlockZstd => {
            arg = [0, 1, 7, 64, 512, 4096, 32768][rng.below(7)];
            let tag = match (kind, rng.below(10)) {
                (_, 0) => rng.next() as u8,
                (Kind::BlockLz4, _) => 1,
                _ => 2,
            };
            let mut header = vec![tag];
            header.extend_from_slice(&(arg as u32).to_le_bytes());
            if kind == Kind::BlockZstd && rng.chance(60) {
                // The zstd frame magic, so the decompressor parses a random frame header.
                header.extend_from_slice(&[0x28, 0xb5, 0x2f, 0xfd]);
            }
            bytes.splice(0..0, header);
        }
        _ => {}
    }
    Input { bytes, arg }
}

/// An input of a boundary length: random, a valid encoding cut or padded, or varint continuations.
fn boundary_input(kind: Kind, base: Input, rng: &mut Rng) -> Input {
    let mut lens = BOUNDARY_LENS.to_vec();
    if kind == Kind::TreeNode {
        lens.extend([MAX_NODE_BYTES - 1, MAX_NODE_BYTES, MAX_NODE_BYTES + 1]);
    }
    let n = base.bytes.len();
    lens.extend([n.saturating_sub(1), n, n + 1]);
    let len = lens[rng.below(lens.len())];
    let mut bytes = match rng.below(4) {
        0 => rng.bytes(len),
        1 => vec![0x80; len],
        2 => vec![0xff; len],
        _ => {
            let mut b = base.bytes.clone();
            let pad = [0u8, 0xff, rng.next() as u8][rng.below(3)];
            b.resize(len, pad);
            b
        }
    };
    if kind == Kind::TreeNode && !bytes.is_empty() && rng.chance(70) {
        bytes[0] = b'T';
    }
    let mut arg = base.arg;
    if kind.is_block() {
        let sizes = [0, 1, 4, 5, 4096, 262_144, 2 << 20, MAX_BLOCK_BYTES as u64];
        arg = sizes[rng.below(sizes.len())];
        if bytes.len() >= 5 && rng.chance(70) {
            bytes[1..5].copy_from_slice(&(arg as u32).to_le_bytes());
        }
    }
    if kind.is_frame() && bytes.len() >= 4 {
        let prefixes = [
            0,
            1,
            (len as u64).saturating_sub(5),
            len as u64 - 4,
            len as u64 - 3,
            MAX_FRAME_BYTES as u64,
            MAX_FRAME_BYTES as u64 + 1,
            u32::MAX as u64,
        ];
        let p = prefixes[rng.below(prefixes.len())] as u32;
        bytes[..4].copy_from_slice(&p.to_le_bytes());
    }
    Input { bytes, arg }
}

/// One to four mutations of a valid encoding. Frames are mutated in their body and usually given a
/// matching length prefix; block payloads usually keep a header that matches the expected length, so
/// the decompressors see the mutated data.
fn mutated_input(kind: Kind, base: Input, items: &[Input], rng: &mut Rng) -> Input {
    let Input { mut bytes, mut arg } = base;
    let frame = kind.is_frame() && bytes.len() >= 4 && rng.chance(80);
    let mut body = if frame {
        bytes.split_off(4)
    } else {
        std::mem::take(&mut bytes)
    };
    for _ in 0..1 + rng.below(4) {
        mutate(&mut body, items, rng);
    }
    if frame {
        let prefix = match rng.below(10) {
            0 => rng.next() as u32,
            1 => BIG_VALUES[rng.below(BIG_VALUES.len())] as u32,
            2 => u32::from_le_bytes(bytes[..4].try_into().expect("4 bytes")),
            _ => body.len() as u32,
        };
        bytes = prefix.to_le_bytes().to_vec();
        bytes.extend(body);
    } else {
        bytes = body;
    }
    if kind.is_block() {
        match rng.below(10) {
            // Inflate the header's length and expect it, as a damaged instance setting would.
            0 if bytes.len() >= 5 => {
                arg = [0, 1, 4096, 262_144, MAX_BLOCK_BYTES as u64][rng.below(5)];
                bytes[1..5].copy_from_slice(&(arg as u32).to_le_bytes());
            }
            0..3 => {}
            _ if bytes.len() >= 5 => {
                bytes[1..5].copy_from_slice(&(arg as u32).to_le_bytes());
            }
            _ => {}
        }
    }
    if kind == Kind::PrefixBox && rng.chance(50) {
        let bits = [0, 1, 3, 95, 96, 97, 255, 256, 1 << 20, u64::MAX];
        arg = bits[rng.below(bits.len())];
    }
    Input { bytes, arg }
}

fn mutate(b: &mut Vec<u8>, items: &[Input], rng: &mut Rng) {
    let pos = |rng: &mut Rng, b: &Vec<u8>| rng.below(b.len() + 1);
    match rng.below(11) {
        // Bit flips.
        0 | 1 if !b.is_empty() => {
            let i = rng.below(b.len());
            b[i] ^= 1 << rng.below(8);
        }
        // An interesting byte.
        2 if !b.is_empty() => {
            let i = rng.below(b.len());
            b[i] = [0x00, 0x01, 0x3f, 0x40, 0x7f, 0x80, 0xfe, 0xff][rng.below(8)];
        }
        // Truncation.
        3 => {
            let at = pos(rng, b);
            b.truncate(at);
        }
        // Random tail.
        4 => {
            let n = 1 + rng.below(64);
            b.extend(rng.bytes(n));
        }
        // Length-field inflation: a byte replaced by a large varint (postcard's lengths and counts),
        // often near the head where the outer lengths sit, often claiming as many elements as bytes
        // remain (the most a decoder trusting the input could be led to reserve).
        5 | 6 if !b.is_empty() => {
            let i = match rng.chance(50) {
                true => rng.below(b.len().min(8)),
                false => rng.below(b.len()),
            };
            let remaining = (b.len() - i) as u64;
            let v = match rng.chance(50) {
                true => BIG_VALUES[rng.below(BIG_VALUES.len())],
                false => remaining / 2 + rng.next() % (remaining / 2 + 1),
            };
            b.splice(i..i + 1, varint(v));
        }
        // Off-by-a-few in a small length field.
        7 if !b.is_empty() => {
            let i = rng.below(b.len());
            let delta = [1u8, 2, 8, 0xff][rng.below(4)];
            b[i] = b[i].wrapping_add(delta);
        }
        // Delete or duplicate a chunk.
        8 if !b.is_empty() => {
            let start = rng.below(b.len());
            let end = (start + 1 + rng.below(64)).min(b.len());
            if rng.chance(50) {
                b.drain(start..end);
            } else {
                let chunk = b[start..end].to_vec();
                let at = pos(rng, b);
                b.splice(at..at, chunk);
            }
        }
        // Splice: this encoding's head with another's tail.
        9 => {
            let other = &items[rng.below(items.len())].bytes;
            let at = pos(rng, b);
            let from = rng.below(other.len() + 1);
            b.truncate(at);
            b.extend_from_slice(&other[from..]);
        }
        // Overwrite a run with random bytes.
        _ if !b.is_empty() => {
            let start = rng.below(b.len());
            let end = (start + 1 + rng.below(16)).min(b.len());
            for x in &mut b[start..end] {
                *x = rng.next() as u8;
            }
        }
        _ => {
            let n = 1 + rng.below(8);
            b.extend(rng.bytes(n));
        }
    }
}

/// Shapes an input for decoders with a fixed-size argument.
fn fit(kind: Kind, mut input: Input) -> Input {
    if kind == Kind::FrameLen {
        input.bytes.resize(4, 0);
    }
    input
}

fn varint(mut v: u64) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return out;
        }
        out.push(byte | 0x80);
    }
}

/// A seeded stream (rand's `StdRng`) with the few draws the generators use.
struct Rng(rand::rngs::StdRng);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(rand::SeedableRng::seed_from_u64(seed))
    }

    fn next(&mut self) -> u64 {
        rand::RngCore::next_u64(&mut self.0)
    }

    fn below(&mut self, n: usize) -> usize {
        rand::Rng::random_range(&mut self.0, 0..n)
    }

    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut out = vec![0; n];
        rand::RngCore::fill_bytes(&mut self.0, &mut out);
        out
    }
}

fn env_number(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    let v = v.trim().replace('_', "");
    match v.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => v.parse().ok(),
    }
}

// ---------------------------------------------------------------------------------------------------
// Valid encodings, built deterministically (fixed key, fixed UUIDs), so a seed reproduces an input.

struct Corpus {
    frame_prefixes: Vec<Input>,
    request_frames: Vec<Input>,
    request_bodies: Vec<Input>,
    response_frames: Vec<Input>,
    response_bodies: Vec<Input>,
    announcements: Vec<Input>,
    manifests: Vec<Input>,
    nodes: Vec<Input>,
    lz4: Vec<Input>,
    zstd: Vec<Input>,
    block_keys: Vec<Input>,
    working_keys: Vec<Input>,
    prefixes: Vec<Input>,
}

const REPO: Uuid = Uuid(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef);
const GRAY: Uuid = Uuid(0x1111);
const SEG: Uuid = Uuid(0x2222);
const KV: Uuid = Uuid(0x3333);

impl Corpus {
    fn items(&self, kind: Kind) -> &[Input] {
        match kind {
            Kind::FrameLen => &self.frame_prefixes,
            Kind::RequestFrame => &self.request_frames,
            Kind::RequestBody => &self.request_bodies,
            Kind::ResponseFrame => &self.response_frames,
            Kind::ResponseBody => &self.response_bodies,
            Kind::Announcement => &self.announcements,
            Kind::Manifest => &self.manifests,
            Kind::TreeNode => &self.nodes,
            Kind::BlockLz4 => &self.lz4,
            Kind::BlockZstd => &self.zstd,
            Kind::BlockKey => &self.block_keys,
            Kind::WorkingKey => &self.working_keys,
            Kind::PrefixBox => &self.prefixes,
        }
    }

    fn build() -> Self {
        let plain = |bytes: Vec<u8>| Input { bytes, arg: 0 };
        let sealer = KeySealer::new(Keypair::ed25519_from_bytes([7u8; 32]).expect("ed25519 key"));

        // Blocks of several sizes and textures, in both codecs.
        let mut lz4 = Vec::new();
        let mut zstd = Vec::new();
        let mut block_ids = Vec::new();
        for (i, len) in [16 * 16 * 16, 8 * 8 * 8 * 8, 32 * 32 * 32, 64 * 64 * 64]
            .into_iter()
            .enumerate()
        {
            for texture in 0..4 {
                let raw = voxels(len, (i * 4 + texture) as u64, texture);
                let a = Codec::Lz4.encode(&raw, [raw.len() as i32, 1, 1]);
                let z = Codec::Zstd(3).encode(&raw, [raw.len() as i32, 1, 1]);
                block_ids.push(ObjectId::of(&a));
                lz4.push(Input {
                    bytes: a,
                    arg: len as u64,
                });
                zstd.push(Input {
                    bytes: z,
                    arg: len as u64,
                });
            }
        }

        // Trees: a dense block tree (inner nodes and full leaves), a key-value tree with names, a
        // single leaf.
        let mut nodes = Vec::new();
        let mut block_keys = Vec::new();
        let mut coords = Vec::new();
        for z in 0..8 {
            for y in 0..8 {
                for x in -4..4 {
                    coords.push([x, y, z]);
                }
            }
        }
        coords.push([1 << 20, -(1 << 20), 77]);
        let block_entries: Vec<Entry> = coords
            .iter()
            .enumerate()
            .map(|(i, &p)| {
                block_keys.push(plain(block_key(p).to_vec()));
                Entry {
                    key: block_key(p).to_vec(),
                    name: vec![],
                    object: block_ids[i % block_ids.len()],
                }
            })
            .collect();
        let (gray_root, n) = tree(block_entries.clone());
        nodes.extend(n);
        let kv_entries: Vec<Entry> = (0..300)
            .map(|i| {
                let name = format!("key-{i:04}-{}", "x".repeat(i % 40));
                Entry {
                    key: ObjectId::of(name.as_bytes()).0.to_vec(),
                    name: name.into_bytes(),
                    object: ObjectId::of(&[i as u8]),
                }
            })
            .collect();
        let (kv_root, n) = tree(kv_entries);
        nodes.extend(n);
        let (seg_root, n) = tree(block_entries[..3].to_vec());
        nodes.extend(n);
        let nodes: Vec<Input> = nodes.into_iter().map(plain).collect();

        // A manifest chain: root, child, branch, merge.
        let instances = vec![
            instance("gray", GRAY, "uint8blk", Codec::Lz4, 16),
            instance("seg", SEG, "labelblk", Codec::Zstd(3), 8),
            instance("kv", KV, "keyvalue", Codec::Lz4, 1),
        ];
        let roots_a = BTreeMap::from([(GRAY, gray_root), (KV, kv_root)]);
        let roots_b = BTreeMap::from([(GRAY, gray_root), (SEG, seg_root)]);
        let plan = [
            (0xa1, &[][..], "master", &roots_a),
            (0xa2, &[0xa1][..], "master", &roots_b),
            (0xa3, &[0xa1][..], "side", &roots_a),
            (0xa4, &[0xa2, 0xa3][..], "master", &roots_b),
        ];
        let mut versions: Vec<VersionDef> = Vec::new();
        for (uuid, parents, branch, roots) in plan {
            versions.push(version(
                &sealer, &instances, &versions, uuid, parents, branch, roots,
            ));
        }
        let manifest = |n: usize| VersionManifest {
            repo_root: REPO,
            alias: "fuzz".into(),
            description: "a manifest to mutate".into(),
            instances: instances.clone(),
            versions: versions[..n].to_vec(),
            target: versions[n - 1].uuid,
        };
        let manifests: Vec<Vec<u8>> = [1, 2, 4].iter().map(|&n| manifest(n).encode()).collect();

        // Heads as announced.
        let heads: Vec<Head> = versions
            .iter()
            .map(|v| Head {
                repo: REPO,
                version: v.uuid,
                parents: v.parents.clone(),
                commit_hash: v.commit_hash,
                seal: v.seal.clone().expect("sealed"),
                holds: None,
            })
            .collect();
        let announcements: Vec<Vec<u8>> = [0, 1, 2, 4]
            .iter()
            .map(|&n| wire::encode(&Response::Heads(heads[..n].to_vec())))
            .collect();

        // Requests.
        let want = |i: usize| Want {
            id: ObjectId::of(&i.to_le_bytes()),
            path: match i % 3 {
                0 => WantPath::Root { data: GRAY },
                1 => WantPath::Node {
                    data: KV,
                    prefix: vec![0xa5; i % 65],
                    depth: (i * 3 % 256) as u16,
                },
                _ => WantPath::Entry {
                    data: SEG,
                    key: block_key([i as i32, -(i as i32), 3]).to_vec(),
                },
            },
        };
        let requests = [
            Request::Heads,
            Request::HeadsIfChanged {
                digest: ObjectId([0x5a; 32]),
            },
            Request::Manifest {
                version: Uuid(0xa4),
            },
            Request::Push {
                version: Uuid(0xa4),
            },
            Request::PushStatus {
                version: Uuid(0xa4),
            },
            Request::GrantLabels {
                version: Uuid(0xa4),
                data: SEG,
            },
            Request::Objects {
                version: Uuid(0xa2),
                wants: vec![want(0)],
            },
            Request::Objects {
                version: Uuid(0xa2),
                wants: (0..8).map(want).collect(),
            },
            Request::Objects {
                version: Uuid(u128::MAX),
                wants: (0..64).map(want).collect(),
            },
        ];
        let request_frames: Vec<Vec<u8>> = requests.iter().map(wire::encode).collect();

        // Responses.
        let mut responses = vec![
            Response::Manifest(manifests[1].clone()),
            Response::Manifest(manifests[2].clone()),
            Response::Objects(vec![]),
            Response::Objects(vec![
                ObjectReply::Found(nodes[0].bytes.clone()),
                ObjectReply::Missing,
                ObjectReply::Found(lz4[0].bytes.clone()),
            ]),
            Response::Objects(
                (0..64)
                    .map(|i| match i % 4 {
                        0 => ObjectReply::Missing,
                        1 => ObjectReply::Found(nodes[i % nodes.len()].bytes.clone()),
                        _ => ObjectReply::Found(zstd[i % 8].bytes.clone()),
                    })
                    .collect(),
            ),
            Response::Refused("version a4 is not shared with peer 12D3KooW".into()),
            Response::HeadsUnchanged,
            Response::PushState {
                state: "waiting".into(),
                detail: "no connected peer offers version a4".into(),
            },
            Response::LabelGrant(dvid_store::types::labelmap::Grant {
                labels: (1 << 52, 1 << 53),
                mutations: (1 << 40, 1 << 41),
            }),
        ];
        responses.push(Response::Heads(heads.clone()));
        // A laptop's partial head: the region and instances it holds.
        let mut partial = heads.clone();
        for h in &mut partial {
            h.holds = Some(vec![dvid_store::Restriction {
                instances: Some(vec!["grayscale".into(), "segmentation".into()]),
                region: Some(([0, 0, 0], [127, 127, 127])),
            }]);
        }
        responses.push(Response::Heads(partial));
        let response_frames: Vec<Vec<u8>> = responses.iter().map(wire::encode).collect();

        let body = |f: &Vec<u8>| plain(f[4..].to_vec());
        let frame_prefixes = request_frames
            .iter()
            .chain(&response_frames)
            .map(|f| plain(f[..4].to_vec()))
            .collect();
        let working_keys = (0..8u32)
            .map(|i| {
                plain(keys::working(
                    i * 977,
                    u32::MAX - i,
                    &block_key([i as i32; 3]),
                ))
            })
            .chain([
                plain(keys::working(1, 2, b"")),
                plain(keys::working(3, 4, b"name")),
            ])
            .collect();
        let prefixes = block_keys
            .iter()
            .take(32)
            .enumerate()
            .map(|(i, k)| Input {
                bytes: k.bytes[..1 + i % 12].to_vec(),
                arg: (i * 3) as u64,
            })
            .collect();
        Self {
            frame_prefixes,
            request_bodies: request_frames.iter().map(body).collect(),
            request_frames: request_frames.into_iter().map(plain).collect(),
            response_bodies: response_frames.iter().map(body).collect(),
            response_frames: response_frames.into_iter().map(plain).collect(),
            announcements: announcements.into_iter().map(plain).collect(),
            manifests: manifests.into_iter().map(plain).collect(),
            nodes,
            lz4,
            zstd,
            block_keys,
            working_keys,
            prefixes,
        }
    }
}

/// Builds a tree over `entries` (sorted here) and returns its root and every node's encoding.
fn tree(mut entries: Vec<Entry>) -> (TreeRef, Vec<Vec<u8>>) {
    entries.sort_by(|a, b| a.key.cmp(&b.key));
    let trees = Trees::new(Arc::new(MemEngine::new()), 1024);
    let changes: Vec<Change> = entries.into_iter().map(Change::Put).collect();
    let mut out = Vec::new();
    let root = trees
        .apply(None, &changes, &mut out)
        .expect("building a tree in memory")
        .expect("a non-empty tree");
    (root, out.into_iter().map(|(_, bytes)| bytes).collect())
}

fn instance(name: &str, data_uuid: Uuid, datatype: &str, codec: Codec, edge: i32) -> InstanceDef {
    let voxels = dvid_store::types::by_name(datatype).is_ok_and(|t| t.voxel_bytes().is_some());
    let mut spec = match voxels {
        true => InstanceSpec::voxels(datatype, codec, edge),
        false => InstanceSpec::plain(datatype),
    }
    .expect("a valid spec");
    spec.tags = BTreeMap::from([("source".to_string(), "fuzz".to_string())]);
    InstanceDef {
        name: name.into(),
        data_uuid,
        spec,
    }
}

/// A sealed version whose commit hash is computed as `VersionManifest::verify` recomputes it.
fn version(
    sealer: &KeySealer,
    instances: &[InstanceDef],
    earlier: &[VersionDef],
    uuid: u128,
    parents: &[u128],
    branch: &str,
    roots: &BTreeMap<Uuid, TreeRef>,
) -> VersionDef {
    let uuid = Uuid(uuid);
    let parents: Vec<Uuid> = parents.iter().map(|&p| Uuid(p)).collect();
    let parent_hashes: Vec<Option<ObjectId>> = parents
        .iter()
        .map(|p| earlier.iter().find(|v| v.uuid == *p).map(|v| v.commit_hash))
        .collect();
    let mut sorted: Vec<&InstanceDef> = instances.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    let root_list: Vec<(Uuid, &str, Option<ObjectId>)> = sorted
        .iter()
        .map(|i| {
            (
                i.data_uuid,
                i.spec.datatype.name(),
                roots.get(&i.data_uuid).map(|r| r.id),
            )
        })
        .collect();
    // Spelled out rather than through VersionManifest::content_hash: a check of that function.
    let hash = commit_hash(uuid, &parent_hashes, &root_list, branch);
    VersionDef {
        uuid,
        parents: parents.clone(),
        branch: branch.into(),
        note: format!("version {uuid}"),
        log: vec!["imported".into(), "proofread".into()],
        created: "2025-01-01T00:00:00Z".into(),
        updated: "2025-01-02T00:00:00Z".into(),
        instances: instances.iter().map(|i| i.data_uuid).collect(),
        roots: roots.clone(),
        commit_hash: hash,
        seal: Some(sealer.seal(&seal_message(REPO, uuid, &parents, hash))),
    }
}

/// Block contents: zeros, EM-like cells with noise, random, or uint64 labels.
fn voxels(len: usize, seed: u64, texture: usize) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    match texture {
        0 => vec![0; len],
        1 => (0..len)
            .map(|i| {
                let cell = ((i / 23) ^ (i / 4096)) as u8 & 0xf0;
                match rng.below(8) {
                    0 => cell.wrapping_add(rng.next() as u8 & 7),
                    _ => cell,
                }
            })
            .collect(),
        2 => rng.bytes(len),
        _ => (0..len / 8)
            .flat_map(|i| (1000 + (i / 37) as u64 % 5).to_le_bytes())
            .collect(),
    }
}
