//! Pull jobs and followed repos. A job drives the sans-IO pull engine over libp2p: it finds peers
//! that offer the version, fetches the manifest, then feeds the engine replies and stores what it
//! verifies. Job records and followed repos are saved in the data dir, so after a restart running
//! jobs start again, and the objects already stored are not fetched twice.

use super::P2p;
use dvid_protocol::pull::{Output, Pull, PullConfig};
use dvid_protocol::wire::{Request, Response};
use dvid_store::catalog::Uuid;
use dvid_store::{ObjectId, Point, Replica, Restriction, VersionManifest};
use libp2p::PeerId;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// How long a job waits for a connected peer that offers its version.
const FIND_PEERS_FOR: Duration = Duration::from_secs(60);
/// How often a running pull looks for more peers offering its version.
const PEER_CHECK_EVERY: Duration = Duration::from_secs(2);
/// Failed pulls of one version, within [`FOLLOW_FAILURE_WINDOW`], after which following pauses it
/// (a manual pull still can). A laptop whose network dropped during three pulls tries again once
/// those failures age out, instead of never.
const FOLLOW_MAX_FAILURES: usize = 3;
const FOLLOW_FAILURE_WINDOW: Duration = Duration::from_secs(600);

/// What to pull.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct JobSpec {
    /// Full UUID of the version (32 hex digits).
    pub uuid: String,
    /// Peers to fetch from (PeerIds); empty: every connected peer that offers the version.
    pub peers: Vec<String>,
    pub instances: Option<Vec<String>>,
    /// Inclusive voxel box.
    pub region: Option<(Point, Point)>,
}

/// Where a job is.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct JobStatus {
    pub state: String,
    pub error: Option<String>,
    pub objects_fetched: u64,
    pub bytes_fetched: u64,
    pub objects_total: Option<u64>,
    pub bytes_total: Option<u64>,
    /// When the job ended, in seconds since the Unix epoch (absent in job files from before).
    #[serde(default)]
    pub ended: Option<u64>,
}

#[derive(Default, Serialize, Deserialize)]
struct Saved {
    next: u64,
    jobs: BTreeMap<u64, (JobSpec, JobStatus)>,
    follow: BTreeSet<String>,
}

/// The node's jobs and follows.
pub struct Jobs {
    saved: Mutex<Saved>,
    file: Option<PathBuf>,
}

impl Jobs {
    /// Loads saved jobs from `file` (none in memory-only mode).
    pub fn open(file: Option<PathBuf>) -> anyhow::Result<Self> {
        let saved = match &file {
            Some(f) if f.exists() => serde_json::from_slice(&std::fs::read(f)?)?,
            _ => Saved::default(),
        };
        Ok(Self {
            saved: Mutex::new(saved),
            file,
        })
    }

    /// Records and starts a pull; returns its job id.
    pub fn start(&self, p2p: &P2p, spec: JobSpec) -> u64 {
        let id = {
            let mut s = self.saved.lock().expect("jobs lock");
            s.next += 1;
            let id = s.next;
            let status = JobStatus {
                state: "running".into(),
                ..JobStatus::default()
            };
            s.jobs.insert(id, (spec.clone(), status));
            id
        };
        self.save();
        tokio::spawn(run(p2p.clone(), id, spec));
        id
    }

    /// Repos followed.
    pub fn following(&self) -> Vec<Uuid> {
        let s = self.saved.lock().expect("jobs lock");
        s.follow
            .iter()
            .filter_map(|r| u128::from_str_radix(r, 16).ok().map(Uuid))
            .collect()
    }

    pub fn status(&self, id: u64) -> Option<JobStatus> {
        self.saved
            .lock()
            .expect("jobs lock")
            .jobs
            .get(&id)
            .map(|(_, s)| s.clone())
    }

    /// Follows a repo: its locked versions offered by peers are pulled as they appear.
    pub fn follow(&self, p2p: &P2p, repo: Uuid) -> Vec<String> {
        let list = {
            let mut s = self.saved.lock().expect("jobs lock");
            s.follow.insert(repo.to_hex());
            s.follow.iter().cloned().collect()
        };
        self.save();
        self.on_heads(p2p);
        list
    }

    /// Restarts the jobs that were running when the node stopped.
    pub(super) fn resume(&self, p2p: &P2p) {
        let running: Vec<(u64, JobSpec)> = {
            let s = self.saved.lock().expect("jobs lock");
            s.jobs
                .iter()
                .filter(|(_, (_, st))| st.state == "running")
                .map(|(id, (spec, _))| (*id, spec.clone()))
                .collect()
        };
        for (id, spec) in running {
            tracing::info!(job = id, version = %spec.uuid, "resuming pull");
            tokio::spawn(run(p2p.clone(), id, spec));
        }
    }

    /// New heads arrived: pull new versions of followed repos.
    pub(super) fn on_heads(&self, p2p: &P2p) {
        let follow = self.saved.lock().expect("jobs lock").follow.clone();
        if follow.is_empty() {
            return;
        }
        for offered in p2p.offered() {
            let uuid = offered.head.version.to_hex();
            if !follow.contains(&offered.head.repo.to_hex()) || holds(p2p, &uuid) {
                continue;
            }
            let (running, failed) = {
                let s = self.saved.lock().expect("jobs lock");
                let of_uuid = || s.jobs.values().filter(|(spec, _)| spec.uuid == uuid);
                (
                    of_uuid().any(|(_, st)| st.state == "running"),
                    recent_failures(of_uuid().map(|(_, st)| st), unix_now()),
                )
            };
            if !running && failed < FOLLOW_MAX_FAILURES {
                tracing::info!(version = %uuid, "following: pulling a new version");
                self.start(
                    p2p,
                    JobSpec {
                        uuid,
                        peers: vec![],
                        instances: None,
                        region: None,
                    },
                );
            }
        }
    }

    fn update(&self, id: u64, f: impl FnOnce(&mut JobStatus)) {
        if let Some((_, st)) = self.saved.lock().expect("jobs lock").jobs.get_mut(&id) {
            f(st);
        }
    }

    fn save(&self) {
        let Some(file) = &self.file else { return };
        let bytes = serde_json::to_vec_pretty(&*self.saved.lock().expect("jobs lock"))
            .expect("jobs serialize");
        let tmp = file.with_extension("tmp");
        if let Err(e) = std::fs::write(&tmp, bytes).and_then(|()| std::fs::rename(&tmp, file)) {
            tracing::error!("saving jobs to {}: {e}", file.display());
        }
    }
}

/// Jobs among `jobs` that failed within [`FOLLOW_FAILURE_WINDOW`] before `now` (Unix seconds).
fn recent_failures<'a>(jobs: impl Iterator<Item = &'a JobStatus>, now: u64) -> usize {
    let window = FOLLOW_FAILURE_WINDOW.as_secs();
    jobs.filter(|st| st.state == "failed")
        .filter(|st| st.ended.is_some_and(|t| now.saturating_sub(t) < window))
        .count()
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn holds(p2p: &P2p, uuid: &str) -> bool {
    p2p.store
        .resolve(uuid)
        .is_ok_and(|v| v.replica == Replica::Full)
}

async fn run(p2p: P2p, id: u64, spec: JobSpec) {
    let result = drive(&p2p, id, &spec).await;
    p2p.jobs.update(id, |st| {
        st.ended = Some(unix_now());
        match result {
            Ok(()) => st.state = "done".into(),
            Err(e) => {
                st.state = "failed".into();
                st.error = Some(e);
            }
        }
    });
    p2p.jobs.save();
}

async fn drive(p2p: &P2p, id: u64, spec: &JobSpec) -> Result<(), String> {
    let version = Uuid(
        u128::from_str_radix(&spec.uuid, 16)
            .map_err(|_| format!("bad version UUID {:?}", spec.uuid))?,
    );
    let began = Instant::now();
    let peers = find_peers(p2p, version, &spec.peers).await?;
    let mut refusals = Vec::new();
    let mut manifest = None;
    for &peer in &peers {
        // The manifest must be the version the peer's (sealed) head announced: a peer could offer
        // an honest head and then serve a manifest of its own making under the same UUID.
        let announced = p2p.head_of(peer, version).map(|h| h.commit_hash);
        match p2p.request(peer, &Request::Manifest { version }).await {
            Ok(Response::Manifest(bytes)) => match VersionManifest::decode(&bytes) {
                Ok(m) if announced.is_some_and(|h| h != m.target_def().commit_hash) => {
                    refusals.push(format!(
                        "{peer} sent a manifest whose commit hash differs from the head it announced"
                    ));
                    p2p.offence(peer, super::guard::Offence::ForgedHead);
                }
                Ok(m) if m.target == version => match dvid_protocol::seal::verify_manifest(&m) {
                    Ok(_) => {
                        manifest = Some(m);
                        break;
                    }
                    Err(e) => refusals.push(format!("{peer} sent a manifest with a bad seal: {e}")),
                },
                Ok(_) => refusals.push(format!("{peer} sent the manifest of another version")),
                Err(e) => refusals.push(format!("{peer} sent a bad manifest: {e}")),
            },
            Ok(Response::Refused(r)) => refusals.push(format!("{peer} refused: {r}")),
            Ok(other) => refusals.push(format!("{peer} answered {other:?}")),
            Err(e) => refusals.push(format!("{peer}: {e:#}")),
        }
    }
    let manifest = manifest.ok_or_else(|| {
        format!(
            "no peer would send version {version}: {}",
            refusals.join("; ")
        )
    })?;
    let restriction = (spec.instances.is_some() || spec.region.is_some()).then(|| Restriction {
        instances: spec.instances.clone(),
        region: spec.region,
    });
    let mut pull: Pull<PeerId> = Pull::new(&manifest, restriction.as_ref(), PullConfig::default());
    for &p in &peers {
        pull.add_peer(p);
    }
    let (tx, mut rx) = mpsc::channel::<(u64, anyhow::Result<Response>)>(256);
    let mut storer = Storer::start(p2p.store.clone());
    let start = Instant::now();
    let mut next_peer_check = start + PEER_CHECK_EVERY;
    loop {
        // Peers that began to offer the version since the pull started serve too (unless the
        // request named its peers).
        if spec.peers.is_empty() && Instant::now() >= next_peer_check {
            next_peer_check = Instant::now() + PEER_CHECK_EVERY;
            let hash = manifest.target_def().commit_hash;
            for o in p2p.offered() {
                if o.head.version == version && o.head.commit_hash == hash {
                    for p in o.peers {
                        if pull.add_peer(p) {
                            tracing::info!(%version, peer = %p, "a new peer serves the pull");
                        }
                    }
                }
            }
        }
        let store = p2p.store.clone();
        let now_ms = start.elapsed().as_millis() as u64;
        let (back, polled) = tokio::task::spawn_blocking(move || {
            let out = pull.poll(store.objects(), now_ms);
            (pull, out)
        })
        .await
        .map_err(|e| e.to_string())?;
        pull = back;
        let outputs = polled.map_err(|e| e.to_string())?;
        if carry_out(p2p, &mut storer, outputs, &tx, &manifest, &restriction).await? {
            let p = pull.progress();
            tracing::info!(
                %version,
                objects = p.objects_fetched,
                bytes = p.bytes_fetched,
                already_held = p.objects_local,
                peers = peers.len(),
                "pulled in {:.3} s (manifest after {:.3} s)",
                began.elapsed().as_secs_f64(),
                (start - began).as_secs_f64(),
            );
            p2p.jobs.update(id, |st| {
                st.objects_fetched = p.objects_fetched;
                st.bytes_fetched = p.bytes_fetched;
                st.objects_total = Some(p.objects_fetched + p.objects_local);
            });
            return Ok(());
        }
        // Wait for a reply (or a tick, for timeouts), then take every reply already there.
        let mut replies = Vec::new();
        if let Ok(Some(r)) = tokio::time::timeout(Duration::from_millis(500), rx.recv()).await {
            replies.push(r);
            while let Ok(r) = rx.try_recv() {
                replies.push(r);
            }
        }
        for (request, result) in replies {
            let outputs = match result {
                Ok(Response::Objects(r)) => pull.on_reply(request, r),
                Ok(Response::Refused(reason)) => pull.on_refused(request, &reason),
                Ok(_) | Err(_) => {
                    pull.on_failed(request);
                    Vec::new()
                }
            };
            carry_out(p2p, &mut storer, outputs, &tx, &manifest, &restriction).await?;
        }
        let p = pull.progress().clone();
        p2p.jobs.update(id, |st| {
            st.objects_fetched = p.objects_fetched;
            st.bytes_fetched = p.bytes_fetched;
        });
    }
}

/// Waits for connected peers that offer `version` (or the named ones).
async fn find_peers(p2p: &P2p, version: Uuid, named: &[String]) -> Result<Vec<PeerId>, String> {
    let named: Vec<PeerId> = named
        .iter()
        .map(|p| p.parse().map_err(|_| format!("{p:?} is not a PeerId")))
        .collect::<Result<_, _>>()?;
    let deadline = Instant::now() + FIND_PEERS_FOR;
    let mut next_lookup = Instant::now();
    loop {
        let connected = p2p.connected();
        let peers: Vec<PeerId> = if named.is_empty() {
            p2p.offered()
                .into_iter()
                .find(|o| o.head.version == version)
                .map(|o| o.peers)
                .unwrap_or_default()
        } else {
            named
                .iter()
                .filter(|p| connected.contains(p))
                .copied()
                .collect()
        };
        if !peers.is_empty() {
            return Ok(peers);
        }
        if named.is_empty() && Instant::now() >= next_lookup {
            // Nobody connected offers it: ask Kademlia who provides it (published versions).
            p2p.discover(version);
            next_lookup = Instant::now() + Duration::from_secs(3);
        }
        if named.is_empty()
            && let Some(c) = p2p.conflicts().into_iter().find(|c| c.version == version)
        {
            return Err(format!(
                "peers claim {} different commit hashes for version {version}: not pulling it; name a peer you trust with \"peers\" (see /api/p2p/conflicts)",
                c.claims.len()
            ));
        }
        if Instant::now() > deadline {
            return Err(if named.is_empty() {
                format!(
                    "no connected peer offers version {version} (it may not be shared with this node; see /api/p2p/heads)"
                )
            } else {
                "none of the named peers is connected".to_string()
            });
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Carries out engine outputs. Returns true once the version is imported.
async fn carry_out(
    p2p: &P2p,
    storer: &mut Storer,
    outputs: Vec<Output<PeerId>>,
    tx: &mpsc::Sender<(u64, anyhow::Result<Response>)>,
    manifest: &VersionManifest,
    restriction: &Option<Restriction>,
) -> Result<bool, String> {
    for out in outputs {
        match out {
            Output::Send {
                peer,
                request,
                message,
            } => {
                let (p, tx) = (p2p.clone(), tx.clone());
                tokio::spawn(async move {
                    let r = p.request(peer, &message).await;
                    let _ = tx.send((request, r)).await;
                });
            }
            Output::Store(objects) => storer.put(objects).await?,
            Output::Ban { peer, reason } => {
                tracing::warn!(%peer, "dropping peer from the pull: {reason}");
                p2p.offence(peer, super::guard::Offence::BadObject);
            }
            Output::Failed(reason) => return Err(reason),
            Output::Done => {
                let t = Instant::now();
                storer.finish().await?;
                let writes = t.elapsed();
                let (store, m, r) = (p2p.store.clone(), manifest.clone(), restriction.clone());
                tokio::task::spawn_blocking(move || store.import_version(&m, r))
                    .await
                    .map_err(|e| e.to_string())?
                    .map_err(|e| format!("importing the version: {e}"))?;
                tracing::debug!(
                    "last writes took {:.3} s, the import {:.3} s",
                    writes.as_secs_f64(),
                    (t.elapsed() - writes).as_secs_f64()
                );
                p2p.announce(manifest.repo_root);
                return Ok(true);
            }
        }
    }
    Ok(false)
}

/// Objects verified by a pull, on their way to the store.
type Batch = Vec<(ObjectId, Vec<u8>)>;

/// Writes a pull's verified objects on a blocking thread while the pull fetches more, so the disk
/// and the network work at once. At most [`STORE_QUEUE`] batches wait: a slow disk slows the pull
/// instead of filling memory.
struct Storer {
    tx: Option<mpsc::Sender<Batch>>,
    task: Option<tokio::task::JoinHandle<Result<(), String>>>,
}

/// Batches waiting to be written, beside the one being written.
const STORE_QUEUE: usize = 4;
/// Waiting batches are merged into one write up to this size. Larger writes fsync less often, but
/// a large batch goes to the store through ingestion, which holds fjall's journal (so every other
/// write of the node) while it fsyncs.
const STORE_BATCH_BYTES: usize = 32 << 20;

fn batch_bytes(batch: &Batch) -> usize {
    batch.iter().map(|(_, b)| b.len()).sum()
}

impl Storer {
    fn start(store: std::sync::Arc<dvid_store::Store>) -> Self {
        let (tx, mut rx) = mpsc::channel::<Batch>(STORE_QUEUE);
        let task = tokio::task::spawn_blocking(move || {
            while let Some(mut batch) = rx.blocking_recv() {
                // Take the batches waiting too: when the network outruns the disk, fewer and
                // larger writes (each makes files and fsyncs them).
                let mut bytes = batch_bytes(&batch);
                while bytes < STORE_BATCH_BYTES
                    && let Ok(more) = rx.try_recv()
                {
                    bytes += batch_bytes(&more);
                    batch.extend(more);
                }
                let t = Instant::now();
                store
                    .objects()
                    .put_objects(&batch)
                    .map_err(|e| format!("storing objects: {e}"))?;
                tracing::debug!(bytes, "stored in {:.1} ms", t.elapsed().as_secs_f64() * 1e3);
            }
            Ok(())
        });
        Self {
            tx: Some(tx),
            task: Some(task),
        }
    }

    async fn put(&mut self, batch: Batch) -> Result<(), String> {
        let sent = match &self.tx {
            Some(tx) => tx.send(batch).await.is_ok(),
            None => false,
        };
        match sent {
            true => Ok(()),
            // The writer stopped: its error says why.
            false => self.finish().await,
        }
    }

    /// Waits until every batch is written.
    async fn finish(&mut self) -> Result<(), String> {
        self.tx = None;
        match self.task.take() {
            Some(task) => task.await.map_err(|e| e.to_string())?,
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(state: &str, ended: Option<u64>) -> JobStatus {
        JobStatus {
            state: state.into(),
            ended,
            ..JobStatus::default()
        }
    }

    #[test]
    fn follow_counts_only_recent_failures() {
        let now = 1_000_000;
        let window = FOLLOW_FAILURE_WINDOW.as_secs();
        let jobs = [
            job("failed", Some(now - 5)),
            job("failed", Some(now - window + 1)),
            job("failed", Some(now - window)), // aged out
            job("failed", None),               // from a job file written before `ended`
            job("done", Some(now)),
            job("running", None),
        ];
        assert_eq!(recent_failures(jobs.iter(), now), 2);
        // Later, every failure has aged out and following retries the version.
        assert_eq!(recent_failures(jobs.iter(), now + window), 0);
    }
}
