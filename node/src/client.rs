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
    pub fn new(server: &str) -> anyhow::Result<Self> {
        Ok(Self {
            base: server.trim_end_matches('/').to_string(),
            http: reqwest::blocking::Client::builder().build()?,
        })
    }

    /// Runs one client command and prints the node's answer.
    pub fn run(&self, command: Command) -> anyhow::Result<()> {
        let answer = match command {
            Command::Serve { .. } => unreachable!("serve is not a client command"),
            Command::Repos => self.get("/api/repos/info")?,
            Command::Repo(RepoCommand::New { alias, description }) => {
                let r = self.post(
                    "/api/repos",
                    json!({"alias": alias, "description": description}),
                )?;
                println!("{}", field(&r, "root")?);
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
            Command::Commit { uuid, note, log } => {
                let mut body = json!({"log": log});
                if let Some(n) = note {
                    body["note"] = json!(n);
                }
                let r = self.post(&format!("/api/node/{uuid}/commit"), body)?;
                println!("{}", field(&r, "committed")?);
                return Ok(());
            }
            Command::Branch { uuid, name, note } => {
                let r = self.post(
                    &format!("/api/node/{uuid}/branch"),
                    json!({"branch": name, "note": note}),
                )?;
                println!("{}", field(&r, "child")?);
                return Ok(());
            }
            Command::Newversion { uuid, note } => {
                let r = self.post(
                    &format!("/api/node/{uuid}/newversion"),
                    json!({"note": note}),
                )?;
                println!("{}", field(&r, "child")?);
                return Ok(());
            }
            Command::Merge { parents, note } => {
                let r = self.post(
                    &format!("/api/repo/{}/merge", parents[0]),
                    json!({"mergeType": "conflict-free", "parents": parents, "note": note}),
                )?;
                println!("{}", field(&r, "child")?);
                return Ok(());
            }
        };
        println!("{}", serde_json::to_string_pretty(&answer)?);
        Ok(())
    }

    fn get(&self, path: &str) -> anyhow::Result<Value> {
        let resp = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .with_context(|| format!("cannot reach the node at {}", self.base))?;
        answer(resp)
    }

    fn post(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        let resp = self
            .http
            .post(format!("{}{path}", self.base))
            .json(&body)
            .send()
            .with_context(|| format!("cannot reach the node at {}", self.base))?;
        answer(resp)
    }
}

fn answer(resp: reqwest::blocking::Response) -> anyhow::Result<Value> {
    let status = resp.status();
    let text = resp.text()?;
    if !status.is_success() {
        bail!("{status}: {}", text.trim());
    }
    serde_json::from_str(&text).with_context(|| format!("node answered non-JSON: {text}"))
}

fn field(v: &Value, name: &str) -> anyhow::Result<String> {
    v.get(name)
        .and_then(Value::as_str)
        .map(str::to_string)
        .with_context(|| format!("node's answer lacks {name:?}: {v}"))
}
