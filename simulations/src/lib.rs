//! `dvid-sim`: many dvid nodes in one process, each a real in-memory `Store` driving the real sync
//! engine (`dvid_protocol::pull` to fetch, `dvid_protocol::serve` to answer) over a seeded network.
//!
//! - [`net`]: links with latency, bandwidth and loss, partitions, and the event queue;
//! - [`frames`]: byte counts of the real wire frames;
//! - [`node`]: one simulated node: store, pulls, heads, follows;
//! - [`sim`]: the event loop, faults and the digest of the run;
//! - [`invariants`]: the ground truth and what every node is checked against;
//! - [`scenario`]: federation, publish, laptops, partition, hostile;
//! - [`report`]: the figures of a run.

pub mod frames;
pub mod invariants;
pub mod net;
pub mod node;
pub mod report;
pub mod scenario;
pub mod sim;

pub use report::Report;
pub use scenario::{Scenario, SimError, run, run_with};
pub use sim::SimConfig;
