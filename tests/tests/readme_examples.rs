//! The README's shell examples, run literally, in order, in a fresh directory, as a newcomer would
//! paste them: the quick start, the CLI, sharing between two nodes and the laptop's round trip.
//! `target/release/dvid` there is the binary under test; `cargo` lines (building it) are skipped,
//! and the node the quick start expects ("with a node running") is started first. Afterwards every
//! node is stopped and `dvid fsck` must pass on each data dir the examples made.

use dvid_tests::dvid_bin;
use std::path::Path;
use std::process::Command;

/// The ```sh blocks of the README from the quick start on, without `cargo` lines.
fn examples() -> String {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
            .expect("README.md");
    let from = readme
        .find("## Quick start with curl")
        .expect("a quick start section");
    let mut script = String::new();
    let mut in_block = false;
    for line in readme[from..].lines() {
        match (in_block, line.trim_start()) {
            (false, "```sh") => in_block = true,
            (true, "```") => in_block = false,
            (true, l) if l.starts_with("cargo ") => {}
            (true, _) => {
                script.push_str(line);
                script.push('\n');
            }
            _ => {}
        }
    }
    script
}

#[test]
fn readme_examples_run_as_written_and_leave_clean_stores() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    std::fs::create_dir_all(cwd.join("target/release")).unwrap();
    std::os::unix::fs::symlink(dvid_bin(), cwd.join("target/release/dvid")).unwrap();
    let script = format!(
        "set -e\n\
         trap 'kill $(jobs -p) 2>/dev/null; wait' EXIT\n\
         target/release/dvid serve >quickstart-node.log 2>&1 &\n\
         sleep 1\n\
         {}\n\
         echo README-EXAMPLES-DONE\n",
        examples()
    );
    std::fs::write(cwd.join("examples.sh"), &script).unwrap();
    let out = Command::new("bash")
        .arg("examples.sh")
        .current_dir(cwd)
        .env_remove("DVID_SERVER")
        .env_remove("DVID_DATA_DIR")
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("README-EXAMPLES-DONE"),
        "the README examples failed ({:?})\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    for said in [
        "identical",
        "both supervoxels are body 1",
        "the edit is on the server",
        "8 changed (0 added, 0 removed, 8 modified)",
    ] {
        assert!(
            stdout.contains(said),
            "the examples never printed {said:?}:\n{stdout}"
        );
    }
    assert!(!stderr.contains("panicked"), "{stderr}");
    for data in [
        "dvid-data",
        "a-data",
        "b-data",
        "server-data",
        "laptop-data",
    ] {
        let fsck = Command::new(dvid_bin())
            .args(["fsck", "--data-dir"])
            .arg(cwd.join(data))
            .output()
            .unwrap();
        assert!(
            fsck.status.success(),
            "fsck of {data} after the README examples:\n{}{}",
            String::from_utf8_lossy(&fsck.stdout),
            String::from_utf8_lossy(&fsck.stderr)
        );
    }
}
