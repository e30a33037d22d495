//! HTTP load benchmark against a real `dvid` process (release build) on loopback: 32 concurrent
//! clients, each a fixed count of requests mixing key-value GET/PUT, voxel raw GET/POST of small
//! subvolumes and info GETs; every answer checked against a model.
//! Run: `cargo bench -p dvid-tests --bench load` (`-- --quick` for a short run). Prints throughput and
//! p50/p99/max latency per request kind; asserts zero errors, nothing about time.

use dvid_tests::Node;
use dvid_tests::load::{LoadConfig, run};

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let dir = tempfile::tempdir().unwrap();
    let n = Node::start(dir.path(), &[]);
    println!(
        "dvid HTTP load benchmark (fjall, loopback, release build){}",
        if quick { " [quick]" } else { "" }
    );
    let report = run(
        &n,
        &LoadConfig {
            clients: 32,
            requests_per_client: if quick { 100 } else { 1000 },
            seed: 42,
        },
    );
    report.print();
    assert!(
        report.errors.is_empty(),
        "{} errors under load",
        report.errors.len()
    );
}
