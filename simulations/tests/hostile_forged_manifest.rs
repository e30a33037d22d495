//! A peer that offers honest heads but serves a forged manifest (the version's roots swapped for its
//! parent's, the commit hash recomputed, sealed with its own key) and then serves the objects.
//!
//! The node's job runner used to take any manifest whose seals verify, so honest nodes imported the
//! forgery under the real version's UUID; the simulator found it, and the node (like the simulator's
//! job model) now requires the manifest's commit hash to be the one the peer's sealed head carries.
//! Both run that one rule, `dvid_protocol::heads::accept_manifest`, whose unit test
//! `accept_manifest_refuses_a_forged_version` shows the forgery it stops. Pinned: hostile, 25 nodes,
//! seed 5 (without the check, this run reported versions "with a commit hash its creator never
//! computed").

use dvid_sim::{Scenario, run};

const NODES: usize = 25;
const SEED: u64 = 5;

#[test]
fn hostile_forged_manifest_is_refused_with_the_head_check() {
    let r = run(Scenario::Hostile, NODES, SEED).unwrap();
    assert!(r.passed(), "seed {SEED}:\n{r}");
}
