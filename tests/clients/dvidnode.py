"""A `dvid serve` process on loopback for the black-box Python tests (tests/clients, tests/volumes).

DVID_BIN names the binary (default: target/release/dvid of this checkout). Each node prints the HTTP
address it chose (`--http 127.0.0.1:0`); its stdout is drained to a log file next to its data dir.
"""

import os
import pathlib
import re
import subprocess
import threading
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]
BIN = pathlib.Path(os.environ.get("DVID_BIN", ROOT / "target" / "release" / "dvid"))


class Node:
    """A running `dvid serve`; `url` is its base URL (http://127.0.0.1:PORT)."""

    def __init__(self, workdir: pathlib.Path, *args: str):
        if not BIN.exists():
            raise RuntimeError(f"{BIN} is missing: run `cargo build --release -p dvid-node` first")
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.log = open(workdir / "dvid.log", "w")
        self.proc = subprocess.Popen(
            [str(BIN), "serve", "--data-dir", str(workdir / "data"), "--http", "127.0.0.1:0", *args],
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
        )
        self.url = None
        self.lines = []
        deadline = time.time() + 30
        while self.url is None:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError(f"dvid exited before serving: see {workdir / 'dvid.log'}")
            self.lines.append(line)
            m = re.search(r"HTTP API listening on (http://[0-9.:]+)", line)
            if m:
                self.url = m.group(1)
            if time.time() > deadline:
                raise RuntimeError("dvid did not print its HTTP address within 30 s")
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self):
        for line in self.proc.stdout:
            self.lines.append(line)
            self.log.write(line)

    @property
    def api(self) -> str:
        return self.url + "/api"

    def cli(self, *args: str) -> str:
        """Runs a `dvid` client command against this node; returns its stdout."""
        out = subprocess.run(
            [str(BIN), "--server", self.url, *args], capture_output=True, text=True, check=False
        )
        if out.returncode != 0:
            raise RuntimeError(f"dvid {' '.join(args)} failed: {out.stderr}")
        return out.stdout.strip()

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()
