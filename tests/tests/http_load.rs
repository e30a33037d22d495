//! Load: 32 concurrent clients mixing key-value and voxel reads and writes with info requests, a
//! fixed count each; zero errors, every read as the model expects. Prints latencies, asserts no speed.
//! The full run is the `load` benchmark: `cargo bench -p dvid-tests --bench load`.

use dvid_tests::Node;
use dvid_tests::load::{LoadConfig, run};

#[test]
fn http_load_32_clients_zero_errors() {
    let dir = tempfile::tempdir().unwrap();
    let n = Node::start(dir.path(), &[]);
    let report = run(
        &n,
        &LoadConfig {
            clients: 32,
            requests_per_client: 40,
            seed: 42,
        },
    );
    report.print();
    assert_eq!(report.total(), 32 * 40);
    assert!(
        report.errors.is_empty(),
        "{} errors under load, the first: {:?}",
        report.errors.len(),
        &report.errors[..report.errors.len().min(5)]
    );
}
