//! A peer that offers honest heads but serves a forged manifest (the version's roots swapped for its
//! parent's, the commit hash recomputed, sealed with its own key) and then serves the objects.
//!
//! The node's job runner used to take any manifest whose seals verify, so honest nodes imported the
//! forgery under the real version's UUID; the simulator found it, and the node (like the simulator's
//! job model) now requires the manifest's commit hash to be the one the peer's sealed head carries.
//! Without that check the invariants catch the forgery. Pinned: hostile, 25 nodes, seed 5.

use dvid_sim::{Scenario, SimConfig, run, run_with};

const NODES: usize = 25;
const SEED: u64 = 5;

#[test]
fn hostile_forged_manifest_is_imported_without_the_head_check() {
    let cfg = SimConfig {
        manifest_matches_head: false,
        ..SimConfig::default()
    };
    let r = run_with(Scenario::Hostile, NODES, SEED, cfg).unwrap();
    assert!(!r.passed(), "seed {SEED}: the forgery went unnoticed:\n{r}");
    assert!(
        r.violations
            .iter()
            .any(|v| v.contains("commit hash its creator never computed")),
        "seed {SEED}: {:?}",
        r.violations
    );
}

#[test]
fn hostile_forged_manifest_is_refused_with_the_head_check() {
    let r = run(Scenario::Hostile, NODES, SEED).unwrap();
    assert!(r.passed(), "seed {SEED}:\n{r}");
}
