//! The same seed gives the same run: equal digests of the event history and equal figures. Another
//! seed gives another run.

use dvid_sim::{Scenario, run};

#[test]
fn determinism_same_seed_same_digest() {
    for (scenario, nodes) in [(Scenario::Partition, 20), (Scenario::Publish, 30)] {
        let a = run(scenario, nodes, 42).unwrap();
        let b = run(scenario, nodes, 42).unwrap();
        assert_eq!(
            a.digest, b.digest,
            "{scenario} seed 42 ran twice differently"
        );
        assert_eq!(
            (a.bytes_total, a.sim_time_s, a.events, a.pulls_completed),
            (b.bytes_total, b.sim_time_s, b.events, b.pulls_completed),
            "{scenario} seed 42"
        );
        let c = run(scenario, nodes, 43).unwrap();
        assert_ne!(
            a.digest, c.digest,
            "{scenario}: seeds 42 and 43 gave the same run"
        );
    }
}
