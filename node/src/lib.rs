//! `dvid-node`: the daemon that serves a [`dvid_store::Store`] over DVID's HTTP API, and the
//! command-line client that talks to a running node, with its importers and exporters.

pub mod cli;
pub mod client;
pub mod http;
pub mod p2p;
pub mod server;
pub mod transfer;
