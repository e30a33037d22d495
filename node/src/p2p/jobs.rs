//! Pull jobs and followed repos. A job drives the sans-IO pull engine over libp2p: it finds peers
//! that offer the version, fetches the manifest, then feeds the engine replies and stores what it
//! verifies. Job records and followed repos are saved in the data dir, so after a restart running
//! jobs start again, and the objects already stored are not fetched twice.
//!
//! A job that cannot start says why at once (`waiting`, with the reason) and fails at its deadline.
//! Peers that hold an ancestor of the version serve what the version did not change, so a laptop's
//! new version comes from the laptop for its edits and from any holder of its parent for the rest.

use super::P2p;
use dvid_protocol::heads::{self, ManifestRefusal, Standing};
use dvid_protocol::pull::{Output, Pull, PullConfig};
use dvid_protocol::wire::{Request, Response};
use dvid_store::catalog::Uuid;
use dvid_store::{ObjectId, Point, Replica, Restriction, VersionManifest};
use libp2p::PeerId;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// How long a job waits, by default, for a connected peer that offers its version.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(60);
/// How often a running pull looks for more peers offering its version.
const PEER_CHECK_EVERY: Duration = Duration::from_secs(2);

/// What to pull.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct JobSpec {
    /// The version (32 hex digits in the jobs file).
    pub uuid: Uuid,
    /// Peers to fetch from (PeerIds); empty: every connected peer that offers the version.
    pub peers: Vec<String>,
    pub instances: Option<Vec<String>>,
    /// Inclusive voxel box.
    pub region: Option<(Point, Point)>,
    /// Seconds to wait for a peer that offers the version before failing (default 60).
    #[serde(default)]
    pub wait_secs: Option<u64>,
}

/// Where a job is. Stored as lowercase text (job files from before hold "running", "done" or
/// "failed").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    /// No connected peer can serve it yet: `reason` says what it waits for.
    #[default]
    Waiting,
    Running,
    Done,
    Failed,
    Cancelled,
}

impl JobState {
    pub fn name(self) -> &'static str {
        match self {
            Self::Waiting => "waiting",
            Self::Running => "running",
            Self::Done => "done",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    /// Still waiting or running.
    pub fn is_active(self) -> bool {
        matches!(self, Self::Waiting | Self::Running)
    }
}

/// A job's progress.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct JobStatus {
    pub state: JobState,
    /// What a waiting job waits for.
    #[serde(default)]
    pub reason: Option<String>,
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
    follow: BTreeSet<Uuid>,
}

/// The node's jobs and follows.
pub struct Jobs {
    saved: Mutex<Saved>,
    file: Option<PathBuf>,
    /// Set to stop a running job.
    cancels: Mutex<BTreeMap<u64, std::sync::Arc<AtomicBool>>>,
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
            cancels: Mutex::new(BTreeMap::new()),
        })
    }

    /// Records and starts a pull; returns its job id. `manifest`: already fetched (and checked)
    /// by the caller.
    pub fn start(&self, p2p: &P2p, spec: JobSpec, manifest: Option<VersionManifest>) -> u64 {
        let id = {
            let mut s = self.saved.lock().expect("jobs lock");
            s.next += 1;
            let id = s.next;
            let status = JobStatus {
                reason: Some("looking for a connected peer that offers the version".into()),
                ..JobStatus::default()
            };
            s.jobs.insert(id, (spec.clone(), status));
            id
        };
        self.save();
        self.spawn(p2p, id, spec, manifest);
        id
    }

    fn spawn(&self, p2p: &P2p, id: u64, spec: JobSpec, manifest: Option<VersionManifest>) {
        let cancel = std::sync::Arc::new(AtomicBool::new(false));
        self.cancels
            .lock()
            .expect("cancels lock")
            .insert(id, cancel.clone());
        tokio::spawn(run(p2p.clone(), id, spec, manifest, cancel));
    }

    /// Repos followed.
    pub fn following(&self) -> Vec<Uuid> {
        let s = self.saved.lock().expect("jobs lock");
        s.follow.iter().copied().collect()
    }

    pub fn status(&self, id: u64) -> Option<JobStatus> {
        self.saved
            .lock()
            .expect("jobs lock")
            .jobs
            .get(&id)
            .map(|(_, s)| s.clone())
    }

    /// Every job, oldest first.
    pub fn list(&self) -> Vec<(u64, JobSpec, JobStatus)> {
        let s = self.saved.lock().expect("jobs lock");
        s.jobs
            .iter()
            .map(|(id, (spec, st))| (*id, spec.clone(), st.clone()))
            .collect()
    }

    /// The newest job pulling `uuid`, if any.
    pub fn latest_for(&self, uuid: Uuid) -> Option<(u64, JobStatus)> {
        let s = self.saved.lock().expect("jobs lock");
        s.jobs
            .iter()
            .rev()
            .find(|(_, (spec, _))| spec.uuid == uuid)
            .map(|(id, (_, st))| (*id, st.clone()))
    }

    /// Stops a waiting or running job. What it already stored stays (a later pull reuses it).
    pub fn cancel(&self, id: u64) -> Result<JobStatus, CancelError> {
        let st = self.status(id).ok_or(CancelError::NoSuchJob)?;
        if !st.state.is_active() {
            return Err(CancelError::Ended(st.state));
        }
        if let Some(flag) = self.cancels.lock().expect("cancels lock").get(&id) {
            flag.store(true, Ordering::Relaxed);
        }
        self.update(id, |st| {
            st.state = JobState::Cancelled;
            st.reason = None;
            st.ended = Some(unix_now());
        });
        self.save();
        Ok(self.status(id).unwrap_or_default())
    }

    /// Follows a repo: its locked versions offered by peers are pulled as they appear.
    pub fn follow(&self, p2p: &P2p, repo: Uuid) -> Vec<Uuid> {
        let list = {
            let mut s = self.saved.lock().expect("jobs lock");
            s.follow.insert(repo);
            s.follow.iter().copied().collect()
        };
        self.save();
        self.on_heads(p2p);
        list
    }

    /// Stops following a repo; returns false if it was not followed. Pulls already started go on.
    pub fn unfollow(&self, repo: Uuid) -> bool {
        let removed = self.saved.lock().expect("jobs lock").follow.remove(&repo);
        if removed {
            self.save();
        }
        removed
    }

    /// Restarts the jobs that were waiting or running when the node stopped.
    pub(super) fn resume(&self, p2p: &P2p) {
        let active: Vec<(u64, JobSpec)> = {
            let s = self.saved.lock().expect("jobs lock");
            s.jobs
                .iter()
                .filter(|(_, (_, st))| st.state.is_active())
                .map(|(id, (spec, _))| (*id, spec.clone()))
                .collect()
        };
        for (id, spec) in active {
            tracing::info!(job = id, version = %spec.uuid, "resuming pull");
            self.spawn(p2p, id, spec, None);
        }
    }

    /// New heads arrived: pull new versions of followed repos.
    pub(super) fn on_heads(&self, p2p: &P2p) {
        let follow = self.saved.lock().expect("jobs lock").follow.clone();
        if follow.is_empty() {
            return;
        }
        // A copy of the jobs, so the jobs lock is not held with the heads book's.
        let jobs: Vec<(Uuid, JobStatus)> = {
            let s = self.saved.lock().expect("jobs lock");
            s.jobs
                .values()
                .map(|(spec, st)| (spec.uuid, st.clone()))
                .collect()
        };
        let now = unix_now();
        let wanted = p2p.to_follow(&follow, heads::FOLLOW_MAX_FAILURES, |uuid| {
            let of_uuid = || jobs.iter().filter(|(u, _)| *u == uuid).map(|(_, st)| st);
            let local = p2p.store.resolve(&uuid.to_hex()).ok();
            Standing {
                held: local.as_ref().is_some_and(|v| v.replica == Replica::Full),
                pulling: of_uuid().any(|st| st.state.is_active()),
                recent_failures: recent_failures(of_uuid(), now),
                local_hash: local.and_then(|v| v.commit_hash),
            }
        });
        for (uuid, _) in wanted {
            tracing::info!(version = %uuid, "following: pulling a new version");
            self.start(p2p, JobSpec::whole(uuid), None);
        }
    }

    /// A peer asks this node to pull `version` from it. This node's rules decide: it takes pushes
    /// only of repos it holds or follows (a stranger cannot fill its disk), of versions the pusher
    /// offers it (the pusher's sharing rules), and pulls them like any other version.
    pub(super) async fn on_push(&self, p2p: &P2p, from: PeerId, version: Uuid) -> Response {
        if holds(p2p, version) {
            return push_state(JobState::Done, "this node holds the version");
        }
        if let Some((_, st)) = self
            .latest_for(version)
            .filter(|(_, st)| st.state.is_active())
        {
            return job_push_state(&st);
        }
        let mut head = p2p.head_of(from, version);
        if head.is_none() {
            p2p.refresh_heads(from).await;
            head = p2p.head_of(from, version);
        }
        let Some(head) = head else {
            return refused(format!(
                "your heads do not offer version {version} to this node: share its repo with {} first",
                p2p.peer_id()
            ));
        };
        let kept = p2p
            .store
            .repo_root(&head.repo.to_hex())
            .is_ok_and(|r| r == head.repo);
        if !kept && !self.following().contains(&head.repo) {
            return refused(format!(
                "this node neither holds nor follows repo {}: it takes pushes only of repos it holds or follows",
                head.repo
            ));
        }
        tracing::info!(%version, peer = %from, "pulling a pushed version");
        let id = self.start(p2p, JobSpec::whole(version), None);
        job_push_state(&self.status(id).unwrap_or_default())
    }

    /// Where the pull of a pushed version is.
    pub(super) fn on_push_status(&self, p2p: &P2p, version: Uuid) -> Response {
        match self.latest_for(version) {
            Some((_, st)) => job_push_state(&st),
            None if holds(p2p, version) => {
                push_state(JobState::Done, "this node holds the version")
            }
            None => refused(format!("this node was not asked to pull version {version}")),
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

/// Why a job cannot be cancelled.
#[derive(Debug)]
pub enum CancelError {
    NoSuchJob,
    Ended(JobState),
}

impl JobSpec {
    /// A pull of all of a version from whoever offers it.
    pub fn whole(uuid: Uuid) -> Self {
        Self {
            uuid,
            peers: vec![],
            instances: None,
            region: None,
            wait_secs: None,
        }
    }

    fn restriction(&self) -> Option<Restriction> {
        (self.instances.is_some() || self.region.is_some()).then(|| Restriction {
            instances: self.instances.clone(),
            region: self.region,
        })
    }
}

fn push_state(state: JobState, detail: &str) -> Response {
    Response::PushState {
        state: state.name().into(),
        detail: detail.into(),
    }
}

fn job_push_state(st: &JobStatus) -> Response {
    let detail = match st.state {
        JobState::Waiting => st.reason.clone().unwrap_or_default(),
        JobState::Failed => st.error.clone().unwrap_or_default(),
        JobState::Running => format!("{} objects fetched", st.objects_fetched),
        JobState::Done => "pulled".into(),
        JobState::Cancelled => "cancelled on this node".into(),
    };
    push_state(st.state, &detail)
}

fn refused(detail: String) -> Response {
    Response::PushState {
        state: "refused".into(),
        detail,
    }
}

/// Jobs among `jobs` that failed recently enough to count against following (the policy's window;
/// `now` and the jobs' end times in Unix seconds). Job files from before `ended` count none.
fn recent_failures<'a>(jobs: impl Iterator<Item = &'a JobStatus>, now: u64) -> usize {
    let ended = jobs
        .filter(|st| st.state == JobState::Failed)
        .filter_map(|st| st.ended);
    heads::recent_failures(ended, now, heads::FOLLOW_FAILURE_WINDOW_MS / 1_000)
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn holds(p2p: &P2p, uuid: Uuid) -> bool {
    p2p.store
        .resolve(&uuid.to_hex())
        .is_ok_and(|v| v.replica == Replica::Full)
}

/// How a job ended, or that it was cancelled.
enum Ending {
    Done,
    Failed(String),
    Cancelled,
}

async fn run(
    p2p: P2p,
    id: u64,
    spec: JobSpec,
    manifest: Option<VersionManifest>,
    cancel: std::sync::Arc<AtomicBool>,
) {
    let ending = match drive(&p2p, id, &spec, manifest, &cancel).await {
        Ok(()) => Ending::Done,
        Err(_) if cancel.load(Ordering::Relaxed) => Ending::Cancelled,
        Err(e) => Ending::Failed(e),
    };
    p2p.jobs.cancels.lock().expect("cancels lock").remove(&id);
    p2p.jobs.update(id, |st| {
        st.ended = Some(unix_now());
        st.reason = None;
        match ending {
            Ending::Done => st.state = JobState::Done,
            Ending::Cancelled => st.state = JobState::Cancelled,
            Ending::Failed(e) => {
                tracing::warn!(job = id, "pull failed: {e}");
                st.state = JobState::Failed;
                st.error = Some(e);
            }
        }
    });
    p2p.jobs.save();
}

async fn drive(
    p2p: &P2p,
    id: u64,
    spec: &JobSpec,
    manifest: Option<VersionManifest>,
    cancel: &AtomicBool,
) -> Result<(), String> {
    let version = spec.uuid;
    let began = Instant::now();
    let wait = spec.wait_secs.map_or(DEFAULT_WAIT, Duration::from_secs);
    let peers = find_peers(p2p, id, version, &spec.peers, wait, cancel).await?;
    let manifest = match manifest {
        Some(m) => m,
        None => fetch_manifest(p2p, version, &peers).await?,
    };
    check_spec(&manifest, spec)?;
    p2p.jobs.update(id, |st| {
        st.state = JobState::Running;
        st.reason = None;
    });
    let restriction = spec.restriction();
    let mut pull: Pull<PeerId> = Pull::new(&manifest, restriction.as_ref(), PullConfig::default());
    for &p in &peers {
        pull.add_peer(p);
    }
    add_ancestor_holders(p2p, &manifest, &mut pull);
    let (tx, mut rx) = mpsc::channel::<(u64, anyhow::Result<Response>)>(256);
    let mut storer = Storer::start(p2p.store.clone());
    let start = Instant::now();
    let mut next_peer_check = start + PEER_CHECK_EVERY;
    loop {
        if cancel.load(Ordering::Relaxed) {
            storer.finish().await?;
            return Err("cancelled".into());
        }
        // Peers that began to offer the version (or an ancestor) since the pull started serve too
        // (unless the request named its peers).
        if spec.peers.is_empty() && Instant::now() >= next_peer_check {
            next_peer_check = Instant::now() + PEER_CHECK_EVERY;
            let hash = manifest.target_def().commit_hash;
            for p in p2p.offering(version, Some(hash)) {
                if pull.add_peer(p) {
                    tracing::info!(%version, peer = %p, "a new peer serves the pull");
                }
            }
            add_ancestor_holders(p2p, &manifest, &mut pull);
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
            ask_label_grants(p2p, version, &peers).await;
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

/// Asks the peers a pull came from for part of their new labels of each labelmap this node holds
/// none of (see `dvid_store::types::labelmap::ranges`). Without a grant the node reads the
/// labelmap but refuses edits that take new ids, saying why; the next pull asks again.
async fn ask_label_grants(p2p: &P2p, version: Uuid, peers: &[PeerId]) {
    let store = p2p.store.clone();
    let wanted =
        match tokio::task::spawn_blocking(move || store.labelmaps_without_allotment(version)).await
        {
            Ok(Ok(w)) => w,
            Ok(Err(e)) => return tracing::warn!(%version, "labelmaps without labels: {e}"),
            Err(e) => return tracing::warn!(%version, "labelmaps without labels: {e}"),
        };
    for data in wanted {
        for &peer in peers {
            match p2p
                .request(peer, &Request::GrantLabels { version, data })
                .await
            {
                Ok(Response::LabelGrant(g)) => {
                    let store = p2p.store.clone();
                    let taken = tokio::task::spawn_blocking(move || {
                        store.accept_label_grant(version, data, g)
                    })
                    .await;
                    match taken {
                        Ok(Ok(_)) => tracing::info!(%data, %peer, ?g, "granted new labels"),
                        Ok(Err(e)) => tracing::warn!(%data, %peer, "label grant refused: {e}"),
                        Err(e) => tracing::warn!(%data, %peer, "label grant: {e}"),
                    }
                    break;
                }
                Ok(Response::Refused(why)) => {
                    tracing::warn!(%data, %peer, "peer granted no labels: {why}")
                }
                Ok(_) => tracing::warn!(%data, %peer, "peer answered a label grant oddly"),
                Err(e) => tracing::warn!(%data, %peer, "asking for labels: {e}"),
            }
        }
    }
}

/// Peers offering an ancestor of the target (with the commit hash the manifest names) serve, under
/// that ancestor, what the target did not change: the nearest ancestor each peer offers.
fn add_ancestor_holders(p2p: &P2p, manifest: &VersionManifest, pull: &mut Pull<PeerId>) {
    for v in manifest.versions.iter().rev().skip(1) {
        for p in p2p.offering(v.uuid, Some(v.commit_hash)) {
            if pull.add_peer_serving(p, v.uuid) {
                tracing::info!(version = %manifest.target, ancestor = %v.uuid, peer = %p, "a holder of an ancestor serves the pull");
            }
        }
    }
}

/// Refuses a pull of instances the version does not have.
pub fn check_spec(manifest: &VersionManifest, spec: &JobSpec) -> Result<(), String> {
    let target = manifest.target_def();
    let held: Vec<&str> = manifest
        .instances
        .iter()
        .filter(|i| target.instances.contains(&i.data_uuid))
        .map(|i| i.name.as_str())
        .collect();
    for name in spec.instances.iter().flatten() {
        if !held.contains(&name.as_str()) {
            return Err(format!(
                "version {} has no data instance {name:?} (it has: {})",
                manifest.target,
                held.join(", ")
            ));
        }
    }
    Ok(())
}

/// Fetches the version's manifest from the first of `peers` that sends a good one.
pub async fn fetch_manifest(
    p2p: &P2p,
    version: Uuid,
    peers: &[PeerId],
) -> Result<VersionManifest, String> {
    let mut refusals = Vec::new();
    for &peer in peers {
        // The manifest must be the version the peer's (sealed) head announced.
        let announced = p2p.head_of(peer, version).map(|h| h.commit_hash);
        match p2p.request(peer, &Request::Manifest { version }).await {
            Ok(Response::Manifest(bytes)) => match VersionManifest::decode(&bytes) {
                Ok(m) => {
                    let seals = |m: &VersionManifest| {
                        dvid_protocol::seal::verify_manifest(m)
                            .map(|_| ())
                            .map_err(|e| e.to_string())
                    };
                    match heads::accept_manifest(&m, version, announced, seals) {
                        Ok(()) => return Ok(m),
                        Err(why) => {
                            if why == ManifestRefusal::DiffersFromHead {
                                p2p.offence(peer, super::guard::Offence::ForgedHead);
                            }
                            refusals.push(format!("{peer} {why}"));
                        }
                    }
                }
                Err(e) => refusals.push(format!("{peer} sent a bad manifest: {e}")),
            },
            Ok(Response::Refused(r)) => refusals.push(format!("{peer} refused: {r}")),
            Ok(_) => refusals.push(format!(
                "{peer} answered with something other than a manifest"
            )),
            Err(e) => refusals.push(format!("{peer}: {e:#}")),
        }
    }
    Err(format!(
        "no peer would send version {version}: {}",
        refusals.join("; ")
    ))
}

/// Waits for connected peers that offer `version` (or the named ones), saying in the job's status
/// what it waits for, until `wait` has passed.
async fn find_peers(
    p2p: &P2p,
    id: u64,
    version: Uuid,
    named: &[String],
    wait: Duration,
    cancel: &AtomicBool,
) -> Result<Vec<PeerId>, String> {
    let named: Vec<PeerId> = named
        .iter()
        .map(|p| p.parse().map_err(|_| format!("{p:?} is not a PeerId")))
        .collect::<Result<_, _>>()?;
    let deadline = Instant::now() + wait;
    let mut next_lookup = Instant::now();
    loop {
        if cancel.load(Ordering::Relaxed) {
            return Err("cancelled".into());
        }
        let connected = p2p.connected();
        let peers: Vec<PeerId> = if named.is_empty() {
            p2p.offering(version, None)
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
        let reason = if named.is_empty() {
            let lookup = p2p.lookup(version);
            format!(
                "no connected peer offers version {version} ({} peer(s) connected; Kademlia lookups: {}, providers found: {}){}",
                connected.len(),
                lookup.finished,
                lookup.providers,
                if connected.is_empty() {
                    "; dial a peer that holds it (--peer or POST /api/p2p/dial)"
                } else {
                    "; is its repo shared with this node, or the version published?"
                }
            )
        } else {
            format!(
                "none of the named peers is connected ({} peer(s) connected)",
                connected.len()
            )
        };
        let changed = p2p
            .jobs
            .status(id)
            .is_some_and(|st| st.reason.as_deref() != Some(reason.as_str()));
        if changed {
            tracing::info!(job = id, %version, "waiting: {reason}");
        }
        p2p.jobs.update(id, |st| {
            st.state = JobState::Waiting;
            st.reason = Some(reason.clone());
        });
        if Instant::now() > deadline {
            return Err(format!("waited {} s: {reason}", wait.as_secs()));
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

    fn job(state: JobState, ended: Option<u64>) -> JobStatus {
        JobStatus {
            state,
            ended,
            ..JobStatus::default()
        }
    }

    #[test]
    fn jobs_file_of_the_first_release_loads() {
        // Written by dvid 0.1.0: UUIDs as hex text, states as lowercase words, no `reason`.
        let old = include_str!("../../../tests/fixtures/datadir-v1/node/jobs.json");
        let saved: Saved = serde_json::from_str(old).unwrap();
        let (spec, st) = &saved.jobs[&1];
        assert_eq!(spec.uuid.to_hex(), "8472ed5203e64076a76467bbb64c13e1");
        assert_eq!(st.state, JobState::Done);
        // And it is written back the same way.
        let again = serde_json::to_value(&saved).unwrap();
        assert_eq!(
            again["jobs"]["1"][0]["uuid"],
            "8472ed5203e64076a76467bbb64c13e1"
        );
        assert_eq!(again["jobs"]["1"][1]["state"], "done");
    }

    #[test]
    fn follow_counts_only_recent_failures() {
        let now = 1_000_000;
        let window = heads::FOLLOW_FAILURE_WINDOW_MS / 1_000;
        let jobs = [
            job(JobState::Failed, Some(now - 5)),
            job(JobState::Failed, Some(now - window + 1)),
            job(JobState::Failed, Some(now - window)), // aged out
            job(JobState::Failed, None),               // from a job file written before `ended`
            job(JobState::Done, Some(now)),
            job(JobState::Running, None),
        ];
        assert_eq!(recent_failures(jobs.iter(), now), 2);
        // Later, every failure has aged out and following retries the version.
        assert_eq!(recent_failures(jobs.iter(), now + window), 0);
    }
}
