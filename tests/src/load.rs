//! Load driver shared by the load benchmark and its smaller test: concurrent clients mixing key-value
//! and voxel reads and writes with info requests against one node, every answer checked against a
//! model, latencies kept per request kind.

use crate::{Node, test_volume};
use serde_json::json;
use std::time::{Duration, Instant};

/// How much load.
#[derive(Clone, Debug)]
pub struct LoadConfig {
    pub clients: usize,
    pub requests_per_client: usize,
    pub seed: u64,
}

/// Kinds of request, in report order.
pub const KINDS: [&str; 5] = ["kv GET", "kv PUT", "raw GET", "raw POST", "info GET"];

/// What a run measured.
pub struct LoadReport {
    pub config: LoadConfig,
    pub wall: Duration,
    /// Latencies per kind, indexed like [`KINDS`], sorted.
    pub latencies: Vec<Vec<Duration>>,
    /// Every failed request or wrong answer (empty in a good run).
    pub errors: Vec<String>,
}

/// Shared data preloaded before the clients start and never written during the run.
const SHARED_KEYS: usize = 200;
const SHARED_VOL: [usize; 3] = [128, 128, 64];
/// Each client's own box of voxels, beyond the shared volume in z, block-aligned (32^3 blocks).
const OWN_BOX: usize = 32;
const OWN_Z: usize = 128;

/// Runs the load against `node`: sets up a repo, preloads shared data (not timed), then runs
/// `clients` threads of `requests_per_client` requests each.
pub fn run(node: &Node, config: &LoadConfig) -> LoadReport {
    let repo = node.new_repo("load");
    node.new_instance(&repo, "keyvalue", "kv", json!({}));
    node.new_instance(&repo, "uint8blk", "gray", json!({"BlockSize": "32,32,32"}));
    for i in 0..SHARED_KEYS {
        node.post_bytes(&format!("/api/node/{repo}/kv/key/s{i}"), shared_value(i));
    }
    let shared = test_volume(SHARED_VOL, config.seed);
    node.post_bytes(
        &format!(
            "/api/node/{repo}/gray/raw/0_1_2/{}_{}_{}/0_0_0",
            SHARED_VOL[0], SHARED_VOL[1], SHARED_VOL[2]
        ),
        shared.clone(),
    );

    let started = Instant::now();
    let results: Vec<(Vec<Vec<Duration>>, Vec<String>)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..config.clients)
            .map(|c| {
                let client = Client {
                    id: c,
                    url: node.url.clone(),
                    repo: repo.clone(),
                    shared: &shared,
                    rng: ClientRng::new(
                        config.seed ^ (c as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15),
                    ),
                };
                s.spawn(move || client.run(config.requests_per_client))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("load client thread"))
            .collect()
    });
    let wall = started.elapsed();
    let mut latencies = vec![Vec::new(); KINDS.len()];
    let mut errors = Vec::new();
    for (lat, err) in results {
        for (k, l) in lat.into_iter().enumerate() {
            latencies[k].extend(l);
        }
        errors.extend(err);
    }
    for l in &mut latencies {
        l.sort();
    }
    LoadReport {
        config: config.clone(),
        wall,
        latencies,
        errors,
    }
}

impl LoadReport {
    pub fn total(&self) -> usize {
        self.latencies.iter().map(Vec::len).sum()
    }

    /// Prints totals, throughput and p50/p99/max latency per kind and overall.
    pub fn print(&self) {
        let total = self.total();
        println!(
            "load: {} clients x {} requests = {total} requests in {:.2}s: {:.0} requests/s, {} errors",
            self.config.clients,
            self.config.requests_per_client,
            self.wall.as_secs_f64(),
            total as f64 / self.wall.as_secs_f64(),
            self.errors.len()
        );
        println!(
            "  {:<10} {:>8} {:>9} {:>9} {:>9}",
            "kind", "count", "p50 ms", "p99 ms", "max ms"
        );
        let mut all: Vec<Duration> = self.latencies.iter().flatten().copied().collect();
        all.sort();
        for (name, l) in KINDS.iter().zip(&self.latencies).chain([(&"all", &all)]) {
            println!(
                "  {:<10} {:>8} {:>9.2} {:>9.2} {:>9.2}",
                name,
                l.len(),
                ms(percentile(l, 50.0)),
                ms(percentile(l, 99.0)),
                ms(l.last().copied().unwrap_or_default())
            );
        }
        for e in self.errors.iter().take(10) {
            println!("  error: {e}");
        }
    }
}

/// Nearest-rank percentile of sorted latencies.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The value of shared key `i`: its own length and bytes.
fn shared_value(i: usize) -> Vec<u8> {
    let len = 64 + (i * 37) % 3000;
    (0..len).map(|j| (i * 31 + j * 7) as u8).collect()
}

/// One client: its keys and box of voxels, and what the node must answer for them.
struct Client<'a> {
    id: usize,
    url: String,
    repo: String,
    shared: &'a [u8],
    rng: ClientRng,
}

struct Own {
    keys: Vec<Vec<u8>>,
    region: Vec<u8>,
}

impl Client<'_> {
    fn run(mut self, requests: usize) -> (Vec<Vec<Duration>>, Vec<String>) {
        let http = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .expect("http client");
        let mut own = Own {
            keys: Vec::new(),
            region: vec![0; OWN_BOX * OWN_BOX * OWN_BOX],
        };
        let mut latencies = vec![Vec::with_capacity(requests); KINDS.len()];
        let mut errors = Vec::new();
        for _ in 0..requests {
            let roll = self.rng.below(100);
            let kind = match roll {
                0..25 => 0,
                25..45 => 1,
                45..65 => 2,
                65..80 => 3,
                _ => 4,
            };
            let t = Instant::now();
            let outcome = match kind {
                0 => self.kv_get(&http, &own),
                1 => self.kv_put(&http, &mut own),
                2 => self.raw_get(&http, &own),
                3 => self.raw_post(&http, &mut own),
                _ => self.info_get(&http),
            };
            latencies[kind].push(t.elapsed());
            if let Err(e) = outcome {
                errors.push(format!("client {}: {} {e}", self.id, KINDS[kind]));
            }
        }
        (latencies, errors)
    }

    fn api(&self, path: &str) -> String {
        format!("{}/api/node/{}/{path}", self.url, self.repo)
    }

    fn kv_get(&mut self, http: &reqwest::blocking::Client, own: &Own) -> Result<(), String> {
        let (key, expected) = if own.keys.is_empty() || self.rng.below(2) == 0 {
            let i = self.rng.below(SHARED_KEYS);
            (format!("s{i}"), shared_value(i))
        } else {
            let i = self.rng.below(own.keys.len());
            (format!("c{}-{i}", self.id), own.keys[i].clone())
        };
        let got = fetch(http.get(self.api(&format!("kv/key/{key}"))))?;
        expect_bytes(&key, &got, &expected)
    }

    fn kv_put(&mut self, http: &reqwest::blocking::Client, own: &mut Own) -> Result<(), String> {
        // Mostly new keys, sometimes an overwrite.
        let new = own.keys.is_empty() || self.rng.below(4) != 0;
        let i = match new {
            true => own.keys.len(),
            false => self.rng.below(own.keys.len()),
        };
        let len = 100 + self.rng.below(3900);
        let value = self.rng.bytes(len);
        fetch(
            http.post(self.api(&format!("kv/key/c{}-{i}", self.id)))
                .body(value.clone()),
        )?;
        match new {
            true => own.keys.push(value),
            false => own.keys[i] = value,
        }
        Ok(())
    }

    fn raw_get(&mut self, http: &reqwest::blocking::Client, own: &Own) -> Result<(), String> {
        let size = self.small_size();
        if self.rng.below(2) == 0 {
            let at: [usize; 3] =
                std::array::from_fn(|a| self.rng.below(SHARED_VOL[a] - size[a] + 1));
            let got = fetch(http.get(self.api(&raw_path(size, at))))?;
            expect_bytes(
                "shared voxels",
                &got,
                &cut(self.shared, SHARED_VOL, at, size),
            )
        } else {
            let at: [usize; 3] = std::array::from_fn(|a| self.rng.below(OWN_BOX - size[a] + 1));
            let got = fetch(http.get(self.api(&raw_path(size, self.own_origin(at)))))?;
            expect_bytes(
                "own voxels",
                &got,
                &cut(&own.region, [OWN_BOX; 3], at, size),
            )
        }
    }

    fn raw_post(&mut self, http: &reqwest::blocking::Client, own: &mut Own) -> Result<(), String> {
        let size = self.small_size();
        let at: [usize; 3] = std::array::from_fn(|a| self.rng.below(OWN_BOX - size[a] + 1));
        let data = self.rng.bytes(size.iter().product());
        fetch(
            http.post(self.api(&raw_path(size, self.own_origin(at))))
                .body(data.clone()),
        )?;
        for z in 0..size[2] {
            for y in 0..size[1] {
                let src = (z * size[1] + y) * size[0];
                let dst = ((at[2] + z) * OWN_BOX + at[1] + y) * OWN_BOX + at[0];
                own.region[dst..dst + size[0]].copy_from_slice(&data[src..src + size[0]]);
            }
        }
        Ok(())
    }

    fn info_get(&mut self, http: &reqwest::blocking::Client) -> Result<(), String> {
        let url = match self.rng.below(3) {
            0 => format!("{}/api/server/info", self.url),
            1 => format!("{}/api/repo/{}/info", self.url, self.repo),
            _ => self.api("gray/info"),
        };
        let body = fetch(http.get(&url))?;
        serde_json::from_slice::<serde_json::Value>(&body)
            .map(|_| ())
            .map_err(|e| format!("{url}: not JSON: {e}"))
    }

    /// Sizes of 4 to 32 voxels a side.
    fn small_size(&mut self) -> [usize; 3] {
        std::array::from_fn(|_| 4 + self.rng.below(29))
    }

    fn own_origin(&self, at: [usize; 3]) -> [usize; 3] {
        [self.id * OWN_BOX + at[0], at[1], OWN_Z + at[2]]
    }
}

fn raw_path(size: [usize; 3], at: [usize; 3]) -> String {
    format!(
        "gray/raw/0_1_2/{}_{}_{}/{}_{}_{}",
        size[0], size[1], size[2], at[0], at[1], at[2]
    )
}

/// The box of `size` at `at` out of a volume of `dims` (x fastest).
fn cut(vol: &[u8], dims: [usize; 3], at: [usize; 3], size: [usize; 3]) -> Vec<u8> {
    let mut out = Vec::with_capacity(size.iter().product());
    for z in 0..size[2] {
        for y in 0..size[1] {
            let start = ((at[2] + z) * dims[1] + at[1] + y) * dims[0] + at[0];
            out.extend_from_slice(&vol[start..start + size[0]]);
        }
    }
    out
}

/// Sends a request; the body if answered 2xx, else what went wrong.
fn fetch(rb: reqwest::blocking::RequestBuilder) -> Result<Vec<u8>, String> {
    let r = rb.send().map_err(|e| format!("request failed: {e}"))?;
    let status = r.status();
    let body = r.bytes().map_err(|e| format!("reading the body: {e}"))?;
    if !status.is_success() {
        return Err(format!("{status}: {}", String::from_utf8_lossy(&body)));
    }
    Ok(body.to_vec())
}

fn expect_bytes(what: &str, got: &[u8], expected: &[u8]) -> Result<(), String> {
    if got == expected {
        return Ok(());
    }
    Err(format!(
        "{what}: read {} bytes, expected {} (first difference at byte {})",
        got.len(),
        expected.len(),
        got.iter().zip(expected).take_while(|(a, b)| a == b).count()
    ))
}

/// A seeded stream (rand's `StdRng`) with the few draws the clients use.
struct ClientRng(rand::rngs::StdRng);

impl ClientRng {
    fn new(seed: u64) -> Self {
        Self(rand::SeedableRng::seed_from_u64(seed))
    }

    fn below(&mut self, n: usize) -> usize {
        rand::Rng::random_range(&mut self.0, 0..n)
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut out = vec![0; n];
        rand::RngCore::fill_bytes(&mut self.0, &mut out);
        out
    }
}
