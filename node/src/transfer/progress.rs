//! Progress of an import or export: an indicatif bar (bytes, blocks, rate, ETA) on a terminal,
//! and plain lines every few seconds otherwise (a log, CI, a pipe).

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Seconds between plain progress lines.
const LINE_EVERY: Duration = Duration::from_secs(5);

pub struct Progress {
    what: String,
    bar: Option<indicatif::ProgressBar>,
    total: u64,
    state: Mutex<Counts>,
    started: Instant,
}

struct Counts {
    bytes: u64,
    blocks: u64,
    said: Instant,
}

impl Progress {
    /// `what` is the verb and object ("importing em"); `total` the bytes to move, of which
    /// `done` moved before (a resumed import).
    pub fn new(what: String, total: u64, done: u64) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new(total).with_style(
                indicatif::ProgressStyle::with_template(
                    "{prefix} [{bar:30}] {bytes}/{total_bytes} ({bytes_per_sec}), {msg}, ETA {eta}",
                )
                .expect("a valid progress template")
                .progress_chars("=> "),
            );
            bar.set_prefix(what.clone());
            bar.set_position(done);
            bar
        });
        Self {
            what,
            bar,
            total,
            state: Mutex::new(Counts {
                bytes: done,
                blocks: 0,
                said: Instant::now(),
            }),
            started: Instant::now(),
        }
    }

    pub fn add(&self, bytes: u64, blocks: u64) {
        let mut c = self.state.lock().expect("progress lock");
        c.bytes += bytes;
        c.blocks += blocks;
        if let Some(bar) = &self.bar {
            bar.set_position(c.bytes);
            bar.set_message(format!("{} blocks", c.blocks));
        } else if c.said.elapsed() >= LINE_EVERY {
            c.said = Instant::now();
            let secs = self.started.elapsed().as_secs_f64().max(1e-9);
            eprintln!(
                "dvid: {}: {} of {} MB, {} blocks, {:.1} MB/s",
                self.what,
                c.bytes / 1_000_000,
                self.total / 1_000_000,
                c.blocks,
                c.bytes as f64 / 1e6 / secs
            );
        }
    }

    /// Ends the bar; returns the seconds since the start.
    pub fn finish(&self) -> f64 {
        if let Some(bar) = &self.bar {
            bar.finish();
        }
        self.started.elapsed().as_secs_f64()
    }

    pub fn abandon(&self) {
        if let Some(bar) = &self.bar {
            bar.abandon();
        }
    }
}
