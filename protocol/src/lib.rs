//! `dvid-protocol`: the peer-to-peer side of dvid, kept apart from I/O.
//!
//! - [`wire`]: the messages peers exchange, their framing and size bounds;
//! - [`pull`]: the sans-IO engine that replicates a version by fetching only the objects a node lacks;
//! - [`serve`]: answering peers from the local store, checked against the sharing policy;
//! - [`heads`]: the heads book and the peer policy over it (offers, conflicts, follow windows,
//!   manifest acceptance), shared by the node and the simulator;
//! - [`strikes`]: offences, strikes and bans, counted the same way by the node and the simulator;
//! - [`seal`]: signing locked versions with the node's key and checking the seals peers send.
//!
//! The libp2p transport that carries these messages between processes lives in the node.

pub mod heads;
pub mod pull;
pub mod seal;
pub mod serve;
pub mod strikes;
pub mod wire;
