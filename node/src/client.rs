//! The client side of the command line: each command is one HTTP request to a running node.

use crate::cli::{Command, RepoCommand};
use anyhow::{Context, bail};
use serde_json::{Value, json};

/// A blocking HTTP client of one node.
pub struct Client {
    base: String,
    http: reqwest::blocking::Client,
}

impl Client {
    pub fn new(server: &str, token: Option<&str>) -> anyhow::Result<Self> {
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(t) = token {
            let mut v = reqwest::header::HeaderValue::from_str(&format!("Bearer {t}"))
                .context("the token must be printable ASCII")?;
            v.set_sensitive(true);
            headers.insert(reqwest::header::AUTHORIZATION, v);
        }
        Ok(Self {
            base: server.trim_end_matches('/').to_string(),
            http: reqwest::blocking::Client::builder()
                .default_headers(headers)
                .build()?,
        })
    }

    /// Runs one client command and prints the node's answer.
    pub fn run(&self, command: Command) -> anyhow::Result<()> {
        let answer = match command {
            Command::Serve { .. } | Command::Id { .. } | Command::Fsck { .. } => {
                unreachable!("not a client command")
            }
            Command::Pull {
                uuid,
                from,
                instances,
                region,
                wait,
            } => return self.pull(&uuid, from, instances, region.as_deref(), wait),
            Command::Push { uuid, to, wait } => return self.push(&uuid, &to, wait),
            Command::Import(args) => return crate::transfer::import(self, args),
            Command::Export(args) => return crate::transfer::export(self, args),
            Command::Follow { repo } => self.post("/api/p2p/follow", json!({"repo": repo}))?,
            Command::Unfollow { repo } => self.post("/api/p2p/unfollow", json!({"repo": repo}))?,
            Command::Follows => self.get("/api/p2p/follow")?,
            Command::Jobs => self.get("/api/p2p/jobs")?,
            Command::Cancel { job } => {
                self.post(&format!("/api/p2p/jobs/{job}/cancel"), json!({}))?
            }
            Command::Share { uuid, peers } => {
                self.post(&format!("/api/repo/{uuid}/share"), json!({"peers": peers}))?
            }
            Command::Unshare { uuid, peers } => self.post(
                &format!("/api/repo/{uuid}/unshare"),
                json!({"peers": peers}),
            )?,
            Command::Publish { uuid } => {
                self.post(&format!("/api/node/{uuid}/publish"), json!({}))?
            }
            Command::Unpublish { uuid } => {
                self.post(&format!("/api/node/{uuid}/unpublish"), json!({}))?
            }
            Command::Diff {
                from,
                to,
                data,
                json,
            } => {
                let d = self.get(&format!("/api/node/{from}/{data}/diff/{to}"))?;
                if !json {
                    return print_diff(&d);
                }
                d
            }
            Command::Repos => self.get("/api/repos/info")?,
            Command::Repo(RepoCommand::New { alias, description }) => {
                let r = self.post(
                    "/api/repos",
                    json!({"alias": alias, "description": description}),
                )?;
                out(&field(&r, "root")?);
                return Ok(());
            }
            Command::Repo(RepoCommand::Info { uuid }) => {
                self.get(&format!("/api/repo/{uuid}/info"))?
            }
            Command::Instance {
                uuid,
                typename,
                name,
                block_size,
                voxel_size,
                compression,
            } => {
                let mut body = json!({"typename": typename, "dataname": name});
                for (k, v) in [
                    ("BlockSize", block_size),
                    ("VoxelSize", voxel_size),
                    ("Compression", compression),
                ] {
                    if let Some(v) = v {
                        body[k] = json!(v);
                    }
                }
                self.post(&format!("/api/repo/{uuid}/instance"), body)?
            }
            Command::Downres { uuid, name, levels } => {
                let query = levels.map_or(String::new(), |n| format!("?levels={n}"));
                let r = self.post(
                    &format!("/api/node/{uuid}/{name}/downres{query}"),
                    json!({}),
                )?;
                for level in r["levels"].as_array().into_iter().flatten() {
                    out(&format!(
                        "{} {} blocks",
                        level["name"].as_str().unwrap_or("?"),
                        level["blocks"]
                    ));
                }
                return Ok(());
            }
            Command::Commit {
                uuid,
                note,
                log,
                downres,
            } => {
                let mut body = json!({"log": log, "downres": downres});
                if let Some(n) = note {
                    body["note"] = json!(n);
                }
                let r = self.post(&format!("/api/node/{uuid}/commit"), body)?;
                out(&field(&r, "committed")?);
                return Ok(());
            }
            Command::Branch { uuid, name, note } => {
                let r = self.post(
                    &format!("/api/node/{uuid}/branch"),
                    json!({"branch": name, "note": note}),
                )?;
                out(&field(&r, "child")?);
                return Ok(());
            }
            Command::Newversion { uuid, note } => {
                let r = self.post(
                    &format!("/api/node/{uuid}/newversion"),
                    json!({"note": note}),
                )?;
                out(&field(&r, "child")?);
                return Ok(());
            }
            Command::Merge { parents, note } => {
                let r = self.post(
                    &format!("/api/repo/{}/merge", parents[0]),
                    json!({"mergeType": "conflict-free", "parents": parents, "note": note}),
                )?;
                out(&field(&r, "child")?);
                return Ok(());
            }
        };
        out(&serde_json::to_string_pretty(&answer)?);
        Ok(())
    }

    /// Starts a pull and reports its progress until it ends.
    fn pull(
        &self,
        uuid: &str,
        from: Vec<String>,
        instances: Option<Vec<String>>,
        region: Option<&str>,
        wait: u64,
    ) -> anyhow::Result<()> {
        let mut body = json!({"uuid": uuid, "peers": from, "wait": wait});
        if let Some(i) = instances {
            body["instances"] = json!(i);
        }
        if let Some(r) = region {
            let (offset, size) = crate::transfer::parse_region(r)?;
            body["region"] = json!({"offset": offset, "size": size});
        }
        let job = field(&self.post("/api/p2p/pull", body)?, "job")?;
        // The total is known only at the end (the trees are discovered as they arrive), so the bar
        // counts bytes and objects with their rate. indicatif draws nothing when stderr is no terminal.
        let bar = indicatif::ProgressBar::new_spinner().with_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} pulling {prefix}: {bytes} ({bytes_per_sec}), {msg} [{elapsed}]",
            )
            .expect("a valid progress template"),
        );
        bar.set_prefix(uuid.to_string());
        bar.enable_steady_tick(std::time::Duration::from_millis(120));
        let mut said = String::new();
        loop {
            let st = self.get(&format!("/api/p2p/jobs/{job}"))?;
            let objects = st["objects_fetched"].as_u64().unwrap_or(0);
            bar.set_position(st["bytes_fetched"].as_u64().unwrap_or(0));
            match st["state"].as_str() {
                Some("done") => {
                    bar.finish();
                    out(&serde_json::to_string(&st)?);
                    return Ok(());
                }
                Some("failed") => {
                    bar.abandon();
                    bail!(
                        "pull failed: {}",
                        st["error"].as_str().unwrap_or("unknown error")
                    );
                }
                Some("cancelled") => {
                    bar.abandon();
                    bail!("pull job {job} was cancelled");
                }
                Some("waiting") => {
                    // Said once on stderr too, so a log or a pipe shows why nothing moves.
                    let reason = st["reason"].as_str().unwrap_or("").to_string();
                    if reason != said {
                        bar.suspend(|| eprintln!("dvid: waiting: {reason}"));
                        said = reason.clone();
                    }
                    bar.set_message(format!("waiting: {reason}"));
                }
                _ => bar.set_message(format!("{objects} objects")),
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }

    /// Pushes a version to a peer and waits until the peer has pulled it, or says why not.
    fn push(&self, uuid: &str, to: &str, wait: u64) -> anyhow::Result<()> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(wait);
        let first = self.post("/api/p2p/push", json!({"uuid": uuid, "peer": to}))?;
        let mut said = String::new();
        let mut st = first;
        loop {
            let state = st["state"].as_str().unwrap_or("").to_string();
            let detail = st["detail"].as_str().unwrap_or("").to_string();
            let line = format!("{state}: {detail}");
            if line != said {
                eprintln!("dvid: {to} {line}");
                said = line;
            }
            match state.as_str() {
                "done" => {
                    out(&serde_json::to_string(&st)?);
                    return Ok(());
                }
                "failed" | "refused" | "cancelled" => bail!("push {state}: {detail}"),
                _ if std::time::Instant::now() > deadline => {
                    bail!("push not done after {wait} s: {state}: {detail}")
                }
                _ => std::thread::sleep(std::time::Duration::from_millis(300)),
            }
            st = self.get(&format!("/api/p2p/push/{to}/{uuid}"))?;
        }
    }

    /// Sends a request to `path` of the node.
    fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        build: impl FnOnce(reqwest::blocking::RequestBuilder) -> reqwest::blocking::RequestBuilder,
    ) -> anyhow::Result<reqwest::blocking::Response> {
        build(self.http.request(method, format!("{}{path}", self.base)))
            .send()
            .with_context(|| format!("cannot reach the node at {}", self.base))
    }

    pub(crate) fn get(&self, path: &str) -> anyhow::Result<Value> {
        answer(self.send(reqwest::Method::GET, path, |r| r)?)
    }

    pub(crate) fn post(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        answer(self.send(reqwest::Method::POST, path, |r| r.json(&body))?)
    }

    /// GET of JSON that may not exist: `None` for a 404.
    pub(crate) fn get_if_found(&self, path: &str) -> anyhow::Result<Option<Value>> {
        let resp = self.send(reqwest::Method::GET, path, |r| r)?;
        if resp.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        answer(resp).map(Some)
    }

    /// POST of bytes, answered with JSON.
    pub(crate) fn post_bytes(&self, path: &str, body: Vec<u8>) -> anyhow::Result<Value> {
        answer(self.send(reqwest::Method::POST, path, |r| {
            r.header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
                .body(body)
        })?)
    }

    /// GET of bytes.
    pub(crate) fn get_bytes(&self, path: &str) -> anyhow::Result<Vec<u8>> {
        let resp = self.send(reqwest::Method::GET, path, |r| r)?;
        let status = resp.status();
        if !status.is_success() {
            return Err(Refusal {
                status,
                message: resp.text()?.trim().to_string(),
            }
            .into());
        }
        Ok(resp.bytes()?.to_vec())
    }

    pub(crate) fn delete(&self, path: &str) -> anyhow::Result<Value> {
        answer(self.send(reqwest::Method::DELETE, path, |r| r)?)
    }
}

/// Prints a line on stdout. A closed pipe (`dvid repos | head -1`) ends the program quietly, as
/// for any Unix tool, instead of panicking as `println!` does.
pub fn out(text: &str) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = writeln!(stdout, "{text}").and_then(|()| stdout.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("dvid: writing to stdout: {e}");
        std::process::exit(1);
    }
}

/// Prints a diff as one line per change, then a summary.
fn print_diff(d: &Value) -> anyhow::Result<()> {
    let list = d["blocks"].as_array().or(d["keys"].as_array());
    for c in list.into_iter().flatten() {
        let what = match (&c["block"], &c["key"]) {
            (Value::Array(b), _) => format!(
                "block {}",
                b.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(",")
            ),
            (_, Value::String(k)) => format!("key {k}"),
            _ => continue,
        };
        out(&format!("{}\t{what}", c["change"].as_str().unwrap_or("?")));
    }
    let mut summary = format!(
        "{} changed ({} added, {} removed, {} modified)",
        d["changed"], d["added"], d["removed"], d["modified"]
    );
    if let Some(b) = d.get("voxel_box") {
        summary.push_str(&format!(", voxels {} to {}", b["min"], b["max"]));
    }
    out(&summary);
    Ok(())
}

/// A node's answer that is not a success: its status and message.
#[derive(Debug, thiserror::Error)]
#[error("{status}: {message}")]
pub struct Refusal {
    pub status: reqwest::StatusCode,
    pub message: String,
}

impl Refusal {
    /// Whether the error is a node's refusal of the request itself (a 4xx).
    pub fn is_client_error(e: &anyhow::Error) -> bool {
        e.downcast_ref::<Self>()
            .is_some_and(|r| r.status.is_client_error())
    }
}

fn answer(resp: reqwest::blocking::Response) -> anyhow::Result<Value> {
    let status = resp.status();
    let text = resp.text()?;
    if !status.is_success() {
        return Err(Refusal {
            status,
            message: text.trim().to_string(),
        }
        .into());
    }
    serde_json::from_str(&text).with_context(|| format!("node answered non-JSON: {text}"))
}

fn field(v: &Value, name: &str) -> anyhow::Result<String> {
    v.get(name)
        .and_then(Value::as_str)
        .map(str::to_string)
        .with_context(|| format!("node's answer lacks {name:?}: {v}"))
}
