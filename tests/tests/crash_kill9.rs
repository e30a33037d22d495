//! Crash safety: `kill -9` at random moments, over and over.
//!
//! 1. During writes: client threads put keys, write voxels and commit versions while the node is
//!    killed after a random delay; after every restart the store opens, and every write answered 2xx
//!    reads back with exactly its bytes (writes in flight at the kill may or may not be there).
//! 2. During a pull: the receiver is killed at random moments, restarted, and the pull resumes until
//!    the version is byte-identical to the origin's.
//!
//! The seed is printed; `DVID_CRASH_SEED=N` repeats its choices (timing still varies).

use dvid_tests::{Node, Value, json, test_volume};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// Kill-restart cycles during writes.
const ROUNDS: usize = 50;
/// Client threads writing keys and voxels, besides the one committing versions.
const WRITERS: usize = 4;
/// Each writer owns a box of voxels; neighbours share blocks (40 is not a multiple of 16).
const REGION: [usize; 3] = [40, 32, 24];
/// Older keys re-read after each restart, on top of everything written since the last one.
const SAMPLE_OLD_KEYS: usize = 10;

#[test]
fn crash_kill9_during_writes_loses_nothing_acknowledged() {
    let seed = seed();
    println!("crash test seed {seed} (DVID_CRASH_SEED={seed} repeats it)");
    let mut rng = StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();

    let n = Node::start(dir.path(), &[]);
    let repo = n.new_repo("crash");
    n.new_instance(&repo, "keyvalue", "kv", json!({}));
    n.new_instance(&repo, "uint8blk", "gray", json!({"BlockSize": "16,16,16"}));
    let chain_repo = n.new_repo("chain");
    n.new_instance(&chain_repo, "keyvalue", "kv", json!({}));
    let mut current = repo.clone();
    let mut writers: Vec<Writer> = (0..WRITERS).map(Writer::new).collect();
    let mut chain = Chain::new(&chain_repo);
    let mut snapshots: Vec<Snapshot> = Vec::new();
    let mut node = Some(n);
    let mut totals = Totals::default();

    for round in 0..ROUNDS {
        let n = node.take().expect("a running node");
        // Every eighth round starts on a new version: the old one is locked, and must never change.
        if round % 8 == 7 {
            snapshots.push(Snapshot::take(&n, &current, &writers, &mut rng));
            n.commit(&current);
            current = n.new_version(&current);
        }
        let url = n.url.clone();
        let delay = Duration::from_millis(rng.random_range(3..=300));
        let handles: Vec<_> = writers
            .drain(..)
            .map(|mut w| {
                let (url, version, wseed) = (url.clone(), current.clone(), rng.random::<u64>());
                std::thread::spawn(move || {
                    w.write_until_refused(&url, &version, wseed);
                    w
                })
            })
            .collect();
        let chain_handle = {
            let url = url.clone();
            std::thread::spawn(move || {
                chain.advance_until_refused(&url);
                chain
            })
        };
        std::thread::sleep(delay);
        n.kill9();
        writers = handles
            .into_iter()
            .map(|h| h.join().expect("writer thread"))
            .collect();
        chain = chain_handle.join().expect("chain thread");

        let started = Instant::now();
        let n = Node::start(dir.path(), &[]);
        let secs = started.elapsed().as_secs_f64();
        totals.start_secs = totals.start_secs.max(secs);
        totals.start_total += secs;
        totals.crashes += 1;
        let started = Instant::now();
        let ctx = format!("seed {seed}, round {round}, killed after {delay:?}");
        for w in &mut writers {
            w.verify(&n, &current, &mut rng, &mut totals, &ctx, false);
        }
        check_key_list(&n, &current, &writers, &ctx);
        chain.verify(&n, &mut totals, &ctx, false);
        totals.verify_total += started.elapsed().as_secs_f64();
        node = Some(n);
    }

    // Everything, once more: every key, every locked snapshot, the whole chain.
    let n = node.take().expect("a running node");
    let ctx = format!("seed {seed}, final check");
    for w in &mut writers {
        w.verify(&n, &current, &mut rng, &mut totals, &ctx, true);
    }
    check_key_list(&n, &current, &writers, &ctx);
    chain.verify(&n, &mut totals, &ctx, true);
    for s in &snapshots {
        s.verify(&n, &ctx);
    }
    println!(
        "in-flight writes at the kills: {} found applied, {} not applied, {} voxel writes partly applied",
        totals.inflight_applied, totals.inflight_absent, totals.inflight_partial
    );
    println!(
        "{} versions committed through kills, {} locked snapshots re-read; restarts {:.1}s (slowest {:.2}s), checks {:.1}s",
        chain.versions.iter().filter(|v| v.locked).count(),
        snapshots.len(),
        totals.start_total,
        totals.start_secs,
        totals.verify_total
    );
    println!(
        "crashes survived: {}, acknowledged writes checked: {}, writes lost: {}",
        totals.crashes, totals.checked, totals.lost
    );
    assert_eq!(totals.lost, 0);
}

#[test]
fn crash_kill9_during_pull_resumes_to_identical() {
    let seed = seed();
    println!("pull crash seed {seed} (DVID_CRASH_SEED={seed} repeats it)");
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed);
    let size = 160usize;
    let da = tempfile::tempdir().unwrap();
    // A capped uplink stretches the pull (2 MB compressed) over several seconds, so the kills land
    // in the middle of it.
    let a = Node::start_p2p(da.path(), &["--max-upload-rate", "200000"]);
    let root = a.new_repo("pulled");
    a.new_instance(&root, "uint8blk", "gray", json!({"BlockSize": "16,16,16"}));
    a.new_instance(&root, "keyvalue", "kv", json!({}));
    let vol = test_volume([size; 3], 5);
    let raw = format!("/api/node/{root}/gray/raw/0_1_2/{size}_{size}_{size}/0_0_0");
    a.post_bytes(&raw, vol.clone());
    for i in 0..50 {
        a.post_bytes(
            &format!("/api/node/{root}/kv/key/k{i}"),
            vec![i as u8; 3000],
        );
    }
    a.commit(&root);
    let addr = a.p2p_addr();

    let db = tempfile::tempdir().unwrap();
    let mut b = Node::start(db.path(), &["--peer", &addr]);
    a.post_json(
        &format!("/api/repo/{root}/share"),
        json!({"peers": [b.peer_id()]}),
    );
    b.wait_offered(&root);
    let job = b.post_json("/api/p2p/pull", json!({"uuid": root}))["job"]
        .as_str()
        .expect("job")
        .to_string();
    let mut kills: Vec<String> = Vec::new();
    for round in 0..5 {
        // Once this run of the pull is moving, a random moment later.
        let moving = b.wait_until("the pull to move", 60, |n| {
            let st = n.get_json(&format!("/api/p2p/jobs/{job}"));
            (st["state"] != "running" || st["bytes_fetched"].as_u64().unwrap_or(0) > 0)
                .then_some(st)
        });
        if moving["state"] != "running" {
            kills.push(format!("run {round} ended before its kill: {moving}"));
            break;
        }
        let delay = Duration::from_millis(rng.random_range(20..=600));
        std::thread::sleep(delay);
        let st = b.get_json(&format!("/api/p2p/jobs/{job}"));
        kills.push(format!(
            "{} ms after run {round} moved: {}, {} bytes fetched",
            delay.as_millis(),
            st["state"].as_str().unwrap_or("?"),
            st["bytes_fetched"]
        ));
        b.kill9();
        b = Node::start(db.path(), &["--peer", &addr]);
        let st = b.get_json(&format!("/api/p2p/jobs/{job}"));
        assert_ne!(
            st["state"], "failed",
            "seed {seed}, round {round}: the pull failed after a restart: {st}"
        );
        // A version appears only when complete: never a partial or zero-filled read.
        let r = b.get(&raw);
        if r.status().is_success() {
            assert!(
                r.bytes().unwrap() == vol,
                "seed {seed}, round {round}: a readable version differs from the origin's"
            );
        }
    }
    let st = b.wait_job(&job);
    assert_eq!(st["state"], "done", "seed {seed}: {st}");
    assert!(
        b.get_bytes(&raw) == a.get_bytes(&raw),
        "seed {seed}: the pulled volume differs"
    );
    assert!(b.get_bytes(&raw) == vol);
    for i in 0..50 {
        let k = format!("/api/node/{root}/kv/key/k{i}");
        assert_eq!(b.get_bytes(&k), a.get_bytes(&k), "seed {seed}: {k}");
    }
    let info =
        |n: &Node| n.get_json(&format!("/api/repo/{root}/info"))["DAG"]["Nodes"][&root].clone();
    let (ia, ib) = (info(&a), info(&b));
    assert_eq!(ib["Locked"], true);
    assert_eq!(ia["CommitHash"], ib["CommitHash"], "seed {seed}");
    println!("pull interrupted by kill -9:");
    for k in &kills {
        println!("  {k}");
    }
    println!(
        "pull done after the restarts, byte-identical: the last run fetched {} of {} objects ({} bytes)",
        st["objects_fetched"], st["objects_total"], st["bytes_fetched"]
    );
}

fn seed() -> u64 {
    match std::env::var("DVID_CRASH_SEED") {
        Ok(s) => s.trim().parse().expect("DVID_CRASH_SEED is a number"),
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock after 1970")
            .as_nanos() as u64,
    }
}

#[derive(Default)]
struct Totals {
    crashes: usize,
    checked: usize,
    lost: usize,
    inflight_applied: usize,
    inflight_absent: usize,
    inflight_partial: usize,
    start_secs: f64,
    start_total: f64,
    verify_total: f64,
}

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("http client")
}

/// Sends a request; `Some(body)` if answered 2xx, `None` if the node went away. Any other answer
/// is a bug: the node is only ever asked for things that must succeed.
fn send(rb: reqwest::blocking::RequestBuilder, what: &str) -> Option<Vec<u8>> {
    let r = rb.send().ok()?;
    let status = r.status();
    let body = r.bytes().ok()?.to_vec();
    assert!(
        status.is_success(),
        "{what}: {status}: {}",
        String::from_utf8_lossy(&body)
    );
    Some(body)
}

/// What a key should hold: the last acknowledged value, and a write in flight at the kill.
#[derive(Clone, Default)]
struct KeyState {
    acked: Option<Vec<u8>>,
    pending: Option<Vec<u8>>,
    /// Written (or attempted) since the last verification.
    touched: bool,
}

/// One client thread's keys and box of voxels, and what the node must hold of them.
struct Writer {
    id: usize,
    next_key: u64,
    keys: BTreeMap<String, KeyState>,
    /// Acknowledged contents of the writer's box (x fastest).
    region: Vec<u8>,
    /// A voxel write in flight at the kill: offset within the box, size, bytes.
    pending_voxels: Option<([usize; 3], [usize; 3], Vec<u8>)>,
    /// Writes answered 2xx since the last verification.
    acked_since: usize,
}

impl Writer {
    fn new(id: usize) -> Self {
        Self {
            id,
            next_key: 0,
            keys: BTreeMap::new(),
            region: vec![0; REGION.iter().product()],
            pending_voxels: None,
            acked_since: 0,
        }
    }

    fn origin(&self) -> [usize; 3] {
        [self.id * REGION[0], 0, 0]
    }

    /// Writes keys and voxels into `version` until the node stops answering.
    fn write_until_refused(&mut self, url: &str, version: &str, seed: u64) {
        let mut rng = StdRng::seed_from_u64(seed);
        let http = client();
        loop {
            let roll = rng.random_range(0..100);
            let acked = if roll < 75 {
                let key = if roll < 15 && !self.keys.is_empty() {
                    let i = rng.random_range(0..self.keys.len());
                    self.keys.keys().nth(i).expect("a key").clone()
                } else {
                    self.next_key += 1;
                    format!("w{}-{}", self.id, self.next_key)
                };
                let mut value = vec![0u8; rng.random_range(1..=2048)];
                rng.fill(&mut value[..]);
                let st = self.keys.entry(key.clone()).or_default();
                st.pending = Some(value.clone());
                st.touched = true;
                let path = format!("{url}/api/node/{version}/kv/key/{key}");
                let acked = send(http.post(&path).body(value), &path).is_some();
                if acked {
                    st.acked = st.pending.take();
                }
                acked
            } else {
                let size: [usize; 3] = [
                    rng.random_range(1..=24),
                    rng.random_range(1..=24),
                    rng.random_range(1..=16),
                ];
                let at: [usize; 3] =
                    std::array::from_fn(|a| rng.random_range(0..=REGION[a] - size[a]));
                let mut data = vec![0u8; size.iter().product()];
                rng.fill(&mut data[..]);
                let o = self.origin();
                let path = format!(
                    "{url}/api/node/{version}/gray/raw/0_1_2/{}_{}_{}/{}_{}_{}",
                    size[0],
                    size[1],
                    size[2],
                    o[0] + at[0],
                    o[1] + at[1],
                    o[2] + at[2]
                );
                self.pending_voxels = Some((at, size, data.clone()));
                let acked = send(http.post(&path).body(data), &path).is_some();
                if acked {
                    let (at, size, data) = self.pending_voxels.take().expect("pending");
                    paste(&mut self.region, at, size, &data);
                }
                acked
            };
            if !acked {
                // The node is gone; what was in flight stays pending until the restart shows it.
                return;
            }
            self.acked_since += 1;
        }
    }

    /// After a restart: every acknowledged write reads back; writes in flight are there or not.
    fn verify(
        &mut self,
        n: &Node,
        version: &str,
        rng: &mut StdRng,
        totals: &mut Totals,
        ctx: &str,
        all: bool,
    ) {
        // Voxels: each one holds its acknowledged value, or the in-flight write's.
        let o = self.origin();
        let path = format!(
            "/api/node/{version}/gray/raw/0_1_2/{}_{}_{}/{}_{}_{}",
            REGION[0], REGION[1], REGION[2], o[0], o[1], o[2]
        );
        let got = n.get_bytes(&path);
        let mut inflight = self.region.clone();
        if let Some((at, size, data)) = &self.pending_voxels {
            paste(&mut inflight, *at, *size, data);
        }
        let bad = (0..got.len())
            .filter(|&i| got[i] != self.region[i] && got[i] != inflight[i])
            .count();
        if bad > 0 {
            totals.lost += 1;
            panic!(
                "{ctx}: writer {}: {bad} voxels hold neither their acknowledged value nor the in-flight write's",
                self.id
            );
        }
        if self.pending_voxels.take().is_some() {
            let applied = (0..got.len())
                .filter(|&i| inflight[i] != self.region[i])
                .map(|i| got[i] == inflight[i])
                .collect::<BTreeSet<bool>>();
            match (applied.contains(&true), applied.contains(&false)) {
                (true, true) => totals.inflight_partial += 1,
                (true, false) => totals.inflight_applied += 1,
                _ => totals.inflight_absent += 1,
            }
        }
        self.region = got;

        // Keys: everything touched since the last check, a sample of older ones (or all).
        let mut check: Vec<String> = self
            .keys
            .iter()
            .filter(|(_, s)| all || s.touched)
            .map(|(k, _)| k.clone())
            .collect();
        if !all {
            let older: Vec<&String> = self
                .keys
                .iter()
                .filter(|(_, s)| !s.touched)
                .map(|(k, _)| k)
                .collect();
            for _ in 0..SAMPLE_OLD_KEYS.min(older.len()) {
                check.push(older[rng.random_range(0..older.len())].clone());
            }
        }
        for key in check {
            let st = self.keys.get_mut(&key).expect("a known key");
            let r = n.get(&format!("/api/node/{version}/kv/key/{key}"));
            let got = match r.status().as_u16() {
                200 => Some(r.bytes().expect("body").to_vec()),
                404 => None,
                s => panic!(
                    "{ctx}: GET key {key}: {s}: {}",
                    r.text().unwrap_or_default()
                ),
            };
            let ok = got == st.acked || (st.pending.is_some() && got == st.pending);
            if !ok {
                totals.lost += 1;
                panic!(
                    "{ctx}: key {key} holds {} but the last acknowledged write was {}{}",
                    describe(&got),
                    describe(&st.acked),
                    match &st.pending {
                        Some(p) => format!(" (in flight: {})", describe(&Some(p.clone()))),
                        None => String::new(),
                    }
                );
            }
            if let Some(p) = st.pending.take() {
                if got.as_ref() == Some(&p) {
                    totals.inflight_applied += 1;
                } else {
                    totals.inflight_absent += 1;
                }
            }
            st.acked = got;
            st.touched = false;
        }
        self.keys.retain(|_, s| s.acked.is_some());
        totals.checked += self.acked_since;
        self.acked_since = 0;
    }
}

/// The key list holds exactly the keys whose last state is present.
fn check_key_list(n: &Node, version: &str, writers: &[Writer], ctx: &str) {
    let listed: BTreeSet<String> =
        serde_json::from_value(n.get_json(&format!("/api/node/{version}/kv/keys")))
            .expect("a list of keys");
    let expected: BTreeSet<String> = writers
        .iter()
        .flat_map(|w| {
            w.keys
                .iter()
                .filter(|(_, s)| s.acked.is_some())
                .map(|(k, _)| k.clone())
        })
        .collect();
    let missing: Vec<_> = expected.difference(&listed).take(5).collect();
    let extra: Vec<_> = listed.difference(&expected).take(5).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{ctx}: key list differs: missing {missing:?}, unexpected {extra:?}"
    );
}

fn describe(v: &Option<Vec<u8>>) -> String {
    match v {
        None => "nothing".into(),
        Some(b) => format!("{} bytes starting {:02x?}", b.len(), &b[..b.len().min(8)]),
    }
}

/// Copies a box of `size` at `at` into a region of [`REGION`] (x fastest).
fn paste(region: &mut [u8], at: [usize; 3], size: [usize; 3], data: &[u8]) {
    for z in 0..size[2] {
        for y in 0..size[1] {
            let src = (z * size[1] + y) * size[0];
            let dst = ((at[2] + z) * REGION[1] + at[1] + y) * REGION[0] + at[0];
            region[dst..dst + size[0]].copy_from_slice(&data[src..src + size[0]]);
        }
    }
}

/// A locked version's contents as acknowledged when it was committed: it must never change.
struct Snapshot {
    version: String,
    regions: Vec<(usize, Vec<u8>)>,
    keys: Vec<(String, Vec<u8>)>,
}

impl Snapshot {
    fn take(n: &Node, version: &str, writers: &[Writer], rng: &mut StdRng) -> Self {
        let regions = writers.iter().map(|w| (w.id, w.region.clone())).collect();
        let all: Vec<(String, Vec<u8>)> = writers
            .iter()
            .flat_map(|w| {
                w.keys
                    .iter()
                    .filter_map(|(k, s)| Some((k.clone(), s.acked.clone()?)))
            })
            .collect();
        let keys = (0..20.min(all.len()))
            .map(|_| all[rng.random_range(0..all.len())].clone())
            .collect();
        let s = Self {
            version: version.to_string(),
            regions,
            keys,
        };
        s.verify(n, "before committing");
        s
    }

    fn verify(&self, n: &Node, ctx: &str) {
        for (id, region) in &self.regions {
            let o = [id * REGION[0], 0, 0];
            let path = format!(
                "/api/node/{}/gray/raw/0_1_2/{}_{}_{}/{}_{}_{}",
                self.version, REGION[0], REGION[1], REGION[2], o[0], o[1], o[2]
            );
            assert!(
                n.get_bytes(&path) == *region,
                "{ctx}: locked version {} changed in writer {id}'s voxels",
                self.version
            );
        }
        for (k, v) in &self.keys {
            assert!(
                n.get_bytes(&format!("/api/node/{}/kv/key/{k}", self.version)) == *v,
                "{ctx}: locked version {} changed key {k}",
                self.version
            );
        }
    }
}

/// A line of versions grown through kills: put, put, commit, newversion, over and over.
struct Chain {
    repo: String,
    versions: Vec<ChainVersion>,
    next_key: u64,
    /// Versions before this index were fully checked after they were locked.
    verified: usize,
    acked_since: usize,
}

struct ChainVersion {
    uuid: String,
    locked: bool,
    commit_pending: bool,
    child_pending: bool,
    puts: Vec<(String, Vec<u8>)>,
    pending_put: Option<(String, Vec<u8>)>,
}

impl ChainVersion {
    fn new(uuid: String) -> Self {
        Self {
            uuid,
            locked: false,
            commit_pending: false,
            child_pending: false,
            puts: vec![],
            pending_put: None,
        }
    }
}

impl Chain {
    fn new(repo: &str) -> Self {
        Self {
            repo: repo.to_string(),
            versions: vec![ChainVersion::new(repo.to_string())],
            next_key: 0,
            verified: 0,
            acked_since: 0,
        }
    }

    fn advance_until_refused(&mut self, url: &str) {
        let http = client();
        loop {
            let v = self.versions.last_mut().expect("a version");
            let ok = if v.locked {
                v.child_pending = true;
                let path = format!("{url}/api/node/{}/newversion", v.uuid);
                match send(http.post(&path).body("{}"), &path) {
                    Some(body) => {
                        v.child_pending = false;
                        let child: Value = serde_json::from_slice(&body).expect("JSON");
                        let child = child["child"].as_str().expect("child").to_string();
                        self.versions.push(ChainVersion::new(child));
                        true
                    }
                    None => false,
                }
            } else if v.puts.len() < 2 {
                self.next_key += 1;
                let (k, val) = (
                    format!("c{}", self.next_key),
                    format!("value {}", self.next_key).repeat(20).into_bytes(),
                );
                v.pending_put = Some((k.clone(), val.clone()));
                let path = format!("{url}/api/node/{}/kv/key/{k}", v.uuid);
                match send(http.post(&path).body(val.clone()), &path) {
                    Some(_) => {
                        v.pending_put = None;
                        v.puts.push((k, val));
                        true
                    }
                    None => false,
                }
            } else {
                v.commit_pending = true;
                let path = format!("{url}/api/node/{}/commit", v.uuid);
                match send(http.post(&path).body(r#"{"note":"chain"}"#), &path) {
                    Some(_) => {
                        v.commit_pending = false;
                        v.locked = true;
                        true
                    }
                    None => false,
                }
            };
            if !ok {
                return;
            }
            self.acked_since += 1;
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// After a restart: acknowledged commits are locked, children exist, puts read back; in-flight
    /// operations resolve to whichever state the node shows.
    fn verify(&mut self, n: &Node, totals: &mut Totals, ctx: &str, all: bool) {
        let info = n.get_json(&format!("/api/repo/{}/info", self.repo));
        let nodes = &info["DAG"]["Nodes"];
        let by_id: BTreeMap<u64, String> = nodes
            .as_object()
            .expect("DAG nodes")
            .iter()
            .map(|(u, v)| (v["VersionID"].as_u64().expect("VersionID"), u.clone()))
            .collect();
        for v in &self.versions {
            let node = &nodes[&v.uuid];
            assert!(
                node.is_object(),
                "{ctx}: acknowledged version {} is gone",
                v.uuid
            );
            if v.locked {
                assert_eq!(
                    node["Locked"], true,
                    "{ctx}: acknowledged commit of {} lost",
                    v.uuid
                );
            }
        }
        let last = self.versions.last_mut().expect("a version");
        let node = &nodes[&last.uuid];
        if std::mem::take(&mut last.commit_pending) {
            last.locked = node["Locked"] == true;
            totals.count_inflight(last.locked);
        }
        let children: Vec<&Value> = node["Children"]
            .as_array()
            .map(|c| c.iter().collect())
            .unwrap_or_default();
        assert!(
            children.len() <= 1,
            "{ctx}: version {} has {} children",
            last.uuid,
            children.len()
        );
        let pending_child = std::mem::take(&mut last.child_pending);
        if let Some(id) = children.first() {
            assert!(
                pending_child,
                "{ctx}: version {} has a child nobody made",
                last.uuid
            );
            let uuid = by_id[&id.as_u64().expect("child id")].clone();
            self.versions.push(ChainVersion::new(uuid));
        }
        if pending_child {
            totals.count_inflight(!children.is_empty());
        }
        let from = if all { 0 } else { self.verified };
        for v in &mut self.versions[from..] {
            for (k, val) in &v.puts {
                let got = n.get_bytes(&format!("/api/node/{}/kv/key/{k}", v.uuid));
                assert!(
                    got == *val,
                    "{ctx}: acknowledged put of {k} in {} lost",
                    v.uuid
                );
            }
            if let Some((k, val)) = v.pending_put.take() {
                let r = n.get(&format!("/api/node/{}/kv/key/{k}", v.uuid));
                let present = r.status().is_success();
                if present {
                    assert!(
                        r.bytes().unwrap() == val,
                        "{ctx}: in-flight put of {k} holds other bytes"
                    );
                    v.puts.push((k, val));
                }
                totals.count_inflight(present);
            }
        }
        self.verified = self.versions.iter().take_while(|v| v.locked).count();
        totals.checked += self.acked_since;
        self.acked_since = 0;
    }
}

impl Totals {
    fn count_inflight(&mut self, applied: bool) {
        match applied {
            true => self.inflight_applied += 1,
            false => self.inflight_absent += 1,
        }
    }
}
