//! `dvid-sim`: runs one scenario and prints its report (text, or one JSON object with `--json`).
//! Exits with status 1, naming the seed, if the run broke an invariant or did not converge.

use anyhow::Result;
use clap::Parser;
use dvid_sim::{Scenario, run};

#[derive(Parser)]
#[command(about = "Seeded, deterministic simulation of many dvid nodes over a simulated network")]
struct Args {
    /// federation, publish, laptops, partition or hostile.
    #[arg(long)]
    scenario: String,
    /// Nodes (the scenario's default if absent).
    #[arg(long)]
    nodes: Option<usize>,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let scenario: Scenario = args.scenario.parse()?;
    let nodes = args.nodes.unwrap_or_else(|| scenario.default_nodes());
    let report = run(scenario, nodes, args.seed)?;
    if args.json {
        println!("{}", report.to_json());
    } else {
        println!("{report}");
    }
    if !report.passed() {
        eprintln!(
            "FAILED: scenario {scenario} with {nodes} nodes, seed {} (rerun: cargo run --release -p dvid-sim -- --scenario {scenario} --nodes {nodes} --seed {})",
            args.seed, args.seed
        );
        std::process::exit(1);
    }
    Ok(())
}
