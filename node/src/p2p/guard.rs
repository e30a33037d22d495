//! Per-peer limits and misbehaviour accounting. Each peer gets a bounded number of requests in
//! flight and a request rate; offences (oversized or undecodable frames, floods, forged heads,
//! objects that fail their hash) add strikes, and a peer with too many strikes is banned for a
//! while: disconnected and refused on reconnection. Everyone else keeps being served.

use libp2p::PeerId;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub use dvid_protocol::strikes::Offence;
use dvid_protocol::strikes::{Record, Rules};

/// Limits applied to every peer.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Requests of one peer being served at once.
    pub in_flight_per_peer: usize,
    /// Sustained requests per second of one peer; bursts may reach twice this.
    pub requests_per_sec: f64,
    /// Strikes that get a peer banned.
    pub ban_at: f64,
    /// Strikes forgiven per second of good behaviour.
    pub forgive_per_sec: f64,
    /// How long a ban lasts.
    pub ban_for: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        let rules = Rules::default();
        Self {
            in_flight_per_peer: 16,
            requests_per_sec: 200.0,
            ban_at: rules.ban_at,
            forgive_per_sec: rules.forgive_per_sec,
            ban_for: Duration::from_micros(rules.ban_for_us),
        }
    }
}

impl Limits {
    fn rules(&self) -> Rules {
        Rules {
            ban_at: self.ban_at,
            forgive_per_sec: self.forgive_per_sec,
            ban_for_us: self.ban_for.as_micros() as u64,
        }
    }
}

/// What the node knows of one peer's conduct, as `/api/p2p/peers` shows it.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Conduct {
    pub requests_served: u64,
    pub requests_refused: u64,
    pub bytes_sent: u64,
    pub heads_rejected: u64,
    pub strikes: f64,
    /// Why the peer is banned, while it is.
    pub banned: Option<String>,
}

struct PeerState {
    conduct: Conduct,
    in_flight: usize,
    /// Request tokens and when they were last topped up.
    tokens: f64,
    topped: Instant,
    /// Strikes and ban, by the protocol's rules.
    record: Record,
}

impl PeerState {
    fn new(limits: &Limits, now: Instant, now_us: u64) -> Self {
        Self {
            conduct: Conduct::default(),
            in_flight: 0,
            tokens: limits.requests_per_sec * 2.0,
            topped: now,
            record: Record::new(now_us),
        }
    }
}

/// Why a request is not served.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    Banned,
    Limited(&'static str),
}

/// Shared by the serving side, the heads refresher and pulls.
pub struct Guard {
    limits: Limits,
    rules: Rules,
    /// The strike records' clock starts here.
    epoch: Instant,
    peers: Mutex<HashMap<PeerId, PeerState>>,
}

/// A request being served; dropping it frees the peer's slot.
pub struct Slot<'a> {
    guard: &'a Guard,
    peer: PeerId,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        if let Some(p) = self.guard.lock().get_mut(&self.peer) {
            p.in_flight = p.in_flight.saturating_sub(1);
        }
    }
}

impl Guard {
    pub fn new(limits: Limits) -> Self {
        Self {
            rules: limits.rules(),
            limits,
            epoch: Instant::now(),
            peers: Mutex::new(HashMap::new()),
        }
    }

    /// Microseconds since the guard began: the strike records' clock.
    fn us(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.epoch).as_micros() as u64
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<PeerId, PeerState>> {
        self.peers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Admits one request of `peer`, or says why not (and counts the offence). Returns the ban
    /// reason too when this request tipped the peer over.
    pub fn admit(&self, peer: PeerId, now: Instant) -> Result<Slot<'_>, (Refusal, Option<String>)> {
        let (limits, now_us) = (&self.limits, self.us(now));
        let mut peers = self.lock();
        let p = peers
            .entry(peer)
            .or_insert_with(|| PeerState::new(limits, now, now_us));
        if p.record.is_banned(now_us) {
            p.conduct.requests_refused += 1;
            return Err((Refusal::Banned, None));
        }
        let elapsed = now.saturating_duration_since(p.topped).as_secs_f64();
        p.tokens =
            (p.tokens + elapsed * limits.requests_per_sec).min(limits.requests_per_sec * 2.0);
        p.topped = now;
        let offence = if p.in_flight >= limits.in_flight_per_peer {
            Some(Offence::TooManyStreams)
        } else if p.tokens < 1.0 {
            Some(Offence::Flood)
        } else {
            None
        };
        if let Some(o) = offence {
            p.conduct.requests_refused += 1;
            let banned = p.record.offend(&self.rules, o, now_us).map(ban_reason);
            return Err((Refusal::Limited(o.describe()), banned));
        }
        p.tokens -= 1.0;
        p.in_flight += 1;
        p.conduct.requests_served += 1;
        drop(peers);
        Ok(Slot { guard: self, peer })
    }

    /// Counts an offence; returns the ban reason if the peer is now banned.
    pub fn offence(&self, peer: PeerId, o: Offence, now: Instant) -> Option<String> {
        let (limits, now_us) = (&self.limits, self.us(now));
        let mut peers = self.lock();
        let p = peers
            .entry(peer)
            .or_insert_with(|| PeerState::new(limits, now, now_us));
        if matches!(o, Offence::ForgedHead) {
            p.conduct.heads_rejected += 1;
        }
        p.record.offend(&self.rules, o, now_us).map(ban_reason)
    }

    /// Counts a request that was admitted but refused by the sharing policy (not shared, unknown
    /// version, a mutable version).
    pub fn refused(&self, peer: PeerId) {
        if let Some(p) = self.lock().get_mut(&peer) {
            p.conduct.requests_served = p.conduct.requests_served.saturating_sub(1);
            p.conduct.requests_refused += 1;
        }
    }

    /// Counts bytes sent to a peer.
    pub fn sent(&self, peer: PeerId, bytes: usize) {
        if let Some(p) = self.lock().get_mut(&peer) {
            p.conduct.bytes_sent += bytes as u64;
        }
    }

    pub fn is_banned(&self, peer: &PeerId, now: Instant) -> bool {
        let now_us = self.us(now);
        self.lock()
            .get(peer)
            .is_some_and(|p| p.record.is_banned(now_us))
    }

    /// Lifts bans that have run out; returns the peers whose ban ended.
    pub fn expire(&self, now: Instant) -> Vec<PeerId> {
        let now_us = self.us(now);
        let mut ended = Vec::new();
        for (peer, p) in self.lock().iter_mut() {
            if p.record.expire(now_us) {
                ended.push(*peer);
            }
        }
        ended
    }

    /// Forgets peers that are gone and hold no ban or strikes, so the table stays bounded.
    pub fn prune(&self, connected: &[PeerId]) {
        self.lock().retain(|peer, p| {
            connected.contains(peer) || p.record.banned.is_some() || p.record.strikes > 0.0
        });
    }

    /// Every peer's conduct.
    pub fn conduct(&self) -> Vec<(PeerId, Conduct)> {
        let mut out: Vec<_> = self
            .lock()
            .iter()
            .map(|(k, v)| {
                let mut c = v.conduct.clone();
                c.strikes = v.record.strikes;
                c.banned = v.record.banned.map(|(_, why)| ban_reason(why));
                (*k, c)
            })
            .collect();
        out.sort_by_key(|(k, _)| *k);
        out
    }
}

fn ban_reason(why: &str) -> String {
    format!("banned for {why}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            in_flight_per_peer: 2,
            requests_per_sec: 10.0,
            ban_at: 5.0,
            forgive_per_sec: 0.0,
            ban_for: Duration::from_secs(60),
        }
    }

    #[test]
    fn guard_limits_streams_and_rate_then_bans() {
        let g = Guard::new(limits());
        let (a, b) = (PeerId::random(), PeerId::random());
        let t = Instant::now();
        let s1 = g.admit(a, t).unwrap();
        let _s2 = g.admit(a, t).unwrap();
        assert_eq!(
            g.admit(a, t).err().map(|e| e.0),
            Some(Refusal::Limited("too many requests in flight"))
        );
        drop(s1);
        assert!(g.admit(a, t).is_ok());
        // Twenty tokens of burst, then refusals add strikes until the ban.
        let mut banned = None;
        for _ in 0..40 {
            if let Err((_, Some(reason))) = g.admit(a, t) {
                banned = Some(reason);
                break;
            }
        }
        assert!(banned.is_some());
        assert!(g.is_banned(&a, t));
        assert_eq!(g.admit(a, t).err().map(|e| e.0), Some(Refusal::Banned));
        // Another peer is unaffected.
        assert!(g.admit(b, t).is_ok());
        // The ban runs out.
        let later = t + Duration::from_secs(61);
        assert_eq!(g.expire(later), vec![a]);
        assert!(g.admit(a, later).is_ok());
    }

    #[test]
    fn guard_bans_a_liar_at_once() {
        let g = Guard::new(limits());
        let a = PeerId::random();
        let now = Instant::now();
        assert!(g.offence(a, Offence::BadObject, now).is_some());
        assert!(g.is_banned(&a, now));
    }
}
