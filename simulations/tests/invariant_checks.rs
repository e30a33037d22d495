//! The invariants catch what they claim to: a node that obtains what its owners never shared with it,
//! and a store holding bytes that fail their hash.

use dvid_sim::invariants::check_node;
use dvid_sim::scenario::build;
use dvid_sim::{Scenario, SimConfig};

#[test]
fn invariants_catch_a_version_shared_against_the_owners_intent() {
    let mut built = build(Scenario::Publish, 12, 1, SimConfig::default()).unwrap();
    let sim = &mut built.sim;
    // The publisher's store shares the whole repo with node 5, though only one version is public.
    let root = sim.truth.repos[0].root.to_hex();
    let leak = sim.nodes[5].peer_id.clone();
    sim.nodes[0].store.share_repo(&root, &[leak]).unwrap();
    sim.run();
    assert!(
        sim.violations
            .iter()
            .any(|v| v.starts_with("t=") && v.contains("n5 obtained object")),
        "{:?}",
        sim.violations
    );
    assert!(
        sim.violations
            .iter()
            .any(|v| v.contains("n5 holds object") && v.contains("may not read")),
        "{:?}",
        sim.violations
    );
}

#[test]
fn invariants_catch_bytes_that_fail_their_hash() {
    let mut built = build(Scenario::Hostile, 10, 1, SimConfig::default()).unwrap();
    let sim = &mut built.sim;
    sim.run();
    assert!(check_node(&sim.nodes[3], &sim.truth).is_empty());
    let id = dvid_store::ObjectId([7; 32]);
    sim.nodes[3]
        .store
        .objects()
        .put_objects(&[(id, b"not what hashes to that id".to_vec())])
        .unwrap();
    let found = check_node(&sim.nodes[3], &sim.truth);
    assert!(
        found.iter().any(|v| v.contains("fail its hash")),
        "{found:?}"
    );
}
