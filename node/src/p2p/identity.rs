//! The node's identity: an ed25519 key kept in the data dir. Its PeerId is the node's name.

use anyhow::Context;
use libp2p::identity::Keypair;
use std::path::Path;

const KEY_FILE: &str = "node.key";

/// Loads the key from `data_dir`, creating it on first use.
pub fn load_or_create(data_dir: &Path) -> anyhow::Result<Keypair> {
    let path = data_dir.join(KEY_FILE);
    if path.exists() {
        let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        return Keypair::from_protobuf_encoding(&bytes)
            .with_context(|| format!("{} is not a node key", path.display()));
    }
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    let key = Keypair::generate_ed25519();
    let bytes = key
        .to_protobuf_encoding()
        .context("encoding the node key")?;
    // Write then rename, so a crash never leaves half a key.
    let tmp = data_dir.join(format!("{KEY_FILE}.tmp"));
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))?;
    std::fs::rename(&tmp, &path)?;
    Ok(key)
}
