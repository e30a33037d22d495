//! Pinned-seed regression: a pull kept re-sending to a peer whose requests failed in transport.
//!
//! Partition, 24 nodes, seed 51: at 2.9 s node 10 pulls a version from three peers; one has just
//! crashed and answers every request with a reset. The engine chose the peer with the fewest
//! requests in flight, ties to the first in order, so the failed peer, idle again at once, drew every
//! retry: six resets burnt an object's six attempts and the pull failed while node 8 could serve it.
//! The engine now asks peers with transport failures last, one request at a time.

use dvid_sim::{Scenario, run};

#[test]
fn regression_pull_moves_off_a_failing_peer() {
    let (nodes, seed) = (24, 51);
    let r = run(Scenario::Partition, nodes, seed).unwrap();
    assert_eq!(
        r.avoidable_failures, 0,
        "partition, {nodes} nodes, seed {seed}: pulls gave up while a peer could serve them: {:?}",
        r.avoidable_examples
    );
    assert!(
        r.passed(),
        "partition, {nodes} nodes, seed {seed} failed:\n{r}"
    );
}
