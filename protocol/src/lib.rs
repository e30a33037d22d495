//! `dvid-protocol`: the peer-to-peer side of dvid. Empty for now: the wire messages, the sans-IO sync
//! engine and the libp2p glue arrive with the peer-to-peer sync work (see DESIGN.md, "Sync"). The crate
//! exists so the workspace has its final shape and `node` can depend on it from the start.
