"""Fixtures for the real-client tests: `dvid` processes on loopback (dvidnode.py), started from the
release binary."""

import pathlib
import sys

import pytest

# One request helper for the tests and view.py: ngview's (it never raises on 4xx/5xx).
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent / "neuroglancer"))
from ngview import http  # noqa: E402,F401

from dvidnode import BIN, ROOT, Node  # noqa: E402,F401


@pytest.fixture
def node(tmp_path):
    """A fresh node on its own data dir."""
    n = Node(tmp_path / "node")
    yield n
    n.stop()
