//! Harness for black-box tests and benchmarks: builds the real `dvid` binary, starts nodes on loopback
//! port 0 with their own data dirs, and talks to them over HTTP as clients do.

pub mod load;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

pub use reqwest::blocking::Response;
pub use serde_json::{Value, json};

/// Path of the `dvid` binary, built once per test process with the same profile as the caller.
pub fn dvid_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
        escargot::CargoBuild::new()
            .manifest_path(manifest)
            .package("dvid-node")
            .bin("dvid")
            .current_release()
            .run()
            .expect("building the dvid binary")
            .path()
            .to_path_buf()
    })
    .clone()
}

/// A running `dvid serve` process. Killed (SIGKILL) when dropped.
pub struct Node {
    child: Option<Child>,
    pub url: String,
    pub data_dir: PathBuf,
    /// What the node printed before it listened (warnings, peer id).
    pub startup: Vec<String>,
    http: reqwest::blocking::Client,
}

impl Node {
    /// Starts a node on the fjall store in `data_dir`, with extra `serve` flags.
    pub fn start(data_dir: &Path, extra: &[&str]) -> Self {
        Self::start_on(data_dir, "127.0.0.1:0", extra)
    }

    /// Starts a node with its HTTP API bound to `http` (an address with port 0).
    pub fn start_on(data_dir: &Path, http: &str, extra: &[&str]) -> Self {
        let mut child = Command::new(dvid_bin())
            .arg("serve")
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--http", http])
            .args(extra)
            // DVID_TEST_LOG (a RUST_LOG filter) shows more of the nodes' logs when debugging.
            .env(
                "RUST_LOG",
                std::env::var("DVID_TEST_LOG").unwrap_or_else(|_| "warn,libp2p_kad=error".into()),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawning dvid");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout).lines();
        let mut startup = Vec::new();
        let url = loop {
            let line = lines
                .next()
                .expect("dvid exited before listening")
                .expect("reading dvid stdout");
            if let Some(rest) = line.strip_prefix("dvid: HTTP API listening on ") {
                // A wildcard bind is reached through loopback.
                let url = rest.split_whitespace().next().expect("url");
                break url.replace("0.0.0.0", "127.0.0.1");
            }
            startup.push(line);
        };
        // Keep draining stdout so the node never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Self {
            child: Some(child),
            url,
            data_dir: data_dir.to_path_buf(),
            startup,
            http: client(None),
        }
    }

    /// Sends `Authorization: Bearer TOKEN` with every later request of this handle.
    pub fn authorize(&mut self, token: &str) {
        self.http = client(Some(token));
    }

    /// Runs a client command of the `dvid` binary against this node; returns (success, stdout,
    /// stderr).
    pub fn cli(&self, args: &[&str]) -> (bool, String, String) {
        let out = Command::new(dvid_bin())
            .args(args)
            .env("DVID_SERVER", &self.url)
            .output()
            .expect("running the dvid client");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Starts a node that also listens for peers on loopback TCP.
    pub fn start_p2p(data_dir: &Path, extra: &[&str]) -> Self {
        let mut args = vec!["--listen", "/ip4/127.0.0.1/tcp/0"];
        args.extend_from_slice(extra);
        Self::start(data_dir, &args)
    }

    /// This node's PeerId.
    pub fn peer_id(&self) -> String {
        self.get_json("/api/p2p/info")["peer_id"]
            .as_str()
            .expect("peer_id")
            .to_string()
    }

    /// The node's first peer-to-peer listen address (ending in /p2p/<id>).
    pub fn p2p_addr(&self) -> String {
        self.wait_until("a p2p listen address", 10, |n| {
            n.get_json("/api/p2p/info")["listen_addrs"][0]
                .as_str()
                .map(str::to_string)
        })
    }

    /// Polls `check` every 100 ms until it returns something, panicking after `secs` seconds.
    pub fn wait_until<T>(
        &self,
        what: &str,
        secs: u64,
        mut check: impl FnMut(&Self) -> Option<T>,
    ) -> T {
        let deadline = std::time::Instant::now() + Duration::from_secs(secs);
        // Checks start often and slow down: short waits end promptly (benchmarks time some of
        // them) and long ones do not load the node.
        let mut pause = Duration::from_millis(5);
        loop {
            if let Some(v) = check(self) {
                return v;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "timed out after {secs}s waiting for {what}"
            );
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(100));
        }
    }

    /// Starts a pull and waits for it to end; returns the job's final status.
    pub fn pull(&self, body: Value) -> Value {
        let job = self.post_json("/api/p2p/pull", body)["job"]
            .as_str()
            .expect("job")
            .to_string();
        self.wait_job(&job)
    }

    /// Waits for a pull job to end (leave the waiting and running states).
    pub fn wait_job(&self, job: &str) -> Value {
        self.wait_until(&format!("job {job}"), 180, |n| {
            let st = n.get_json(&format!("/api/p2p/jobs/{job}"));
            (st["state"] != "running" && st["state"] != "waiting").then_some(st)
        })
    }

    /// Waits until a connected peer offers `uuid`.
    pub fn wait_offered(&self, uuid: &str) {
        self.wait_until(&format!("a peer to offer {uuid}"), 30, |n| {
            let heads = n.get_json("/api/p2p/heads");
            heads
                .as_array()
                .expect("list")
                .iter()
                .any(|h| h["uuid"] == uuid)
                .then_some(())
        })
    }

    /// OS process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// SIGKILL: the process gets no chance to flush anything.
    pub fn kill9(mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().expect("kill -9");
            c.wait().expect("reaping dvid");
        }
    }

    /// SIGTERM and wait for a clean exit; returns whether it exited successfully.
    pub fn stop(mut self) -> bool {
        let mut c = self.child.take().expect("running");
        Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status()
            .expect("sending SIGTERM");
        c.wait().expect("waiting for dvid").success()
    }

    pub fn get(&self, path: &str) -> Response {
        self.http.get(self.at(path)).send().expect("GET")
    }

    pub fn get_body(&self, path: &str, body: impl Into<reqwest::blocking::Body>) -> Response {
        self.http
            .get(self.at(path))
            .body(body)
            .send()
            .expect("GET with body")
    }

    pub fn post(&self, path: &str, body: impl Into<reqwest::blocking::Body>) -> Response {
        self.http
            .post(self.at(path))
            .body(body)
            .send()
            .expect("POST")
    }

    pub fn put(&self, path: &str, body: impl Into<reqwest::blocking::Body>) -> Response {
        self.http.put(self.at(path)).body(body).send().expect("PUT")
    }

    pub fn delete(&self, path: &str) -> Response {
        self.http.delete(self.at(path)).send().expect("DELETE")
    }

    pub fn head(&self, path: &str) -> Response {
        self.http.head(self.at(path)).send().expect("HEAD")
    }

    /// POSTs JSON and returns the JSON answer, panicking with the node's message on a non-2xx.
    pub fn post_json(&self, path: &str, body: Value) -> Value {
        ok_json(self.post(path, body.to_string()))
    }

    /// GETs JSON, panicking with the node's message on a non-2xx.
    pub fn get_json(&self, path: &str) -> Value {
        ok_json(self.get(path))
    }

    /// GETs bytes, panicking with the node's message on a non-2xx.
    pub fn get_bytes(&self, path: &str) -> Vec<u8> {
        let r = self.get(path);
        let status = r.status();
        let bytes = r.bytes().expect("body").to_vec();
        assert!(
            status.is_success(),
            "GET {path}: {status}: {}",
            String::from_utf8_lossy(&bytes)
        );
        bytes
    }

    /// POSTs bytes, panicking with the node's message on a non-2xx.
    pub fn post_bytes(&self, path: &str, body: Vec<u8>) {
        let r = self.post(path, body);
        let status = r.status();
        assert!(
            status.is_success(),
            "POST {path}: {status}: {}",
            r.text().unwrap_or_default()
        );
    }

    /// Creates a repo and returns its root UUID.
    pub fn new_repo(&self, alias: &str) -> String {
        self.post_json("/api/repos", json!({"alias": alias, "description": "test"}))["root"]
            .as_str()
            .expect("root")
            .to_string()
    }

    /// Adds an instance with extra settings.
    pub fn new_instance(&self, uuid: &str, typename: &str, name: &str, settings: Value) {
        let mut body = json!({"typename": typename, "dataname": name});
        if let Value::Object(m) = settings {
            for (k, v) in m {
                body[k] = v;
            }
        }
        self.post_json(&format!("/api/repo/{uuid}/instance"), body);
    }

    pub fn commit(&self, uuid: &str) {
        self.post_json(
            &format!("/api/node/{uuid}/commit"),
            json!({"note": "test commit"}),
        );
    }

    pub fn new_version(&self, uuid: &str) -> String {
        self.post_json(&format!("/api/node/{uuid}/newversion"), json!({}))["child"]
            .as_str()
            .expect("child")
            .to_string()
    }

    pub fn branch(&self, uuid: &str, name: &str) -> String {
        self.post_json(&format!("/api/node/{uuid}/branch"), json!({"branch": name}))["child"]
            .as_str()
            .expect("child")
            .to_string()
    }

    fn at(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn client(token: Option<&str>) -> reqwest::blocking::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(t) = token {
        let v = format!("Bearer {t}").parse().expect("token header");
        headers.insert(reqwest::header::AUTHORIZATION, v);
    }
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(120))
        .default_headers(headers)
        .build()
        .expect("http client")
}

fn ok_json(r: Response) -> Value {
    let status = r.status();
    let text = r.text().expect("body");
    assert!(status.is_success(), "{status}: {text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("non-JSON answer {text:?}: {e}"))
}

/// A loopback TCP port free right now, for nodes that must come back at the same address.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// Deterministic test volume that compresses like EM grayscale: cells of even intensity (membranes
/// between them darker) with a little noise on some voxels.
pub fn test_volume(size: [usize; 3], seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(size[0] * size[1] * size[2]);
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let cell = |x: usize, y: usize, z: usize| -> u8 {
        let h = (x / 23).wrapping_mul(73_856_093)
            ^ (y / 19).wrapping_mul(19_349_663)
            ^ (z / 17).wrapping_mul(83_492_791);
        let h = (h as u64 ^ seed).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        if x.is_multiple_of(23) || y.is_multiple_of(19) {
            40
        } else {
            120 + (h >> 60) as u8 * 8
        }
    };
    for z in 0..size[2] {
        for y in 0..size[1] {
            for x in 0..size[0] {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let noisy = (state >> 61) == 0;
                let v = cell(x, y, z);
                out.push(if noisy {
                    v.wrapping_add((state >> 40) as u8 & 7)
                } else {
                    v
                });
            }
        }
    }
    out
}

/// `depth` slices of an `n`×`n` grayscale from slice `z0`, like EM: smooth structure with fine
/// noise (it compresses as real data does, unlike uniform noise). x fastest.
pub fn em_slab(n: usize, z0: usize, depth: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(n * n * depth);
    for z in z0..z0 + depth {
        for y in 0..n {
            for x in 0..n {
                let cell =
                    ((x as f32 / 23.0).sin() + (y as f32 / 31.0).cos() + (z as f32 / 17.0).sin())
                        * 40.0;
                let noise = (x.wrapping_mul(2_654_435_761) ^ y.wrapping_mul(40503) ^ z) & 15;
                v.push((120.0 + cell) as u8 + noise as u8);
            }
        }
    }
    v
}

/// Copies a folder tree (a stopped node's data dir, for a benchmark's in-process limit).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}
