//! The scenarios: who the nodes are, how they are linked, what they hold, who may read what, and the
//! script of commits, publications, faults and probes. Each builds a [`Sim`] from a seed.

use crate::invariants::Readers;
use crate::net::{Host, Micros, Net, NodeId};
use crate::node::{Hostility, SimNode};
use crate::report::Report;
use crate::sim::{Action, Sim, SimConfig, scenario_rng};
use dvid_store::catalog::Uuid;
use dvid_store::{Codec, InstanceSpec, Store, StoreError, Subvolume};
use rand::Rng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;
use std::time::Instant;

/// Errors building or running a scenario.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("unknown scenario {0:?}: federation, publish, laptops, partition or hostile")]
    UnknownScenario(String),
    #[error("{0}")]
    BadSize(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scenario {
    /// 10 labs sharing their repo with chosen partner labs.
    Federation,
    /// One publisher of a paper's version and open peers pulling it.
    Publish,
    /// Laptops that go offline, commit locally, and sync when they return.
    Laptops,
    /// The network splits mid-sync and heals.
    Partition,
    /// A share of the nodes serve corrupt objects.
    Hostile,
}

impl Scenario {
    pub const ALL: [Scenario; 5] = [
        Scenario::Federation,
        Scenario::Publish,
        Scenario::Laptops,
        Scenario::Partition,
        Scenario::Hostile,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::Federation => "federation",
            Scenario::Publish => "publish",
            Scenario::Laptops => "laptops",
            Scenario::Partition => "partition",
            Scenario::Hostile => "hostile",
        }
    }

    /// Nodes when none are given.
    pub fn default_nodes(self) -> usize {
        match self {
            Scenario::Federation => 200,
            Scenario::Publish => 1_000,
            Scenario::Laptops => 20,
            Scenario::Partition => 100,
            Scenario::Hostile => 100,
        }
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Scenario {
    type Err = SimError;
    fn from_str(s: &str) -> Result<Self, SimError> {
        Scenario::ALL
            .into_iter()
            .find(|x| x.name() == s)
            .ok_or_else(|| SimError::UnknownScenario(s.into()))
    }
}

/// Runs `scenario` with `nodes` nodes from `seed`, with the node's own timings.
pub fn run(scenario: Scenario, nodes: usize, seed: u64) -> Result<Report, SimError> {
    run_with(scenario, nodes, seed, SimConfig::default())
}

/// Runs a scenario with the given timings and engine bounds.
pub fn run_with(
    scenario: Scenario,
    nodes: usize,
    seed: u64,
    cfg: SimConfig,
) -> Result<Report, SimError> {
    let started = Instant::now();
    let built = build(scenario, nodes, seed, cfg)?;
    let mut sim = built.sim;
    let outcome = sim.run();
    Ok(Report::new(
        scenario,
        nodes,
        seed,
        &sim,
        &outcome,
        &built.publishers,
        started.elapsed(),
    ))
}

/// A scenario ready to run.
pub struct Built {
    pub sim: Sim,
    /// The nodes whose upload counts as the publisher's (the creators of the shared data).
    pub publishers: Vec<NodeId>,
}

pub fn build(
    scenario: Scenario,
    nodes: usize,
    seed: u64,
    cfg: SimConfig,
) -> Result<Built, SimError> {
    let mut rng = scenario_rng(seed);
    match scenario {
        Scenario::Federation => federation(nodes, seed, cfg, &mut rng),
        Scenario::Publish => publish(nodes, seed, cfg, &mut rng),
        Scenario::Laptops => laptops(nodes, seed, cfg, &mut rng),
        Scenario::Partition => partition(nodes, seed, cfg, &mut rng),
        Scenario::Hostile => hostile(nodes, seed, cfg, &mut rng),
    }
}

// ---- links ----

/// A machine-room server: 1 Gbit/s each way.
const SERVER: (u64, u64) = (125_000_000, 125_000_000);
/// A home or small-office line: 40 Mbit/s up, 200 down.
const HOME: (u64, u64) = (5_000_000, 25_000_000);
/// A laptop on wifi: 16 Mbit/s up, 80 down.
const LAPTOP: (u64, u64) = (2_000_000, 10_000_000);
/// The publisher's lab: 100 Mbit/s up, so its upload is a resource worth saving.
const PUBLISHER: (u64, u64) = (12_500_000, 125_000_000);

fn host(site: u32, pos: (f64, f64), link: (u64, u64)) -> Host {
    Host {
        site,
        pos,
        up_bytes_per_s: link.0,
        down_bytes_per_s: link.1,
    }
}

fn random_pos(rng: &mut StdRng) -> (f64, f64) {
    (rng.random::<f64>(), rng.random::<f64>())
}

/// A connected overlay: a ring through all nodes plus random chords, about `degree` links each.
fn overlay(n: usize, degree: usize, rng: &mut StdRng) -> Vec<BTreeSet<NodeId>> {
    let mut links = vec![BTreeSet::new(); n];
    if n < 2 {
        return links;
    }
    for i in 0..n {
        link(&mut links, i, (i + 1) % n);
    }
    let chords = degree.saturating_sub(2) / 2;
    for i in 0..n {
        for _ in 0..chords {
            let j = rng.random_range(0..n);
            link(&mut links, i, j);
        }
    }
    links
}

fn link(links: &mut [BTreeSet<NodeId>], a: usize, b: usize) {
    if a != b {
        links[a].insert(b as NodeId);
        links[b].insert(a as NodeId);
    }
}

fn make_nodes(
    links: Vec<BTreeSet<NodeId>>,
    seed: u64,
    hostile: &BTreeMap<NodeId, Hostility>,
) -> Result<Vec<SimNode>, SimError> {
    links
        .into_iter()
        .enumerate()
        .map(|(i, l)| {
            let mut n = SimNode::new(i as NodeId, seed, hostile.get(&(i as NodeId)).copied())?;
            n.neighbours = l.into_iter().collect();
            Ok(n)
        })
        .collect()
}

fn secs(s: f64) -> Micros {
    (s * 1e6) as Micros
}

fn uniform(rng: &mut StdRng, lo: f64, hi: f64) -> Micros {
    secs(rng.random_range(lo..hi))
}

fn at_least(nodes: usize, min: usize, what: &str) -> Result<(), SimError> {
    if nodes < min {
        return Err(SimError::BadSize(format!(
            "{what} needs at least {min} nodes, got {nodes}"
        )));
    }
    Ok(())
}

// ---- content ----

const BLOCK: i32 = 16;
/// Blocks lie in a GRID^3 box of block positions.
const GRID: u32 = 8;
const VALUE_BYTES: usize = 256;

/// A repo with a grayscale instance of `blocks` blocks and a key-value instance of `keys` keys,
/// its root committed. Returns the root UUID.
fn new_repo(
    store: &Store,
    alias: &str,
    blocks: u32,
    keys: u32,
    rng: &mut StdRng,
) -> Result<Uuid, StoreError> {
    let root = store.create_repo(alias, "simulated")?;
    let hex = root.to_hex();
    store.create_instance(
        &hex,
        "gray",
        InstanceSpec::voxels("uint8blk", Codec::Lz4, BLOCK)?,
    )?;
    store.create_instance(&hex, "kv", InstanceSpec::plain("keyvalue")?)?;
    for b in 0..blocks.min(GRID * GRID * GRID) {
        let at = [b % GRID, (b / GRID) % GRID, b / (GRID * GRID)];
        write_block(store, &hex, at, rng.random())?;
    }
    for k in 0..keys {
        store.kv_put(&store.handle(&hex, "kv")?, &format!("base-{k}"), value(rng))?;
    }
    store.commit(&hex, Some("initial data"), &[])?;
    Ok(root)
}

/// Writes `keys` new keys and `blocks` rewritten blocks into a mutable version.
pub(crate) fn write_changes(
    store: &Store,
    version: &str,
    keys: u32,
    blocks: u32,
    tag: u64,
    rng: &mut StdRng,
) -> Result<(), StoreError> {
    for k in 0..keys {
        store.kv_put(
            &store.handle(version, "kv")?,
            &format!("w{tag}-{k}"),
            value(rng),
        )?;
    }
    // Distinct positions: a block written twice in one version would leave its first object behind
    // (no garbage collection yet), and the privacy check would rightly find it unreachable.
    let mut positions: Vec<u32> = (0..GRID * GRID * 2).collect();
    positions.shuffle(rng);
    for p in positions.into_iter().take(blocks as usize) {
        let at = [p % GRID, (p / GRID) % GRID, p / (GRID * GRID)];
        write_block(store, version, at, rng.random())?;
    }
    Ok(())
}

/// One block of smooth, compressible grayscale.
fn write_block(store: &Store, version: &str, at: [u32; 3], base: u8) -> Result<(), StoreError> {
    let n = BLOCK as usize;
    let data: Vec<u8> = (0..n * n * n)
        .map(|i| {
            let (x, y, z) = (i % n, (i / n) % n, i / (n * n));
            base.wrapping_add(((x + y + z) / 4) as u8)
        })
        .collect();
    let offset = at.map(|c| c as i32 * BLOCK);
    let sub = Subvolume::new(offset, [BLOCK as u32; 3])?;
    store.write_subvolume(&store.handle(version, "gray")?, sub, &data)
}

fn value(rng: &mut StdRng) -> Vec<u8> {
    let word = format!("{:016x} ", rng.random::<u64>());
    word.bytes().cycle().take(VALUE_BYTES).collect()
}

/// Registers a repo's committed root with the truth, sets its owner's policy, and makes `followers`
/// follow it. Returns (repo index, root version label).
fn setup_repo(
    sim: &mut Sim,
    origin: NodeId,
    root: Uuid,
    readers: Readers,
    followers: Vec<NodeId>,
) -> Result<(usize, usize), SimError> {
    if let Readers::Shared(r) = &readers {
        let names: Vec<String> = r
            .iter()
            .map(|n| sim.nodes[*n as usize].peer_id.clone())
            .collect();
        sim.nodes[origin as usize]
            .store
            .share_repo(&root.to_hex(), &names)?;
    }
    for &f in &followers {
        sim.nodes[f as usize].follows.insert(root);
    }
    let repo = sim.truth.add_repo(root, readers, followers);
    let label = sim
        .truth
        .register(&sim.nodes[origin as usize].store, origin, repo, root, 0)?;
    Ok((repo, label))
}

/// Crashes `count` of `candidates` at random times in `[from, to)` s, each restarting 2 to 15 s later.
fn crashes(
    sim: &mut Sim,
    candidates: &[NodeId],
    count: usize,
    (from, to): (f64, f64),
    rng: &mut StdRng,
) {
    let mut pool = candidates.to_vec();
    pool.shuffle(rng);
    for &n in pool.iter().take(count) {
        let at = uniform(rng, from, to);
        sim.schedule(at, Action::Crash(n));
        sim.schedule(at + uniform(rng, 2.0, 15.0), Action::Restart(n));
    }
}

// ---- the scenarios ----

fn federation(
    nodes: usize,
    seed: u64,
    mut cfg: SimConfig,
    rng: &mut StdRng,
) -> Result<Built, SimError> {
    const LABS: usize = 10;
    at_least(nodes, LABS * 2, "federation")?;
    let per = nodes / LABS;
    let total = per * LABS;
    let lab_of = |n: usize| n / per;
    let members = |l: usize| (l * per..(l + 1) * per).map(|n| n as NodeId);
    // Each lab shares its repo with two partner labs.
    let partners: Vec<Vec<usize>> = (0..LABS)
        .map(|l| {
            let mut others: Vec<usize> = (0..LABS).filter(|&o| o != l).collect();
            others.shuffle(rng);
            others.truncate(2);
            others.sort_unstable();
            others
        })
        .collect();
    let mut links = vec![BTreeSet::new(); total];
    for (l, lab_partners) in partners.iter().enumerate() {
        let m: Vec<usize> = members(l).map(|n| n as usize).collect();
        for (i, &a) in m.iter().enumerate() {
            link(&mut links, a, m[(i + 1) % m.len()]);
            for _ in 0..2 {
                link(&mut links, a, m[rng.random_range(0..m.len())]);
            }
        }
        // Labs that share peer with each other through a few machines.
        for &p in lab_partners {
            for _ in 0..3 {
                let a = l * per + rng.random_range(0..per);
                let b = p * per + rng.random_range(0..per);
                link(&mut links, a, b);
            }
        }
    }
    let lab_pos: Vec<(f64, f64)> = (0..LABS).map(|_| random_pos(rng)).collect();
    let hosts = (0..total)
        .map(|n| host(lab_of(n) as u32, lab_pos[lab_of(n)], SERVER))
        .collect();
    cfg.max_sim_ms = 300_000;
    let mut sim = Sim::new(
        cfg,
        make_nodes(links, seed, &BTreeMap::new())?,
        Net::new(hosts, 0.001),
        seed,
    );
    let mut roots = Vec::new();
    for (l, lab_partners) in partners.iter().enumerate() {
        let origin = (l * per) as NodeId;
        let root = new_repo(
            &sim.nodes[origin as usize].store,
            &format!("lab{l}"),
            32,
            32,
            rng,
        )?;
        let readers: BTreeSet<NodeId> = std::iter::once(l)
            .chain(lab_partners.iter().copied())
            .flat_map(members)
            .collect();
        let followers: Vec<NodeId> = readers.iter().copied().collect();
        let (repo, label) =
            setup_repo(&mut sim, origin, root, Readers::Shared(readers), followers)?;
        roots.push((repo, label));
        // Two more versions: one by the lab's origin, one by a lab-mate working on its replica.
        sim.schedule(
            uniform(rng, 5.0, 20.0),
            Action::Commit {
                node: origin,
                repo,
                keys: 8,
                blocks: 4,
                publish: false,
            },
        );
        let mate = origin + rng.random_range(1..per as NodeId);
        sim.schedule(
            uniform(rng, 20.0, 40.0),
            Action::Commit {
                node: mate,
                repo,
                keys: 8,
                blocks: 4,
                publish: false,
            },
        );
    }
    // Curious machines of other labs ask for repos not shared with their lab.
    for _ in 0..10 {
        let n = rng.random_range(0..total);
        let l = rng.random_range(0..LABS);
        if l != lab_of(n) && !partners[l].contains(&lab_of(n)) {
            let at = uniform(rng, 1.0, 40.0);
            sim.schedule(
                at,
                Action::Probe {
                    node: n as NodeId,
                    version: roots[l].1,
                },
            );
        }
    }
    let all: Vec<NodeId> = (0..total as NodeId).collect();
    crashes(&mut sim, &all, total / 20, (2.0, 40.0), rng);
    let publishers = (0..LABS).map(|l| (l * per) as NodeId).collect();
    Ok(Built { sim, publishers })
}

fn publish(
    nodes: usize,
    seed: u64,
    mut cfg: SimConfig,
    rng: &mut StdRng,
) -> Result<Built, SimError> {
    at_least(nodes, 2, "publish")?;
    let total = nodes + 1;
    let links = overlay(total, 12, rng);
    let hosts = (0..total)
        .map(|n| {
            let link = match n {
                0 => PUBLISHER,
                _ if rng.random_bool(0.3) => SERVER,
                _ => HOME,
            };
            host(n as u32, random_pos(rng), link)
        })
        .collect();
    cfg.max_sim_ms = 300_000;
    let mut sim = Sim::new(
        cfg,
        make_nodes(links, seed, &BTreeMap::new())?,
        Net::new(hosts, 0.0005),
        seed,
    );
    // The repo's root stays private; its child is the paper's version, published at 1 s; later work
    // (committed at 3 s) stays private too.
    let store = &sim.nodes[0].store;
    let root = new_repo(store, "paper", 64, 64, rng)?;
    let paper = store.branch(&root.to_hex(), "paper", "as cited")?.to_hex();
    write_changes(store, &paper, 16, 8, 0, rng)?;
    let paper = store.commit(&paper, Some("the paper's version"), &[])?;
    let followers: Vec<NodeId> = (1..total as NodeId).collect();
    let (repo, private_root) =
        setup_repo(&mut sim, 0, root, Readers::PublishedOnly, followers.clone())?;
    let paper = sim.truth.register(&sim.nodes[0].store, 0, repo, paper, 0)?;
    sim.schedule(
        secs(1.0),
        Action::Publish {
            node: 0,
            version: paper,
        },
    );
    sim.schedule(
        secs(3.0),
        Action::Commit {
            node: 0,
            repo,
            keys: 16,
            blocks: 8,
            publish: false,
        },
    );
    let later = paper + 1;
    for _ in 0..(nodes / 100).max(2) {
        let n = rng.random_range(1..total as NodeId);
        let version = if rng.random_bool(0.5) {
            private_root
        } else {
            later
        };
        sim.schedule(uniform(rng, 4.0, 10.0), Action::Probe { node: n, version });
    }
    crashes(&mut sim, &followers, nodes / 100, (1.0, 4.0), rng);
    Ok(Built {
        sim,
        publishers: vec![0],
    })
}

fn laptops(
    nodes: usize,
    seed: u64,
    mut cfg: SimConfig,
    rng: &mut StdRng,
) -> Result<Built, SimError> {
    at_least(nodes, 2, "laptops")?;
    const WINDOW: f64 = 600.0;
    let total = nodes + 1;
    let mut links = vec![BTreeSet::new(); total];
    for l in 1..total {
        link(&mut links, 0, l);
        for _ in 0..2 {
            link(&mut links, l, rng.random_range(1..total));
        }
    }
    let hosts = (0..total)
        .map(|n| {
            host(
                n as u32,
                random_pos(rng),
                if n == 0 { SERVER } else { LAPTOP },
            )
        })
        .collect();
    cfg.max_sim_ms = secs(WINDOW + 900.0) / 1_000;
    let mut sim = Sim::new(
        cfg,
        make_nodes(links, seed, &BTreeMap::new())?,
        Net::new(hosts, 0.001),
        seed,
    );
    let root = new_repo(&sim.nodes[0].store, "fieldwork", 16, 32, rng)?;
    let everyone: BTreeSet<NodeId> = (0..total as NodeId).collect();
    let (repo, _) = setup_repo(
        &mut sim,
        0,
        root,
        Readers::Shared(everyone.clone()),
        everyone.into_iter().collect(),
    )?;
    for l in 1..total as NodeId {
        // Alternate online and away until the window closes; a quarter of the absences are crashes.
        let mut t = rng.random_range(0.0..30.0);
        while t < WINDOW {
            t += -60.0 * (1.0 - rng.random::<f64>()).ln();
            if t >= WINDOW {
                break;
            }
            let away = -90.0 * (1.0 - rng.random::<f64>()).ln();
            let back = (t + away).min(WINDOW);
            if rng.random_bool(0.25) {
                sim.schedule(secs(t), Action::Crash(l));
                sim.schedule(secs(back), Action::Restart(l));
            } else {
                sim.schedule(secs(t), Action::Offline(l));
                sim.schedule(secs(back), Action::Online(l));
            }
            t = back;
        }
        let mut c = rng.random_range(10.0..120.0);
        while c < WINDOW {
            sim.schedule(
                secs(c),
                Action::Commit {
                    node: l,
                    repo,
                    keys: 4,
                    blocks: 1,
                    publish: false,
                },
            );
            c += -120.0 * (1.0 - rng.random::<f64>()).ln();
        }
    }
    Ok(Built {
        sim,
        publishers: vec![0],
    })
}

fn partition(
    nodes: usize,
    seed: u64,
    mut cfg: SimConfig,
    rng: &mut StdRng,
) -> Result<Built, SimError> {
    at_least(nodes, 4, "partition")?;
    let links = overlay(nodes, 10, rng);
    let mut pos: Vec<(f64, f64)> = (0..nodes).map(|_| random_pos(rng)).collect();
    // The origin sits left; at least one node sits right.
    pos[0].0 = 0.1;
    pos[nodes - 1].0 = 0.9;
    let hosts = (0..nodes)
        .map(|n| {
            let link = if rng.random_bool(0.5) { SERVER } else { HOME };
            host(n as u32, pos[n], link)
        })
        .collect();
    let groups: Vec<u8> = pos.iter().map(|p| u8::from(p.0 >= 0.5)).collect();
    let right = groups.iter().position(|&g| g == 1).unwrap_or(nodes - 1) as NodeId;
    cfg.max_sim_ms = 300_000;
    let mut sim = Sim::new(
        cfg,
        make_nodes(links, seed, &BTreeMap::new())?,
        Net::new(hosts, 0.002),
        seed,
    );
    let root = new_repo(&sim.nodes[0].store, "split", 32, 32, rng)?;
    let everyone: BTreeSet<NodeId> = (0..nodes as NodeId).collect();
    let (repo, _) = setup_repo(
        &mut sim,
        0,
        root,
        Readers::Shared(everyone.clone()),
        everyone.into_iter().collect(),
    )?;
    let commit = |node, keys, blocks| Action::Commit {
        node,
        repo,
        keys,
        blocks,
        publish: false,
    };
    // A large version starts to spread, the network splits while it does, each side commits.
    sim.schedule(secs(1.0), commit(0, 48, 48));
    sim.schedule(secs(1.15), Action::Split(groups));
    sim.schedule(secs(5.0), commit(0, 8, 4));
    sim.schedule(secs(8.0), commit(right, 8, 4));
    sim.schedule(secs(30.0), Action::Heal);
    let others: Vec<NodeId> = (1..nodes as NodeId).filter(|&n| n != right).collect();
    crashes(&mut sim, &others, nodes / 10, (1.0, 3.0), rng);
    Ok(Built {
        sim,
        publishers: vec![0],
    })
}

fn hostile(
    nodes: usize,
    seed: u64,
    mut cfg: SimConfig,
    rng: &mut StdRng,
) -> Result<Built, SimError> {
    at_least(nodes, 5, "hostile")?;
    let links = overlay(nodes, 10, rng);
    let mut others: Vec<NodeId> = (1..nodes as NodeId).collect();
    others.shuffle(rng);
    // A fifth of the nodes are hostile: half corrupt objects, a quarter forge heads, a quarter
    // forge versions.
    let bad: BTreeMap<NodeId, Hostility> = others
        .iter()
        .take(nodes / 5)
        .enumerate()
        .map(|(i, &n)| {
            let h = match i % 4 {
                0 | 1 => Hostility::CorruptObjects,
                2 => Hostility::ForgeVersions,
                _ => Hostility::ForgeHeads,
            };
            (n, h)
        })
        .collect();
    let hosts = (0..nodes)
        .map(|n| {
            let link = if rng.random_bool(0.3) { SERVER } else { HOME };
            host(n as u32, random_pos(rng), link)
        })
        .collect();
    cfg.max_sim_ms = 300_000;
    let mut sim = Sim::new(
        cfg,
        make_nodes(links, seed, &bad)?,
        Net::new(hosts, 0.0005),
        seed,
    );
    let root = new_repo(&sim.nodes[0].store, "contested", 64, 32, rng)?;
    // Everyone follows, but only honest nodes must converge: liars get banned and cut off.
    let honest: Vec<NodeId> = (1..nodes as NodeId)
        .filter(|n| !bad.contains_key(n))
        .collect();
    let (repo, v0) = setup_repo(&mut sim, 0, root, Readers::PublishedOnly, honest)?;
    for &n in bad.keys() {
        sim.nodes[n as usize].follows.insert(root);
    }
    sim.schedule(
        secs(0.5),
        Action::Publish {
            node: 0,
            version: v0,
        },
    );
    sim.schedule(
        secs(10.0),
        Action::Commit {
            node: 0,
            repo,
            keys: 16,
            blocks: 8,
            publish: true,
        },
    );
    Ok(Built {
        sim,
        publishers: vec![0],
    })
}
