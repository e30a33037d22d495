//! The command line: `dvid serve` runs a node; the other commands are clients of a running node.

use crate::client::Client;
use crate::http::{HttpConfig, Tokens};
use crate::p2p::P2pConfig;
use crate::server::{Backend, ServeConfig};
use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

/// dvid: a distributed, versioned, image-oriented dataservice.
///
/// Run a node with `dvid serve`; it keeps repos of 3-D image and label volumes and key-value data under
/// branched version control and serves DVID's HTTP API. The other commands talk to a running node.
#[derive(Parser, Debug)]
#[command(name = "dvid", version, about, long_about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// URL of the node that client commands talk to.
    #[arg(
        long,
        global = true,
        env = "DVID_SERVER",
        default_value = "http://127.0.0.1:8000"
    )]
    pub server: String,
    /// Bearer token sent with client commands (the node's write or read token).
    #[arg(long, global = true, env = "DVID_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run a node: open the store and serve the HTTP API until SIGTERM or Ctrl-C.
    Serve {
        /// Directory of the embedded fjall store (created if missing).
        #[arg(long, env = "DVID_DATA_DIR", default_value = "./dvid-data")]
        data_dir: PathBuf,
        /// Address for the HTTP API (port 0 picks a free port; the chosen one is printed).
        #[arg(long, env = "DVID_HTTP", default_value = "127.0.0.1:8000")]
        http: SocketAddr,
        /// Keep everything in memory instead of the data dir (lost at exit).
        #[arg(long)]
        memory: bool,
        /// Largest request body or voxel response in bytes; larger requests get 413.
        #[arg(long, default_value_t = 1 << 30)]
        max_request_bytes: usize,
        /// Peer-to-peer address to listen on (repeatable), like /ip4/0.0.0.0/tcp/4001 or
        /// /ip4/0.0.0.0/udp/4001/quic-v1. Without any, the node only dials out.
        #[arg(long)]
        listen: Vec<libp2p::Multiaddr>,
        /// Peer to connect to at start and whenever the connection is lost (repeatable),
        /// like /ip4/10.0.0.5/tcp/4001/p2p/12D3Koo...
        #[arg(long)]
        peer: Vec<libp2p::Multiaddr>,
        /// Discover peers on the local network with mDNS (multicast on every interface).
        #[arg(long)]
        mdns: bool,
        /// Cap on bytes per second sent to peers.
        #[arg(long)]
        max_upload_rate: Option<u64>,
        /// Cap on bytes per second sent to any one peer.
        #[arg(long)]
        max_peer_upload_rate: Option<u64>,
        /// Requests per second one peer may send (bursts up to twice this); beyond it requests
        /// are refused and a peer that keeps on is banned.
        #[arg(long, default_value_t = 200.0)]
        max_peer_requests_per_sec: f64,
        /// Test mode: behave like a hostile peer (for tests of how nodes defend themselves).
        #[arg(long, hide = true)]
        misbehave: Option<crate::p2p::Misbehave>,
        /// Token that every request changing data must carry (Authorization: Bearer TOKEN).
        #[arg(long, env = "DVID_WRITE_TOKEN", hide_env_values = true)]
        write_token: Option<String>,
        /// Token that reads must carry (the write token also works); reads are open without it.
        #[arg(long, env = "DVID_READ_TOKEN", hide_env_values = true)]
        read_token: Option<String>,
        /// Origin that browser pages may read and write from (repeatable), like
        /// https://viewer.example.org. Without any, pages of every origin may read (Neuroglancer
        /// anywhere) and none may write.
        #[arg(long)]
        cors_origin: Vec<String>,
    },
    /// Check a stopped node's store: re-hash every object, walk every tree, check the version DAG.
    /// Exits non-zero if anything is wrong.
    Fsck {
        #[arg(long, env = "DVID_DATA_DIR", default_value = "./dvid-data")]
        data_dir: PathBuf,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print this node's PeerId (creating its key in the data dir if needed).
    Id {
        #[arg(long, env = "DVID_DATA_DIR", default_value = "./dvid-data")]
        data_dir: PathBuf,
    },
    /// Pull a locked version that peers offer, with progress, and wait until it is complete.
    Pull {
        /// Version UUID (or a unique prefix among the versions peers offer).
        uuid: String,
        /// Fetch only from this peer (repeatable); default: every peer that offers it.
        #[arg(long = "from")]
        from: Vec<String>,
        /// Only these instances, comma-separated.
        #[arg(long, value_delimiter = ',')]
        instances: Option<Vec<String>>,
        /// Only this region of voxels: X,Y,Z:SX,SY,SZ (offset and size).
        #[arg(long)]
        region: Option<String>,
        /// Seconds to wait for a peer that offers the version before failing.
        #[arg(long, default_value_t = 60)]
        wait: u64,
    },
    /// Ask a connected peer to pull a locked version from this node (the peer's own rules decide:
    /// it takes versions of repos it holds or follows), and wait until it has it.
    Push {
        /// Version UUID (or a unique prefix).
        uuid: String,
        /// The peer's PeerId.
        #[arg(long)]
        to: String,
        /// Seconds to wait for the peer to finish.
        #[arg(long, default_value_t = 600)]
        wait: u64,
    },
    /// Follow a repo: pull its new locked versions as peers offer them.
    Follow { repo: String },
    /// Stop following a repo.
    Unfollow { repo: String },
    /// List the repos followed.
    Follows,
    /// List pull jobs.
    Jobs,
    /// Cancel a waiting or running pull job.
    Cancel { job: String },
    /// Let peers fetch every locked version of a repo.
    Share {
        uuid: String,
        #[arg(required = true)]
        peers: Vec<String>,
    },
    /// Stop sharing a repo with peers (what they pulled stays with them).
    Unshare {
        uuid: String,
        #[arg(required = true)]
        peers: Vec<String>,
    },
    /// Let any peer fetch one locked version.
    Publish { uuid: String },
    /// Stop offering a published version to every peer.
    Unpublish { uuid: String },
    /// List the block coordinates or keys of an instance that differ between two versions.
    Diff {
        /// The earlier version.
        from: String,
        /// The later version.
        to: String,
        /// The data instance.
        #[arg(long)]
        data: String,
        /// Print the whole answer as JSON instead of one line per change.
        #[arg(long)]
        json: bool,
    },
    /// List every repo on the node (GET /api/repos/info).
    Repos,
    /// Create or inspect repos.
    #[command(subcommand)]
    Repo(RepoCommand),
    /// Add a data instance to a repo.
    Instance {
        /// UUID (or unique prefix) of any version of the repo.
        uuid: String,
        /// uint8blk, labelblk or keyvalue.
        typename: String,
        /// Name of the new instance.
        name: String,
        /// Block size of voxel types, like 64,64,64.
        #[arg(long)]
        block_size: Option<String>,
        /// Voxel size, like 8,8,8.
        #[arg(long)]
        voxel_size: Option<String>,
        /// Block compression: lz4 (default), zstd or zstd:LEVEL.
        #[arg(long)]
        compression: Option<String>,
    },
    /// Commit (lock) a version.
    Commit {
        uuid: String,
        #[arg(long)]
        note: Option<String>,
        /// A line for the version's log (repeatable).
        #[arg(long)]
        log: Vec<String>,
        /// First bring every instance's multiscale levels (made by `downres`) up to date.
        #[arg(long)]
        downres: bool,
    },
    /// Build an image or label instance's multiscale levels NAME_1, NAME_2, ... (each 2x
    /// coarser, as Neuroglancer reads them) at a mutable version. Only blocks written in the
    /// version are reduced, once the version's parent has levels.
    Downres {
        uuid: String,
        name: String,
        /// Levels to build; default: until the whole extent fits in one block.
        #[arg(long)]
        levels: Option<u32>,
    },
    /// Import a volume into an instance of a mutable version (created with the source's voxel
    /// type, block size and voxel size if it does not exist): a Zarr v2/v3 array, an OME-Zarr
    /// image, an N5 dataset, a TIFF stack (a folder of slices or a multi-page file), a NumPy
    /// .npy, or raw voxels. All or nothing: the version shows none of it until every block is
    /// in; run the same command again to resume an interrupted import.
    Import(crate::transfer::ImportArgs),
    /// Export an instance of a version (or a box of it) to a new file or folder: Zarr v3,
    /// OME-Zarr (with the levels NAME_1, NAME_2, ... that exist), N5, a multi-page TIFF, NumPy
    /// .npy or raw voxels.
    Export(crate::transfer::ExportArgs),
    /// Create a child of a locked version on a new branch.
    Branch {
        uuid: String,
        name: String,
        #[arg(long, default_value = "")]
        note: String,
    },
    /// Create a child of a locked version on the same branch.
    Newversion {
        uuid: String,
        #[arg(long, default_value = "")]
        note: String,
    },
    /// Merge locked versions into a new child; refused with the conflicting keys if they clash.
    Merge {
        /// Two or more parent UUIDs.
        #[arg(required = true, num_args = 2..)]
        parents: Vec<String>,
        #[arg(long, default_value = "")]
        note: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum RepoCommand {
    /// Create a repo; prints its root UUID.
    New {
        #[arg(long, default_value = "")]
        alias: String,
        #[arg(long, default_value = "")]
        description: String,
    },
    /// Show a repo's info, DAG and instances.
    Info { uuid: String },
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve {
            data_dir,
            http,
            memory,
            max_request_bytes,
            listen,
            peer,
            mdns,
            max_upload_rate,
            max_peer_upload_rate,
            max_peer_requests_per_sec,
            misbehave,
            write_token,
            read_token,
            cors_origin,
        } => match crate::http::CorsOrigins::from_args(&cors_origin) {
            Err(why) => Err(anyhow::anyhow!(why)),
            Ok(cors) => serve(ServeConfig {
                backend: if memory {
                    Backend::Memory
                } else {
                    Backend::Fjall(data_dir)
                },
                http_addr: http,
                http: HttpConfig {
                    max_request_bytes,
                    tokens: Tokens {
                        write: write_token.filter(|t| !t.is_empty()),
                        read: read_token.filter(|t| !t.is_empty()),
                    },
                    cors,
                },
                p2p: P2pConfig {
                    listen,
                    peers: peer,
                    mdns,
                    max_upload_rate,
                    max_peer_upload_rate,
                    limits: crate::p2p::guard::Limits {
                        requests_per_sec: max_peer_requests_per_sec.max(1.0),
                        ..Default::default()
                    },
                    misbehave,
                },
            }),
        },
        Command::Id { data_dir } => crate::p2p::identity::load_or_create(&data_dir).map(|k| {
            crate::client::out(&k.public().to_peer_id().to_string());
        }),
        Command::Fsck { data_dir, json } => fsck(&data_dir, json),
        other => Client::new(&cli.server, cli.token.as_deref()).and_then(|c| c.run(other)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dvid: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Checks a store offline and prints what was checked and found.
fn fsck(data_dir: &std::path::Path, json: bool) -> anyhow::Result<()> {
    anyhow::ensure!(
        data_dir.is_dir(),
        "no store at {}: the data dir does not exist",
        data_dir.display()
    );
    let store = dvid_store::Store::open_fjall(data_dir).map_err(|e| {
        anyhow::anyhow!(
            "cannot open the store at {} (is a node still running on it?): {e}",
            data_dir.display()
        )
    })?;
    let mut report = store.fsck()?;
    check_seals(&store, &mut report);
    if json {
        crate::client::out(&serde_json::to_string_pretty(&report)?);
    } else {
        crate::client::out(&format!(
            "checked {} objects ({} bytes), {} tree nodes, {} entries, {} versions, {} working entries",
            report.objects_checked,
            report.object_bytes_checked,
            report.tree_nodes_checked,
            report.entries_checked,
            report.versions_checked,
            report.working_entries_checked
        ));
        for p in &report.problems {
            crate::client::out(&format!("problem: {p}"));
        }
    }
    anyhow::ensure!(
        report.is_clean(),
        "{} problem(s) found in {}",
        report.problem_count,
        data_dir.display()
    );
    if !json {
        crate::client::out("no problems found");
    }
    Ok(())
}

/// Checks that every locked version carries a valid seal of the node that locked it (the store
/// cannot: it holds no crypto).
fn check_seals(store: &dvid_store::Store, report: &mut dvid_store::FsckReport) {
    let catalog = store.catalog();
    for v in catalog.versions.values().filter(|v| v.locked) {
        let (Some(hash), Ok(repo)) = (v.commit_hash, catalog.repo_of(v.id)) else {
            continue;
        };
        let parents: Vec<_> = v
            .parents
            .iter()
            .filter_map(|p| catalog.versions.get(p).map(|p| p.uuid))
            .collect();
        let message = dvid_store::manifest::seal_message(repo.root, v.uuid, &parents, hash);
        let problem = match &v.seal {
            None => Some(format!("locked version {} carries no seal", v.uuid)),
            Some(seal) => dvid_protocol::seal::verify(v.uuid, seal, &message)
                .err()
                .map(|e| e.to_string()),
        };
        if let Some(p) = problem {
            report.add_problem(p);
        }
    }
}

fn serve(config: ServeConfig) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new(
                    "info,fjall=warn,lsm_tree=warn,libp2p_swarm=warn,libp2p_kad=error",
                )
            }),
        )
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(crate::server::serve(config))
}
