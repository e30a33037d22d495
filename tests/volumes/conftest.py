"""Fixtures for the volume tests: `dvid` nodes on loopback (tests/clients/dvidnode.py) and the real
Zarr, tensorstore, tifffile and NumPy packages reading and writing what they exchange."""

import pathlib
import sys

import numpy as np
import pytest
import requests

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "clients"))
from dvidnode import BIN, ROOT, Node  # noqa: E402,F401


@pytest.fixture
def node(tmp_path):
    n = Node(tmp_path / "node")
    yield n
    n.stop()


def new_repo(node) -> str:
    r = requests.post(f"{node.api}/repos", json={"alias": "volumes"})
    r.raise_for_status()
    return r.json()["root"]


def instance(node, uuid, typename, name, **settings):
    body = {"typename": typename, "dataname": name, **settings}
    r = requests.post(f"{node.api}/repo/{uuid}/instance", json=body)
    assert r.status_code == 200, r.text


def post_raw(node, uuid, name, offset, vol):
    """Writes a (z, y, x) array at voxel offset (x, y, z)."""
    z, y, x = vol.shape
    ox, oy, oz = offset
    r = requests.post(
        f"{node.api}/node/{uuid}/{name}/raw/0_1_2/{x}_{y}_{z}/{ox}_{oy}_{oz}",
        data=np.ascontiguousarray(vol).tobytes(),
    )
    assert r.status_code == 200, r.text


def get_raw(node, uuid, name, offset, shape_zyx, dtype, query=""):
    """Reads a (z, y, x) array at voxel offset (x, y, z) through `raw`."""
    z, y, x = shape_zyx
    ox, oy, oz = offset
    r = requests.get(f"{node.api}/node/{uuid}/{name}/raw/0_1_2/{x}_{y}_{z}/{ox}_{oy}_{oz}{query}")
    assert r.status_code == 200, r.text
    return np.frombuffer(r.content, dtype=dtype).reshape(shape_zyx)


def info(node, uuid, name):
    r = requests.get(f"{node.api}/node/{uuid}/{name}/info")
    assert r.status_code == 200, r.text
    return r.json()


def realistic_gray(shape, seed=0):
    """Smooth blobs with noise, like EM: compresses as real data does, unlike uniform noise."""
    rng = np.random.default_rng(seed)
    z, y, x = np.meshgrid(*[np.linspace(0, 6, n) for n in shape], indexing="ij")
    smooth = np.sin(x * 1.7 + rng.uniform(0, 6)) * np.cos(y * 1.3) * np.sin(z + 0.5)
    vol = (smooth + 1) * 100 + rng.normal(0, 12, shape)
    return np.clip(vol, 0, 255).astype(np.uint8)


def realistic_labels(shape, seed=0, dtype=np.uint64):
    """Blocky segments with big ids, like a segmentation."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(1, 2**40 if dtype == np.uint64 else 2**31, size=[max(1, n // 9) + 1 for n in shape])
    idx = np.ix_(*[np.arange(n) // 9 for n in shape])
    return coarse[idx].astype(dtype)
