//! Sizes on the simulated wire: the real `wire::encode` frames, counted with every UUID at its full
//! 19-byte varint width, since store UUIDs are random and their real width varies between runs.

use dvid_protocol::wire::{Request, Response, WantPath};
use dvid_store::VersionManifest;
use dvid_store::catalog::Uuid;

/// Varint bytes of the widest UUID: ceil(128 / 7). A random UUID takes 19 three times in four, so
/// counting 19 always keeps timings a function of the seed at most a byte per UUID above the truth.
const UUID_MAX_LEN: usize = 19;

/// Counted bytes of a framed request.
pub fn request_len(req: &Request, frame_len: usize) -> u64 {
    let slack = match req {
        Request::Heads | Request::HeadsIfChanged { .. } => 0,
        Request::Manifest { version }
        | Request::Push { version }
        | Request::PushStatus { version } => slack(*version),
        Request::GrantLabels { version, data } => slack(*version) + slack(*data),
        Request::Objects { version, wants } => {
            slack(*version)
                + wants
                    .iter()
                    .map(|w| match &w.path {
                        WantPath::Root { data }
                        | WantPath::Node { data, .. }
                        | WantPath::Entry { data, .. } => slack(*data),
                    })
                    .sum::<usize>()
        }
    };
    (frame_len + slack) as u64
}

/// Counted bytes of a framed response.
pub fn response_len(resp: &Response, frame_len: usize) -> u64 {
    let slack = match resp {
        Response::Heads(heads) => heads
            .iter()
            .map(|h| {
                slack(h.repo)
                    + slack(h.version)
                    + h.parents.iter().map(|p| slack(*p)).sum::<usize>()
            })
            .sum(),
        Response::Manifest(bytes) => {
            // The manifest's own UUIDs, and the length prefix of its bytes, which may grow with them.
            let inner = VersionManifest::decode(bytes).map_or(0, |m| manifest_slack(&m));
            inner + varint_len((bytes.len() + inner) as u128) - varint_len(bytes.len() as u128)
        }
        Response::Objects(_)
        | Response::Refused(_)
        | Response::HeadsUnchanged
        | Response::PushState { .. }
        | Response::LabelGrant(_) => 0,
    };
    (frame_len + slack) as u64
}

fn manifest_slack(m: &VersionManifest) -> usize {
    let versions: usize = m
        .versions
        .iter()
        .map(|v| {
            slack(v.uuid)
                + v.parents.iter().map(|p| slack(*p)).sum::<usize>()
                + v.roots.keys().map(|d| slack(*d)).sum::<usize>()
                + v.instances.iter().map(|d| slack(*d)).sum::<usize>()
        })
        .sum();
    slack(m.repo_root)
        + slack(m.target)
        + m.instances
            .iter()
            .map(|i| slack(i.data_uuid))
            .sum::<usize>()
        + versions
}

fn slack(u: Uuid) -> usize {
    UUID_MAX_LEN - varint_len(u.0)
}

fn varint_len(mut v: u128) -> usize {
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use dvid_protocol::wire::{Head, encode};
    use dvid_store::ObjectId;

    #[test]
    fn frames_count_every_uuid_at_full_width() {
        let small = Request::Manifest { version: Uuid(1) };
        let wide = Request::Manifest {
            version: Uuid(u128::MAX),
        };
        let (fs, fw) = (encode(&small), encode(&wide));
        assert_eq!(fw.len() - fs.len(), UUID_MAX_LEN - 1);
        assert_eq!(request_len(&small, fs.len()), request_len(&wide, fw.len()));
        assert_eq!(request_len(&wide, fw.len()), fw.len() as u64);
        let head = |u: u128| Head {
            repo: Uuid(u),
            version: Uuid(u),
            parents: vec![Uuid(u)],
            commit_hash: ObjectId([0; 32]),
            seal: dvid_store::Seal {
                signer: vec![1; 36],
                signature: vec![2; 64],
            },
            holds: None,
        };
        let (a, b) = (
            Response::Heads(vec![head(5)]),
            Response::Heads(vec![head(u128::MAX >> 1)]),
        );
        assert_eq!(
            response_len(&a, encode(&a).len()),
            response_len(&b, encode(&b).len())
        );
    }
}
