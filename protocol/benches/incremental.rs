//! Metadata cost of an incremental pull, in memory with the real engine and serving code:
//! `cargo bench -p dvid-protocol --bench incremental`. For n blocks (4^3 voxels each) and a child
//! version changing 1% of them, prints payload bytes of the changed objects, metadata bytes (tree
//! nodes, requests, framing), requests, and rounds (request waves, each a round trip).

use dvid_protocol::pull::{Output, Pull, PullConfig};
use dvid_protocol::serve::answer;
use dvid_protocol::wire::{self, ObjectReply, Request, Response};
use dvid_store::catalog::Uuid;
use dvid_store::{Codec, InstanceSpec, Store, Subvolume, VersionManifest};

fn main() {
    let sizes: Vec<usize> = if std::env::args().any(|a| a == "--quick") {
        vec![10_000, 100_000]
    } else {
        vec![10_000, 100_000, 1_000_000]
    };
    println!("incremental pull of a child with 1% of n blocks changed (4^3 uint8 blocks, lz4):");
    println!(
        "{:>9} {:>7} {:>14} {:>14} {:>9} {:>9} {:>7}",
        "n", "k", "payload B", "metadata B", "meta/k", "requests", "rounds"
    );
    for n in sizes {
        let r = measure(n);
        println!(
            "{:>9} {:>7} {:>14} {:>14} {:>9.0} {:>9} {:>7}",
            n,
            r.k,
            r.payload,
            r.metadata,
            r.metadata as f64 / r.k as f64,
            r.requests,
            r.rounds
        );
    }
}

struct Result {
    k: usize,
    payload: u64,
    metadata: u64,
    requests: u64,
    rounds: u64,
}

fn measure(n: usize) -> Result {
    let origin = Store::open_memory().unwrap();
    let root = origin.create_repo("bench", "").unwrap().to_hex();
    origin
        .create_instance(
            &root,
            "gray",
            InstanceSpec::voxels("uint8blk", Codec::Lz4, 4).unwrap(),
        )
        .unwrap();
    // A slab of n blocks: 100 x 100 x n/10^4, distinct contents.
    let dims = [100usize, 100, n / 10_000];
    let vox = [dims[0] * 4, dims[1] * 4, dims[2] * 4];
    let data: Vec<u8> = (0..vox.iter().product::<usize>())
        .map(|i| ((i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 56) as u8)
        .collect();
    let sub = Subvolume::new([0, 0, 0], [vox[0] as u32, vox[1] as u32, vox[2] as u32]).unwrap();
    origin
        .write_subvolume(&origin.handle(&root, "gray").unwrap(), sub, &data)
        .unwrap();
    origin.commit(&root, None, &[]).unwrap();
    origin.share_repo(&root, &["recv".into()]).unwrap();
    let recv = Store::open_memory().unwrap();
    pull(&origin, &recv, &root);

    let child = origin.new_version(&root, "").unwrap().to_hex();
    let k = n / 100;
    let mut seed = n as u64;
    for _ in 0..k {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let b = [
            (seed >> 33) as usize % dims[0],
            (seed >> 43) as usize % dims[1],
            (seed >> 53) as usize % dims[2],
        ];
        let block: Vec<u8> = (0..64)
            .map(|i| (seed >> (i % 56)) as u8 ^ i as u8)
            .collect();
        let s = Subvolume::new(
            [b[0] as i32 * 4, b[1] as i32 * 4, b[2] as i32 * 4],
            [4, 4, 4],
        )
        .unwrap();
        origin
            .write_subvolume(&origin.handle(&child, "gray").unwrap(), s, &block)
            .unwrap();
    }
    origin.commit(&child, None, &[]).unwrap();
    let mut r = pull(&origin, &recv, &child);
    r.k = k;
    r
}

/// Pulls `version` from `origin` into `recv`, counting bytes by kind and request waves.
fn pull(origin: &Store, recv: &Store, version: &str) -> Result {
    let v = Uuid(u128::from_str_radix(version, 16).unwrap());
    let req = Request::Manifest { version: v };
    let mut metadata = wire::encode(&req).len() as u64;
    let resp = answer(origin, "recv", req);
    metadata += wire::encode(&resp).len() as u64;
    let Response::Manifest(bytes) = resp else {
        panic!("{resp:?}")
    };
    let manifest = VersionManifest::decode(&bytes).unwrap();
    let mut engine: Pull<&str> = Pull::new(&manifest, None, PullConfig::default());
    engine.add_peer("origin");
    let (mut payload, mut rounds) = (0u64, 1u64);
    let mut now = 0;
    loop {
        now += 1;
        let outputs = engine.poll(recv.objects(), now).unwrap();
        let mut replies = Vec::new();
        let mut sent = false;
        for o in outputs {
            match o {
                Output::Send {
                    request, message, ..
                } => {
                    sent = true;
                    metadata += wire::encode(&message).len() as u64;
                    let resp = answer(origin, "recv", message);
                    let frame = wire::encode(&resp).len() as u64;
                    let Response::Objects(objs) = resp else {
                        panic!("{resp:?}")
                    };
                    // Payload objects count as payload; tree nodes (tag 'T') and framing as metadata.
                    let body: u64 = objs
                        .iter()
                        .map(|o| match o {
                            ObjectReply::Found(b) if b.first() != Some(&b'T') => b.len() as u64,
                            _ => 0,
                        })
                        .sum();
                    payload += body;
                    metadata += frame - body;
                    replies.push((request, objs));
                }
                Output::Done => {
                    recv.import_version(&manifest, None).unwrap();
                    let p = engine.progress();
                    return Result {
                        k: 0,
                        payload,
                        metadata,
                        requests: p.requests,
                        rounds,
                    };
                }
                Output::Failed(e) => panic!("{e}"),
                Output::Store(_) | Output::Ban { .. } => {}
            }
        }
        if sent {
            rounds += 1;
        }
        for (request, objs) in replies {
            for o in engine.on_reply(request, objs) {
                if let Output::Store(objects) = o {
                    recv.objects().put_objects(&objects).unwrap();
                }
            }
        }
    }
}
