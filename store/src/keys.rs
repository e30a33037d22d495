//! Key layout of the ordered store, the one owner of how records are named. Integers are big-endian
//! so ranges sort numerically.
//!
//! Meta space:
//! - `c/format` -> the catalog format, one byte (see `records`)
//! - `c/next_id` -> u32 counter shared by repos, versions and instances
//! - `r/{repo id}` -> `[format]` + postcard `Repo`
//! - `v/{version id}` -> `[format]` + postcard `Version`
//! - `a/{instance id}` -> postcard `Allotment`: the label and mutation ids this node may hand out
//!   for a labelmap, and the grants it made from them (this node's, not versioned)
//! - `l/{instance id}` -> postcard label counters of a labelmap, before allotments (read once to
//!   make an allotment)
//! - `i/{instance id}{version id}{session length: u8}{session}{block key}` -> postcard
//!   `StagedBlock`: a block an import stored but the version does not show yet
//!
//! Working space (uncommitted writes of mutable versions):
//! - `{instance id}{version id}{index key}` -> postcard `WorkingEntry`

pub const FORMAT: &[u8] = b"c/format";
pub const NEXT_ID: &[u8] = b"c/next_id";
pub const REPO_PREFIX: &[u8] = b"r/";
pub const VERSION_PREFIX: &[u8] = b"v/";

pub const LABEL_COUNTERS_PREFIX: &[u8] = b"l/";
pub const ALLOTMENT_PREFIX: &[u8] = b"a/";
pub const STAGED_PREFIX: &[u8] = b"i/";

/// Start of the staged blocks of one import session of an (instance, version).
pub fn staged_prefix(instance: u32, version: u32, session: &str) -> Vec<u8> {
    let len = u8::try_from(session.len()).expect("session names are short");
    [
        STAGED_PREFIX,
        &instance.to_be_bytes(),
        &version.to_be_bytes(),
        &[len],
        session.as_bytes(),
    ]
    .concat()
}

pub fn staged(instance: u32, version: u32, session: &str, block: &[u8]) -> Vec<u8> {
    [&staged_prefix(instance, version, session)[..], block].concat()
}

pub fn allotment(instance: u32) -> Vec<u8> {
    [ALLOTMENT_PREFIX, &instance.to_be_bytes()].concat()
}

pub fn label_counters(instance: u32) -> Vec<u8> {
    [LABEL_COUNTERS_PREFIX, &instance.to_be_bytes()].concat()
}

pub fn repo(id: u32) -> Vec<u8> {
    [REPO_PREFIX, &id.to_be_bytes()].concat()
}

pub fn version(id: u32) -> Vec<u8> {
    [VERSION_PREFIX, &id.to_be_bytes()].concat()
}

/// Start of the working set of one (instance, version).
pub fn working_prefix(instance: u32, version: u32) -> Vec<u8> {
    [instance.to_be_bytes(), version.to_be_bytes()].concat()
}

pub fn working(instance: u32, version: u32, index: &[u8]) -> Vec<u8> {
    [&working_prefix(instance, version)[..], index].concat()
}

/// The (instance id, version id) a working key belongs to.
pub fn parse_working(key: &[u8]) -> Option<(u32, u32)> {
    let inst = u32::from_be_bytes(key.get(..4)?.try_into().ok()?);
    let version = u32::from_be_bytes(key.get(4..8)?.try_into().ok()?);
    Some((inst, version))
}

/// Exclusive upper bound of all keys starting with `prefix`, or `None` if there is none.
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_golden_layout() {
        assert_eq!(repo(1), b"r/\0\0\0\x01");
        assert_eq!(working(1, 2, b"k"), b"\0\0\0\x01\0\0\0\x02k");
        assert_eq!(parse_working(&working(1, 2, b"k")), Some((1, 2)));
        assert_eq!(parse_working(b"short"), None);
        assert_eq!(prefix_end(b"a\xff"), Some(b"b".to_vec()));
        assert_eq!(prefix_end(b"\xff"), None);
        assert!(version(255) < version(256));
    }
}
