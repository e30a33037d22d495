//! Wire messages between peers, and their framing. This module owns the format.
//!
//! A frame is `[u32 LE length][postcard body]`. Postcard writes the variant index of an enum on the
//! wire, so variants are only ever appended, never reordered or removed. Every decoder takes untrusted
//! bytes and checks sizes before allocating.

use dvid_store::catalog::Uuid;
use dvid_store::types::labelmap::Grant;
use dvid_store::{ObjectId, Restriction, Seal};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Protocol name for the request/response exchange.
/// Version 2: heads say what the offering node holds (`Head::holds`), manifests record the
/// instances each version holds, and an object not at its claimed path is missing, not refused.
/// Version 3: manifests name each instance's type (not an enum index), and only voxel types carry
/// block geometry.
pub const PROTOCOL: &str = "/dvid/sync/3";
/// Largest frame accepted: a batch of objects at most.
pub const MAX_FRAME_BYTES: usize = 64 << 20;
/// Most objects asked for in one request.
pub const MAX_WANTS_PER_REQUEST: usize = 64;
/// Longest tree path or key carried in a want.
pub const MAX_PATH_BYTES: usize = 64;
/// Most heads in one answer.
pub const MAX_HEADS: usize = 10_000;
/// Most parents of one head (merges of many branches).
pub const MAX_PARENTS: usize = 64;
/// Largest seal signer key or signature (ed25519 keys and signatures are far smaller).
pub const MAX_SEAL_PART_BYTES: usize = 256;
/// Most parts of a partial replica named in one head, and instances named in one part.
pub const MAX_HELD_PARTS: usize = 64;
pub const MAX_HELD_INSTANCES: usize = 256;

/// Why bytes from a peer were refused.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum WireError {
    #[error("frame of {0} bytes exceeds the {MAX_FRAME_BYTES}-byte limit")]
    TooLarge(usize),
    #[error("frame shorter than its length prefix")]
    Truncated,
    #[error("undecodable message: {0}")]
    Malformed(String),
    #[error("message breaks a bound: {0}")]
    OutOfBounds(String),
}

/// Where an object sits in a version, so the serving peer can check that it is reachable from a
/// version the asker may read before sending it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum WantPath {
    /// The root node of an instance's tree.
    Root { data: Uuid },
    /// The inner-tree node whose keys share the first `depth` bits of `prefix`.
    Node {
        data: Uuid,
        prefix: Vec<u8>,
        depth: u16,
    },
    /// The object an entry with this key points to.
    Entry { data: Uuid, key: Vec<u8> },
}

/// One object asked for, with its path.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Want {
    pub id: ObjectId,
    pub path: WantPath,
}

/// A request from one peer to another.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Request {
    /// The locked versions the asker may fetch.
    Heads,
    /// The manifest of one version.
    Manifest { version: Uuid },
    /// Objects of `version`, at most [`MAX_WANTS_PER_REQUEST`].
    Objects { version: Uuid, wants: Vec<Want> },
    /// The heads, unless their [`heads_digest`] is still `digest` (the asker's last answer): then
    /// [`Response::HeadsUnchanged`]. Peers poll heads every few seconds; most answers are this.
    HeadsIfChanged { digest: ObjectId },
    /// Asks the peer to pull `version` from the asker (and whoever else offers it). The peer's own
    /// rules decide: answered with [`Response::PushState`].
    Push { version: Uuid },
    /// Where the peer's pull of a pushed `version` is: answered with [`Response::PushState`].
    PushStatus { version: Uuid },
    /// Asks for part of the peer's new labels and mutation ids of the labelmap with data UUID
    /// `data` in `version`'s repo, so the asker can edit it without ever taking an id another
    /// node takes: answered with [`Response::LabelGrant`] (the same grant each time).
    GrantLabels { version: Uuid, data: Uuid },
}

/// A locked version a node offers, sealed by the node that locked it (see [`crate::seal`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Head {
    pub repo: Uuid,
    pub version: Uuid,
    pub parents: Vec<Uuid>,
    pub commit_hash: ObjectId,
    pub seal: Seal,
    /// What the offering node holds of the version: `None` all of it, else the parts of a partial
    /// replica (a laptop's region). Not sealed: it is the offerer's own claim, and every object
    /// is checked against its hash anyway.
    pub holds: Option<Vec<Restriction>>,
}

/// One object of a reply, in the order asked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ObjectReply {
    // serde_bytes: the same bytes on the wire as a plain `Vec<u8>`, copied whole instead of one
    // element at a time (which cost more CPU than encryption in a pull).
    Found(#[serde(with = "serde_bytes")] Vec<u8>),
    /// The peer does not hold it (a partial replica, or still pulling it).
    Missing,
}

/// The answer to a [`Request`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Response {
    Heads(Vec<Head>),
    /// An encoded `dvid_store::VersionManifest` (decoded with its own bound and hash checks).
    Manifest(#[serde(with = "serde_bytes")] Vec<u8>),
    Objects(Vec<ObjectReply>),
    /// The request was refused; the reason says why (not shared, unknown version, bad path...).
    Refused(String),
    /// The heads are those the asker last received.
    HeadsUnchanged,
    /// The answer to a push: `state` is `waiting`, `running`, `done`, `failed`, `cancelled` or
    /// `refused`, and `detail` says why (the refusal, the failure, what the pull waits for).
    PushState {
        state: String,
        detail: String,
    },
    /// Labels and mutation ids the asker may hand out: the peer gave them up.
    LabelGrant(Grant),
}

/// Identifies a list of heads, as encoded on the wire: askers send the digest of the last list a
/// peer gave them, so an unchanged list need not travel again.
pub fn heads_digest(heads: &[Head]) -> ObjectId {
    ObjectId::of(&postcard::to_stdvec(heads).expect("heads serialize"))
}

/// Frames a message.
pub fn encode<T: Serialize>(msg: &T) -> Vec<u8> {
    // Sized first, so a frame of large objects is written once into one allocation.
    let len = postcard::experimental::serialized_size(msg).expect("wire messages serialize");
    let mut out = Vec::with_capacity(4 + len);
    out.extend_from_slice(&(len as u32).to_le_bytes());
    postcard::to_io(msg, &mut out).expect("writing into a Vec cannot fail");
    out
}

/// Reads the length prefix of a frame, refusing lengths over the bound before any allocation.
pub fn frame_len(prefix: [u8; 4]) -> Result<usize, WireError> {
    let len = u32::from_le_bytes(prefix) as usize;
    if len > MAX_FRAME_BYTES {
        return Err(WireError::TooLarge(len));
    }
    Ok(len)
}

/// Decodes one whole frame of untrusted bytes.
pub fn decode<T: for<'de> Deserialize<'de> + Bounded>(frame: &[u8]) -> Result<T, WireError> {
    let Some((prefix, body)) = frame.split_first_chunk::<4>() else {
        return Err(WireError::Truncated);
    };
    let len = frame_len(*prefix)?;
    if body.len() != len {
        return Err(WireError::Truncated);
    }
    decode_body(body)
}

/// Decodes a frame body (after its length prefix).
pub fn decode_body<T: for<'de> Deserialize<'de> + Bounded>(body: &[u8]) -> Result<T, WireError> {
    if body.len() > MAX_FRAME_BYTES {
        return Err(WireError::TooLarge(body.len()));
    }
    let msg: T = postcard::from_bytes(body).map_err(|e| WireError::Malformed(e.to_string()))?;
    msg.check_bounds()?;
    Ok(msg)
}

/// Limits a decoded message must respect beyond what its type says.
pub trait Bounded {
    fn check_bounds(&self) -> Result<(), WireError>;
}

impl Bounded for Request {
    fn check_bounds(&self) -> Result<(), WireError> {
        if let Request::Objects { wants, .. } = self {
            if wants.len() > MAX_WANTS_PER_REQUEST {
                return Err(WireError::OutOfBounds(format!(
                    "{} wants in one request; the limit is {MAX_WANTS_PER_REQUEST}",
                    wants.len()
                )));
            }
            for w in wants {
                let len = match &w.path {
                    WantPath::Root { .. } => 0,
                    WantPath::Node { prefix, .. } => prefix.len(),
                    WantPath::Entry { key, .. } => key.len(),
                };
                if len > MAX_PATH_BYTES {
                    return Err(WireError::OutOfBounds(format!("path of {len} bytes")));
                }
            }
        }
        Ok(())
    }
}

impl Bounded for Response {
    fn check_bounds(&self) -> Result<(), WireError> {
        match self {
            Response::Objects(replies) if replies.len() > MAX_WANTS_PER_REQUEST => Err(
                WireError::OutOfBounds(format!("{} object replies", replies.len())),
            ),
            Response::Heads(heads) if heads.len() > MAX_HEADS => Err(WireError::OutOfBounds(
                format!("{} heads; the limit is {MAX_HEADS}", heads.len()),
            )),
            Response::Heads(heads) => heads.iter().try_for_each(|h| {
                let parts = h.holds.as_deref().unwrap_or_default();
                let big = h.parents.len() > MAX_PARENTS
                    || h.seal.signer.len() > MAX_SEAL_PART_BYTES
                    || h.seal.signature.len() > MAX_SEAL_PART_BYTES
                    || parts.len() > MAX_HELD_PARTS
                    || parts.iter().any(|p| {
                        p.instances
                            .as_ref()
                            .is_some_and(|l| l.len() > MAX_HELD_INSTANCES)
                    });
                match big {
                    true => Err(WireError::OutOfBounds(format!(
                        "head of {} with an oversized parent list, seal or list of parts held",
                        h.version
                    ))),
                    false => Ok(()),
                }
            }),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn wire_golden_bytes() {
        // Heads is variant 0 with no body: a 1-byte frame.
        assert_eq!(encode(&Request::Heads), vec![1, 0, 0, 0, 0]);
        let req = Request::Objects {
            version: Uuid(1),
            wants: vec![Want {
                id: ObjectId([7; 32]),
                path: WantPath::Entry {
                    data: Uuid(2),
                    key: vec![0xab],
                },
            }],
        };
        let f = encode(&req);
        // variant 2, then the version UUID as a u128 varint (1), then one want.
        assert_eq!(&f[4..7], &[2, 1, 1]);
        // the want: 32 hash bytes, then path variant 2 (Entry), data UUID 2, key of 1 byte.
        assert_eq!(&f[7..39], &[7; 32]);
        assert_eq!(&f[39..], &[2, 2, 1, 0xab]);
        assert_eq!(decode::<Request>(&f).unwrap(), req);
        let resp = Response::Objects(vec![ObjectReply::Found(vec![9, 9]), ObjectReply::Missing]);
        assert_eq!(encode(&resp), vec![7, 0, 0, 0, 2, 2, 0, 2, 9, 9, 1]);
    }

    #[test]
    fn wire_refuses_oversized_and_truncated() {
        assert_eq!(
            frame_len(u32::MAX.to_le_bytes()),
            Err(WireError::TooLarge(u32::MAX as usize))
        );
        assert_eq!(
            decode::<Request>(&[5, 0, 0, 0, 0]),
            Err(WireError::Truncated)
        );
        let wants = (0..=MAX_WANTS_PER_REQUEST)
            .map(|i| Want {
                id: ObjectId([i as u8; 32]),
                path: WantPath::Root { data: Uuid(0) },
            })
            .collect();
        let f = encode(&Request::Objects {
            version: Uuid(0),
            wants,
        });
        assert!(matches!(
            decode::<Request>(&f),
            Err(WireError::OutOfBounds(_))
        ));
    }

    proptest! {
        #[test]
        fn wire_decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode::<Request>(&bytes);
            let _ = decode::<Response>(&bytes);
            let _ = decode_body::<Request>(&bytes);
            let _ = decode_body::<Response>(&bytes);
        }
    }
}
