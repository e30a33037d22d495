//! `dvid-protocol`: the peer-to-peer side of dvid, kept apart from I/O.
//!
//! - [`wire`]: the messages peers exchange, their framing and size bounds;
//! - [`pull`]: the sans-IO engine that replicates a version by fetching only the objects a node lacks;
//! - [`serve`]: answering peers from the local store, checked against the sharing policy.
//!
//! The libp2p transport that carries these messages between real processes is not here yet (see the
//! README's "Not yet here").

pub mod pull;
pub mod serve;
pub mod wire;
