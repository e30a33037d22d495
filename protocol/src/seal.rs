//! Seals: the node that locks a version signs (repo, version, parents, commit hash) with its
//! ed25519 key; heads and manifests carry the seal, and receivers drop what fails to verify.

use crate::wire::Head;
use dvid_store::catalog::Uuid;
use dvid_store::manifest::seal_message;
use dvid_store::{Seal, Sealer, VersionManifest};
use libp2p_identity::{Keypair, PeerId, PublicKey};
use thiserror::Error;

/// Why a seal was refused.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum SealError {
    #[error("version {0} carries no seal")]
    Missing(Uuid),
    #[error("version {version}: the seal's signer key does not decode: {why}")]
    BadKey { version: Uuid, why: String },
    #[error("version {version}: the seal of {signer} does not match what it claims to sign")]
    BadSignature { version: Uuid, signer: PeerId },
}

/// Seals with the node's identity key.
pub struct KeySealer(Keypair);

impl KeySealer {
    pub fn new(key: Keypair) -> Self {
        Self(key)
    }
}

impl Sealer for KeySealer {
    fn seal(&self, message: &[u8]) -> Seal {
        Seal {
            signer: self.0.public().encode_protobuf(),
            // ed25519 signing cannot fail; other key types are never used for node identities.
            signature: self.0.sign(message).expect("ed25519 signing"),
        }
    }
}

/// Checks that `seal` signs `message` for `version`; returns the PeerId of the node that locked it.
pub fn verify(version: Uuid, seal: &Seal, message: &[u8]) -> Result<PeerId, SealError> {
    let key = PublicKey::try_decode_protobuf(&seal.signer).map_err(|e| SealError::BadKey {
        version,
        why: e.to_string(),
    })?;
    let signer = key.to_peer_id();
    if !key.verify(message, &seal.signature) {
        return Err(SealError::BadSignature { version, signer });
    }
    Ok(signer)
}

/// Checks a head announcement; returns the PeerId of the node that locked the version.
pub fn verify_head(h: &Head) -> Result<PeerId, SealError> {
    let message = seal_message(h.repo, h.version, &h.parents, h.commit_hash);
    verify(h.version, &h.seal, &message)
}

/// Checks the seal of every version of a manifest (whose commit hashes the manifest's own decoder
/// already checked); returns the PeerId that locked the target.
pub fn verify_manifest(m: &VersionManifest) -> Result<PeerId, SealError> {
    let mut target = None;
    for v in &m.versions {
        let seal = v.seal.as_ref().ok_or(SealError::Missing(v.uuid))?;
        let signer = verify(v.uuid, seal, &m.seal_message_of(v))?;
        if v.uuid == m.target {
            target = Some(signer);
        }
    }
    target.ok_or(SealError::Missing(m.target))
}

#[cfg(test)]
mod tests {
    use super::*;
    use dvid_store::ObjectId;

    fn head(key: &Keypair) -> Head {
        let (repo, version, parents, hash) = (Uuid(1), Uuid(2), vec![Uuid(1)], ObjectId([9; 32]));
        let seal = KeySealer::new(key.clone()).seal(&seal_message(repo, version, &parents, hash));
        Head {
            repo,
            version,
            parents,
            commit_hash: hash,
            seal,
            holds: None,
        }
    }

    #[test]
    fn seal_verifies_and_names_the_locker() {
        let key = Keypair::generate_ed25519();
        let h = head(&key);
        assert_eq!(verify_head(&h), Ok(key.public().to_peer_id()));
    }

    #[test]
    fn seal_refuses_altered_or_forged_heads() {
        let key = Keypair::generate_ed25519();
        let good = head(&key);
        let mut altered = good.clone();
        altered.commit_hash = ObjectId([8; 32]);
        assert!(matches!(
            verify_head(&altered),
            Err(SealError::BadSignature { .. })
        ));
        let mut reparented = good.clone();
        reparented.parents.clear();
        assert!(verify_head(&reparented).is_err());
        let mut moved = good.clone();
        moved.repo = Uuid(5);
        assert!(verify_head(&moved).is_err());
        // Someone else's key over the same content: valid, but it names the forger, not the locker.
        let other = Keypair::generate_ed25519();
        let mut resealed = good.clone();
        resealed.seal = head(&other).seal;
        assert_eq!(verify_head(&resealed), Ok(other.public().to_peer_id()));
        // Garbage keys and signatures are refused, not panicked on.
        let mut junk = good;
        junk.seal.signer = vec![1, 2, 3];
        assert!(matches!(verify_head(&junk), Err(SealError::BadKey { .. })));
        junk.seal = Seal {
            signer: key.public().encode_protobuf(),
            signature: vec![0; 3],
        };
        assert!(verify_head(&junk).is_err());
    }
}
