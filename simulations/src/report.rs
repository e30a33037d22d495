//! The figures of a run: convergence, the digest of its event history, bytes on the wire and who sent
//! them, round trips, invariant violations, and the wall time and memory the simulation took.

use crate::net::NodeId;
use crate::scenario::Scenario;
use crate::sim::{Class, Outcome, Sim};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

/// Violations listed in full; the count covers all.
const LISTED_VIOLATIONS: usize = 20;

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub scenario: String,
    /// Nodes asked for (`--nodes`).
    pub nodes: usize,
    /// Nodes simulated: those asked for plus any the scenario adds (a publisher, a lab server).
    pub total_nodes: usize,
    pub seed: u64,
    pub converged: bool,
    /// Simulated time until convergence (or the limit).
    pub sim_time_s: f64,
    /// BLAKE3 over every event handled and the final state: equal seeds give equal digests.
    pub digest: String,
    pub bytes_total: u64,
    pub bytes_gossip: u64,
    pub bytes_manifest: u64,
    pub bytes_objects: u64,
    pub bytes_probe: u64,
    /// Upload of the nodes that created the shared data.
    pub publisher_upload_bytes: u64,
    pub max_node_upload_bytes: u64,
    /// Bytes of the objects of the largest version.
    pub version_bytes: u64,
    pub round_trips_p50: u32,
    pub round_trips_p99: u32,
    pub pull_time_p50_s: f64,
    pub pull_time_p99_s: f64,
    /// Worst time, over versions, from availability until 50%, 90%, 99% of its followers held it.
    pub reach_50_s: Option<f64>,
    pub reach_90_s: Option<f64>,
    pub reach_99_s: Option<f64>,
    /// Heads requests, answers and announcements, per node per simulated second.
    pub gossip_bytes_per_node_per_s: f64,
    pub versions: usize,
    pub commits: u64,
    pub commits_skipped: u64,
    pub pulls_completed: u64,
    pub pulls_failed: u64,
    pub pull_failures: BTreeMap<String, u64>,
    /// Pulls the engine failed while one of their peers could still serve them.
    pub avoidable_failures: u64,
    pub avoidable_examples: Vec<String>,
    /// Peers a pull started with: median and most.
    pub pull_peers_p50: u32,
    pub pull_peers_max: u32,
    pub bans: u64,
    pub refusals: u64,
    pub probes_refused: u64,
    pub crashes: u64,
    pub messages: u64,
    pub lost_messages: u64,
    pub events: u64,
    pub invariant_violations: usize,
    pub violations: Vec<String>,
    pub wall_time_s: f64,
    pub peak_rss_mb: f64,
}

impl Report {
    pub fn new(
        scenario: Scenario,
        nodes: usize,
        seed: u64,
        sim: &Sim,
        outcome: &Outcome,
        publishers: &[NodeId],
        wall: Duration,
    ) -> Self {
        let m = &sim.metrics;
        let sim_time_s = outcome.sim_time as f64 / 1e6;
        let mut rt = m.round_trips.clone();
        rt.sort_unstable();
        let mut pt = m.pull_ms.clone();
        pt.sort_unstable();
        let mut pp = m.pull_peers.clone();
        pp.sort_unstable();
        // Worst over versions: time from availability until that share of followers held it.
        let reach = |pct: f64| -> Option<f64> {
            let t = &sim.truth;
            let times: Vec<Option<u64>> = (0..t.versions.len())
                .filter(|&l| t.versions[l].expected > 0)
                .map(|l| t.reach(l, pct))
                .collect();
            if times.iter().all(Option::is_some) {
                times.iter().flatten().max().map(|&us| us as f64 / 1e6)
            } else {
                None
            }
        };
        let version_bytes = sim
            .truth
            .versions
            .iter()
            .map(|v| {
                let store = &sim.nodes[v.origin as usize].store;
                v.objects
                    .iter()
                    .filter_map(|id| store.objects().get_object(id).ok().flatten())
                    .map(|b| b.len() as u64)
                    .sum::<u64>()
            })
            .max()
            .unwrap_or(0);
        let gossip = m.bytes[Class::Gossip as usize];
        Self {
            scenario: scenario.name().into(),
            nodes,
            total_nodes: sim.nodes.len(),
            seed,
            converged: outcome.converged,
            sim_time_s,
            digest: outcome.digest.clone(),
            bytes_total: m.bytes.iter().sum(),
            bytes_gossip: gossip,
            bytes_manifest: m.bytes[Class::Manifest as usize],
            bytes_objects: m.bytes[Class::Objects as usize],
            bytes_probe: m.bytes[Class::Probe as usize],
            publisher_upload_bytes: publishers.iter().map(|&p| m.up[p as usize]).sum(),
            max_node_upload_bytes: m.up.iter().copied().max().unwrap_or(0),
            version_bytes,
            round_trips_p50: percentile(&rt, 50.0).unwrap_or(0),
            round_trips_p99: percentile(&rt, 99.0).unwrap_or(0),
            pull_time_p50_s: percentile(&pt, 50.0).unwrap_or(0) as f64 / 1e3,
            pull_time_p99_s: percentile(&pt, 99.0).unwrap_or(0) as f64 / 1e3,
            reach_50_s: reach(50.0),
            reach_90_s: reach(90.0),
            reach_99_s: reach(99.0),
            gossip_bytes_per_node_per_s: if sim_time_s > 0.0 {
                gossip as f64 / sim.nodes.len().max(1) as f64 / sim_time_s
            } else {
                0.0
            },
            versions: sim.truth.versions.len(),
            commits: m.commits,
            commits_skipped: m.commits_skipped,
            pulls_completed: m.pulls_done,
            pulls_failed: m.pulls_failed,
            pull_failures: m.failures.clone(),
            avoidable_failures: m.avoidable_failures,
            avoidable_examples: m.avoidable_examples.clone(),
            pull_peers_p50: percentile(&pp, 50.0).unwrap_or(0),
            pull_peers_max: pp.last().copied().unwrap_or(0),
            bans: m.bans,
            refusals: m.refusals,
            probes_refused: m.probes_refused,
            crashes: m.crashes,
            messages: m.messages,
            lost_messages: m.lost,
            events: m.events,
            invariant_violations: sim.violations.len(),
            violations: sim
                .violations
                .iter()
                .take(LISTED_VIOLATIONS)
                .cloned()
                .collect(),
            wall_time_s: wall.as_secs_f64(),
            peak_rss_mb: peak_rss_mb().unwrap_or(0.0),
        }
    }

    /// True when the run converged and broke no invariant.
    pub fn passed(&self) -> bool {
        self.converged && self.invariant_violations == 0
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("reports serialize")
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mb = |b: u64| b as f64 / 1e6;
        writeln!(
            f,
            "scenario {} with {} nodes ({} simulated), seed {}",
            self.scenario, self.nodes, self.total_nodes, self.seed
        )?;
        writeln!(
            f,
            "  converged: {} after {:.1} s simulated ({:.2} s wall, peak RSS {:.0} MB, {} events)",
            self.converged, self.sim_time_s, self.wall_time_s, self.peak_rss_mb, self.events
        )?;
        writeln!(
            f,
            "  bytes: {:.2} MB total (objects {:.2}, manifests {:.2}, gossip {:.2}, probes {:.3}); version {:.1} KB",
            mb(self.bytes_total),
            mb(self.bytes_objects),
            mb(self.bytes_manifest),
            mb(self.bytes_gossip),
            mb(self.bytes_probe),
            self.version_bytes as f64 / 1e3
        )?;
        writeln!(
            f,
            "  upload: publisher {:.2} MB, busiest node {:.2} MB; gossip {:.0} B/node/s",
            mb(self.publisher_upload_bytes),
            mb(self.max_node_upload_bytes),
            self.gossip_bytes_per_node_per_s
        )?;
        writeln!(
            f,
            "  pulls: {} done, {} failed {:?}; round trips p50 {} p99 {}; pull time p50 {:.2} s p99 {:.2} s; followers reached: 50% {}, 90% {}, 99% {}",
            self.pulls_completed,
            self.pulls_failed,
            self.pull_failures,
            self.round_trips_p50,
            self.round_trips_p99,
            self.pull_time_p50_s,
            self.pull_time_p99_s,
            secs(self.reach_50_s),
            secs(self.reach_90_s),
            secs(self.reach_99_s)
        )?;
        writeln!(
            f,
            "  peers per pull p50 {} max {}; {} failures avoidable {:?}",
            self.pull_peers_p50,
            self.pull_peers_max,
            self.avoidable_failures,
            self.avoidable_examples
        )?;
        writeln!(
            f,
            "  {} versions ({} commits, {} skipped), {} bans, {} refusals, {} probes refused, {} crashes, {} of {} messages lost",
            self.versions,
            self.commits,
            self.commits_skipped,
            self.bans,
            self.refusals,
            self.probes_refused,
            self.crashes,
            self.lost_messages,
            self.messages
        )?;
        writeln!(f, "  digest {}", self.digest)?;
        write!(f, "  invariant violations: {}", self.invariant_violations)?;
        for v in &self.violations {
            write!(f, "\n    {v}")?;
        }
        Ok(())
    }
}

fn secs(s: Option<f64>) -> String {
    s.map_or_else(|| "never".into(), |s| format!("{s:.2} s"))
}

/// The `p`th percentile of sorted values (nearest rank).
fn percentile<T: Copy>(sorted: &[T], p: f64) -> Option<T> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// Peak resident memory of this process (VmHWM), in MB.
pub fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

#[cfg(test)]
mod tests {
    use super::percentile;

    #[test]
    fn report_percentiles_use_nearest_rank() {
        let v: Vec<u32> = (1..=100).collect();
        assert_eq!(percentile(&v, 50.0), Some(50));
        assert_eq!(percentile(&v, 99.0), Some(99));
        assert_eq!(percentile(&[7u32], 99.0), Some(7));
        assert_eq!(percentile::<u32>(&[], 50.0), None);
    }
}
