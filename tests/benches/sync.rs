//! End-to-end sync benchmark between two real `dvid` nodes (release, fjall) over libp2p on loopback:
//! `cargo bench -p dvid-tests --bench sync` (add `-- --quick` for 128 MiB instead of 1 GiB).
//!
//! 1. Full pull of a locked version of >= 1 GiB of objects, beside (a) one loopback TCP connection
//!    copying the same bytes into files with fsync (the limit), (b) rsync (daemon mode) of the
//!    same bytes as files, if rsync is installed, and (c) iroh's `sendme` of those files, if it is
//!    installed (`cargo install sendme`) and this runs as root: sendme runs inside a network
//!    namespace made for it, holding only a loopback interface, with relays off, so its attempts
//!    to reach public relay and discovery servers cannot leave the namespace.
//! 2. Incremental pull of a child with 1% of blocks changed: bytes on the loopback wire (from
//!    /proc/net/dev) against the bytes of the changed objects.

use dvid_tests::{Node, json};
use std::io::{BufRead, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BLOCK: usize = 64 * 64 * 64;

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let chunks = if quick { 8 } else { 64 }; // 256^3 = 16 MiB each
    let total = chunks * 256 * 256 * 256;
    println!(
        "dvid sync benchmark: {} MiB of incompressible grayscale, 64^3 blocks{}",
        total >> 20,
        if quick { " [quick]" } else { "" }
    );
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let transport =
        std::env::var("DVID_BENCH_LISTEN").unwrap_or_else(|_| "/ip4/127.0.0.1/tcp/0".into());
    let a = Node::start(da.path(), &["--listen", &transport]);
    println!("  transport: {transport}");
    let root = a.new_repo("bench");
    a.new_instance(&root, "uint8blk", "gray", json!({}));
    let mut blocks = Vec::new();
    for c in 0..chunks {
        let vol = random_bytes(256 * 256 * 256, c as u64 + 1);
        a.post_bytes(
            &format!(
                "/api/node/{root}/gray/raw/0_1_2/256_256_256/{}_0_0",
                c * 256
            ),
            vol.clone(),
        );
        blocks.extend(vol.chunks(BLOCK).map(<[u8]>::to_vec));
    }
    a.commit(&root);
    let addr = a.p2p_addr();
    let b = Node::start(db.path(), &["--peer", &addr]);
    a.post_json(
        &format!("/api/repo/{root}/share"),
        json!({"peers": [b.peer_id()]}),
    );
    b.wait_offered(&root);

    settle();
    let t = Instant::now();
    let st = b.pull(json!({"uuid": root}));
    let pull = Timing::since(t);
    assert_eq!(st["state"], "done", "{st}");
    let fetched = st["bytes_fetched"].as_u64().unwrap();
    let back = b.get_bytes(&format!(
        "/api/node/{root}/gray/raw/0_1_2/256_256_256/0_0_0"
    ));
    assert!(
        back == a.get_bytes(&format!(
            "/api/node/{root}/gray/raw/0_1_2/256_256_256/0_0_0"
        ))
    );

    let limit = tcp_copy_with_fsync(&blocks);
    let files = tempfile::tempdir().unwrap();
    let src = files.path().join("src");
    write_block_files(&src, &blocks);
    let rsync = rsync_copy(&src, blocks.len());
    let sendme = sendme_copy(&src, blocks.len());
    println!(
        "1. full pull of {:.2} GiB of objects ({} objects); wall time, then until on disk (a sync after):",
        fetched as f64 / (1u64 << 30) as f64,
        st["objects_fetched"]
    );
    pull.print("dvid pull over libp2p", fetched, None);
    limit.print(
        "TCP copy into files + fsync",
        fetched,
        Some(("the limit; goal <= 1.4", pull)),
    );
    match rsync {
        Some(r) => r.print(
            "rsync daemon over loopback",
            fetched,
            Some(("goal < 1", pull)),
        ),
        None => println!("   rsync: not installed (apt-get install rsync), not measured"),
    }
    match sendme {
        Ok(d) => d.print(
            "iroh sendme over loopback",
            fetched,
            Some(("goal < 1", pull)),
        ),
        Err(why) => println!("   iroh sendme: not measured: {why}"),
    }

    // 2. A child with 1% of the blocks changed.
    let child = a.new_version(&root);
    let k = (blocks.len() / 100).max(1);
    let mut changed = 0;
    for i in 0..k {
        let data = random_bytes(BLOCK, 1000 + i as u64);
        changed += data.len() + 5; // payload header: codec byte and length
        let x = (i * 97 % blocks.len()) * 64 % (chunks * 256);
        a.post_bytes(
            &format!(
                "/api/node/{child}/gray/raw/0_1_2/64_64_64/{x}_{}_{}",
                (i % 4) * 64,
                (i / 4 % 4) * 64
            ),
            data,
        );
    }
    a.commit(&child);
    b.wait_offered(&child);
    let before = loopback_bytes();
    let st = b.pull(json!({"uuid": child}));
    let wire = loopback_bytes() - before;
    assert_eq!(st["state"], "done", "{st}");
    println!(
        "2. incremental pull, {k} of {} blocks changed:",
        blocks.len()
    );
    println!(
        "   changed payload bytes {changed}, objects fetched {} ({} payload bytes), loopback bytes {wire} (all traffic on lo, both directions)",
        st["objects_fetched"], st["bytes_fetched"]
    );
    println!(
        "   ratio wire / changed payload: {:.3} (goal <= 1.1 plus metadata)",
        wire as f64 / changed as f64
    );
}

/// Incompressible bytes (xorshift), so stored objects are as large as the voxels.
fn random_bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut out = Vec::with_capacity(n + 8);
    while out.len() < n {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        out.extend_from_slice(&s.to_le_bytes());
    }
    out.truncate(n);
    out
}

/// Sends every block over one loopback TCP connection; the receiver writes each to its own file and
/// fsyncs it. Returns the wall time until the receiver is done.
fn tcp_copy_with_fsync(blocks: &[Vec<u8>]) -> Timing {
    let dir = tempfile::tempdir().unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let out = dir.path().to_path_buf();
    let n = blocks.len();
    settle();
    let t = Instant::now();
    let receiver = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = vec![0u8; BLOCK];
        for i in 0..n {
            let mut len = [0u8; 4];
            s.read_exact(&mut len).unwrap();
            let len = u32::from_le_bytes(len) as usize;
            s.read_exact(&mut buf[..len]).unwrap();
            let mut f = std::fs::File::create(out.join(format!("{i:06}"))).unwrap();
            f.write_all(&buf[..len]).unwrap();
            f.sync_all().unwrap();
        }
    });
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    for b in blocks {
        s.write_all(&(b.len() as u32).to_le_bytes()).unwrap();
        s.write_all(b).unwrap();
    }
    receiver.join().unwrap();
    Timing::since(t)
}

/// A contender's wall time, and its time until its bytes were on disk: rsync and sendme leave
/// them in the page cache, the limit fsyncs every file and dvid fsyncs every batch it writes.
#[derive(Clone, Copy)]
struct Timing {
    done: Duration,
    durable: Duration,
}

impl Timing {
    /// The time since `start`, then a `sync` and the time again.
    fn since(start: Instant) -> Self {
        let done = start.elapsed();
        settle();
        Self {
            done,
            durable: start.elapsed(),
        }
    }

    /// One line of figures, with dvid's ratio to this contender if it is one.
    fn print(&self, what: &str, bytes: u64, against: Option<(&str, Timing)>) {
        let mbps = |d: Duration| bytes as f64 / 1e6 / d.as_secs_f64();
        let ratio = match against {
            Some((goal, dvid)) => format!(
                "  dvid / this {:.2}, on disk {:.2} ({goal})",
                dvid.done.as_secs_f64() / self.done.as_secs_f64(),
                dvid.durable.as_secs_f64() / self.durable.as_secs_f64()
            ),
            None => String::new(),
        };
        println!(
            "   {what:<29} {:6.2} s {:6.1} MB/s | on disk {:6.2} s{ratio}",
            self.done.as_secs_f64(),
            mbps(self.done),
            self.durable.as_secs_f64(),
        );
    }
}

/// Lets the disk catch up (writes of earlier steps still in the page cache) before a timed step,
/// so each contender starts from the same state.
fn settle() {
    let _ = Command::new("sync").status();
}

/// The blocks as files `000000`, `000001`... in `dir`, the form rsync and sendme copy.
fn write_block_files(dir: &Path, blocks: &[Vec<u8>]) {
    std::fs::create_dir_all(dir).unwrap();
    for (i, b) in blocks.iter().enumerate() {
        std::fs::write(dir.join(format!("{i:06}")), b).unwrap();
    }
}

/// rsync of the files in `src` from an rsync daemon on loopback; `None` if rsync is missing.
fn rsync_copy(src: &Path, files: usize) -> Option<Timing> {
    if Command::new("rsync").arg("--version").output().is_err() {
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let dst = dir.path().join("dst");
    let port = free_port();
    let conf = dir.path().join("rsyncd.conf");
    std::fs::write(
        &conf,
        format!(
            "use chroot = no\n[m]\npath = {}\nread only = yes\n",
            src.display()
        ),
    )
    .unwrap();
    let mut daemon = Command::new("rsync")
        .args([
            "--daemon",
            "--no-detach",
            "--address=127.0.0.1",
            &format!("--port={port}"),
        ])
        .arg(format!("--config={}", conf.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    std::thread::sleep(Duration::from_millis(500));
    settle();
    let t = Instant::now();
    let ok = Command::new("rsync")
        .args(["-a", &format!("rsync://127.0.0.1:{port}/m/")])
        .arg(&dst)
        .status()
        .is_ok_and(|s| s.success());
    let took = Timing::since(t);
    let _ = daemon.kill();
    let _ = daemon.wait();
    assert!(ok, "rsync failed");
    assert_eq!(std::fs::read_dir(&dst).unwrap().count(), files);
    Some(took)
}

/// A network namespace holding only a loopback interface, deleted on drop.
struct Netns(String);

impl Netns {
    fn create() -> Result<Self, String> {
        let name = format!("dvid-bench-{}", std::process::id());
        let ip = |args: &[&str]| {
            Command::new("ip")
                .args(args)
                .output()
                .map_err(|e| format!("running ip: {e}"))
                .and_then(|o| match o.status.success() {
                    true => Ok(()),
                    false => Err(String::from_utf8_lossy(&o.stderr).trim().to_string()),
                })
        };
        ip(&["netns", "add", &name])
            .map_err(|e| format!("cannot make a network namespace: {e}"))?;
        let ns = Self(name);
        ip(&["netns", "exec", &ns.0, "ip", "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    fn command(&self, program: &Path) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.0]).arg(program);
        c
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.0])
            .status();
    }
}

/// iroh's sendme of the files in `src`, sender and receiver in a namespace of their own with
/// relays disabled. Times the receive only (the sender hashes the files before it prints a ticket,
/// as rsync's source files exist before it runs).
fn sendme_copy(src: &Path, files: usize) -> Result<Timing, String> {
    let sendme = std::env::var_os("DVID_SENDME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("sendme"));
    Command::new(&sendme)
        .arg("--version")
        .output()
        .map_err(|_| "sendme is not installed (cargo install sendme)".to_string())?;
    let ns = Netns::create()?;
    let dir = tempfile::tempdir().unwrap();
    let mut sender = ns
        .command(&sendme)
        .args(["send", "--relay", "disabled", "--ticket-type", "addresses"])
        .args(["--no-progress", "--magic-ipv4-addr", "127.0.0.1:0"])
        .arg(src)
        .current_dir(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("starting sendme send: {e}"))?;
    let mut ticket = None;
    for line in std::io::BufReader::new(sender.stdout.take().unwrap()).lines() {
        let line = line.unwrap_or_default();
        if let Some(t) = line.strip_prefix("sendme receive ") {
            ticket = Some(t.trim().to_string());
            break;
        }
    }
    let result = (|| {
        let ticket = ticket.ok_or("sendme send printed no ticket")?;
        let dst = dir.path().join("dst");
        std::fs::create_dir_all(&dst).unwrap();
        settle();
        let t = Instant::now();
        let out = ns
            .command(&sendme)
            .args(["receive", "--relay", "disabled", "--no-progress", &ticket])
            .current_dir(&dst)
            .output()
            .map_err(|e| format!("running sendme receive: {e}"))?;
        let took = Timing::since(t);
        if !out.status.success() {
            return Err(format!(
                "sendme receive failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        let got = dst.join(src.file_name().unwrap());
        assert_eq!(std::fs::read_dir(&got).unwrap().count(), files);
        assert!(
            std::fs::read(got.join("000000")).unwrap()
                == std::fs::read(src.join("000000")).unwrap()
        );
        Ok(took)
    })();
    let _ = sender.kill();
    let _ = sender.wait();
    result
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Bytes received on the loopback interface so far.
fn loopback_bytes() -> u64 {
    let text = std::fs::read_to_string("/proc/net/dev").unwrap_or_default();
    text.lines()
        .find_map(|l| {
            let (name, rest) = l.trim().split_once(':')?;
            (name == "lo").then(|| rest.split_whitespace().next()?.parse().ok())?
        })
        .unwrap_or(0)
}
