//! Every scenario, a few seeds each, at small sizes: each run must converge and break no invariant.
//! A failure names the scenario and the seed, and the command that replays it.

use dvid_sim::{Report, Scenario, run};

fn check(scenario: Scenario, nodes: usize, seeds: &[u64]) -> Vec<Report> {
    seeds
        .iter()
        .map(|&seed| {
            let r = run(scenario, nodes, seed).unwrap_or_else(|e| panic!("{scenario} seed {seed}: {e}"));
            assert!(
                r.passed(),
                "{scenario} with {nodes} nodes failed with seed {seed} (replay: cargo run --release -p dvid-sim -- --scenario {scenario} --nodes {nodes} --seed {seed}):\n{r}"
            );
            assert_eq!(r.avoidable_failures, 0, "{scenario} seed {seed}: {:?}", r.avoidable_examples);
            r
        })
        .collect()
}

#[test]
fn scenario_federation_converges_and_keeps_repos_private() {
    for r in check(Scenario::Federation, 40, &[1, 2, 3]) {
        assert!(
            r.probes_refused > 0,
            "probes must have been made and refused:\n{r}"
        );
        assert!(r.versions > 10, "every lab committed:\n{r}");
    }
}

#[test]
fn scenario_publish_spreads_from_other_holders() {
    for r in check(Scenario::Publish, 40, &[1, 2, 3]) {
        // Most objects came from peers other than the publisher.
        assert!(
            r.publisher_upload_bytes * 4 < r.bytes_objects,
            "the publisher sent {} of {} object bytes:\n{r}",
            r.publisher_upload_bytes,
            r.bytes_objects
        );
        assert!(r.probes_refused > 0, "{r}");
    }
}

#[test]
fn scenario_laptops_sync_after_offline_work() {
    for r in check(Scenario::Laptops, 5, &[1, 2]) {
        assert!(r.commits > 3, "laptops committed while away:\n{r}");
        assert!(r.crashes > 0, "{r}");
    }
}

#[test]
fn scenario_partition_heals_and_converges() {
    for r in check(Scenario::Partition, 24, &[1, 2, 3]) {
        // Both sides committed during the split, and everyone ends with every version.
        assert_eq!(r.versions, 4, "{r}");
        assert!(r.sim_time_s > 30.0, "convergence waits for the heal:\n{r}");
    }
}

#[test]
fn scenario_hostile_peers_are_banned() {
    for r in check(Scenario::Hostile, 25, &[1, 2, 3]) {
        assert!(
            r.bans > 0,
            "corrupt objects must get their senders banned:\n{r}"
        );
    }
}
