//! The simulated network: hosts with latency, up/down bandwidth and loss, partitions, and the event
//! queue, ordered by (time, sequence) so that equal times resolve in one repeatable order.

use std::collections::BTreeMap;

/// A node's index in the simulation.
pub type NodeId = u32;
/// Simulated time, in microseconds.
pub type Micros = u64;

/// Events waiting for their time. The sequence number breaks ties in insertion order.
pub struct Queue<E> {
    events: BTreeMap<(Micros, u64), E>,
    seq: u64,
}

impl<E> Default for Queue<E> {
    fn default() -> Self {
        Self {
            events: BTreeMap::new(),
            seq: 0,
        }
    }
}

impl<E> Queue<E> {
    pub fn push(&mut self, at: Micros, event: E) {
        self.seq += 1;
        self.events.insert((at, self.seq), event);
    }

    pub fn pop(&mut self) -> Option<(Micros, E)> {
        self.events.pop_first().map(|((t, _), e)| (t, e))
    }

    pub fn len(&self) -> usize {
        self.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }
}

/// Where a node sits and what its access link carries.
#[derive(Clone, Debug)]
pub struct Host {
    /// Nodes of one site (a lab's machine room) reach each other in a fraction of a millisecond.
    pub site: u32,
    /// Position in the unit square: distance between sites sets their latency.
    pub pos: (f64, f64),
    pub up_bytes_per_s: u64,
    pub down_bytes_per_s: u64,
}

/// Latency inside a site.
const SITE_LATENCY_US: Micros = 300;
/// Latency between sites: a floor plus a share proportional to distance (5 to 100 ms one way).
const WAN_FLOOR_US: f64 = 5_000.0;
const WAN_SPAN_US: f64 = 95_000.0;

/// Links, their queues and the current partition.
pub struct Net {
    hosts: Vec<Host>,
    /// When each node's uplink, and downlink, is next free: messages queue behind each other.
    up_free: Vec<Micros>,
    down_free: Vec<Micros>,
    /// Probability that a message is lost.
    pub loss: f64,
    /// Partition group of each node, if the network is split.
    groups: Option<Vec<u8>>,
}

impl Net {
    pub fn new(hosts: Vec<Host>, loss: f64) -> Self {
        let n = hosts.len();
        Self {
            hosts,
            up_free: vec![0; n],
            down_free: vec![0; n],
            loss,
            groups: None,
        }
    }

    pub fn host(&self, n: NodeId) -> &Host {
        &self.hosts[n as usize]
    }

    /// One-way latency between two nodes.
    pub fn latency(&self, a: NodeId, b: NodeId) -> Micros {
        let (ha, hb) = (self.host(a), self.host(b));
        if ha.site == hb.site {
            return SITE_LATENCY_US;
        }
        let (dx, dy) = (ha.pos.0 - hb.pos.0, ha.pos.1 - hb.pos.1);
        let dist = (dx * dx + dy * dy).sqrt() / std::f64::consts::SQRT_2;
        (WAN_FLOOR_US + WAN_SPAN_US * dist) as Micros
    }

    /// Splits the network: nodes in different groups cannot reach each other.
    pub fn split(&mut self, groups: Vec<u8>) {
        self.groups = Some(groups);
    }

    pub fn heal(&mut self) {
        self.groups = None;
    }

    pub fn partitioned(&self, a: NodeId, b: NodeId) -> bool {
        self.groups
            .as_ref()
            .is_some_and(|g| g[a as usize] != g[b as usize])
    }

    /// Sends `bytes` from `from` to `to` at `now`: the message waits for the sender's uplink, crosses
    /// the latency, then waits for the receiver's downlink. Returns when it has fully arrived.
    /// (The downlink is reserved at send time, in send order: a simplification that keeps one pass.)
    pub fn transmit(&mut self, now: Micros, from: NodeId, to: NodeId, bytes: u64) -> Micros {
        let (f, t) = (from as usize, to as usize);
        let up = transfer_us(bytes, self.hosts[f].up_bytes_per_s);
        let sent = self.up_free[f].max(now) + up;
        self.up_free[f] = sent;
        let arrives = sent + self.latency(from, to);
        // The downlink takes messages one after another: this one ends no sooner than the last
        // one plus its own transfer time.
        let down = transfer_us(bytes, self.hosts[t].down_bytes_per_s);
        let done = arrives.max(self.down_free[t] + down);
        self.down_free[t] = done;
        done
    }
}

fn transfer_us(bytes: u64, bytes_per_s: u64) -> Micros {
    (bytes * 1_000_000).div_ceil(bytes_per_s.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(site: u32, x: f64) -> Host {
        Host {
            site,
            pos: (x, 0.0),
            up_bytes_per_s: 1_000_000,
            down_bytes_per_s: 1_000_000,
        }
    }

    #[test]
    fn net_queues_messages_behind_each_other() {
        let mut net = Net::new(vec![host(0, 0.0), host(1, 1.0), host(2, 1.0)], 0.0);
        let lat = net.latency(0, 1);
        assert!(lat > WAN_FLOOR_US as Micros && lat < 100_000, "{lat}");
        // 1 MB/s: 1,000 bytes take 1 ms on the uplink; the second message waits for the first.
        let a = net.transmit(0, 0, 1, 1_000);
        let b = net.transmit(0, 0, 2, 1_000);
        assert_eq!(a, 1_000 + lat);
        assert_eq!(b, 2_000 + net.latency(0, 2));
        net.split(vec![0, 0, 1]);
        assert!(net.partitioned(0, 2) && !net.partitioned(0, 1));
        net.heal();
        assert!(!net.partitioned(0, 2));
    }

    #[test]
    fn queue_orders_by_time_then_insertion() {
        let mut q = Queue::default();
        q.push(5, "b");
        q.push(3, "a");
        q.push(5, "c");
        let order: Vec<_> = std::iter::from_fn(|| q.pop()).map(|(_, e)| e).collect();
        assert_eq!(order, vec!["a", "b", "c"]);
    }
}
