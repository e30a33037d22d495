"""dvision 0.1.1 (TuragaLab's pure-Python DVID client) against a real node.

dvision's calls: `DVIDConnection.create_repo` (POST /api/repos), `DVIDRepository.create_data_instance`
(POST /api/repo/{uuid}/instance), `DVIDDataInstance.info|dtype|shape` (GET .../{data}/info: Base.TypeName,
Extended.MinPoint/MaxPoint), `instance[z0:z1, y0:y1, x0:x1] = array` (POST .../raw/0_1_2/{sx_sy_sz}/{x_y_z})
and `instance[z0:z1, y0:y1, x0:x1]` (GET .../raw/0_1_2/{sx_sy_sz}/{x_y_z}/nD). Slices are numpy (z, y, x)
order; the client reverses them into DVID's x_y_z.

Two things outside dvid: dvision's module-level requester refuses POSTs to hosts not in its whitelist
(`slowpoke1`, `slowpoke3`), so the fixture adds 127.0.0.1; and it calls `ndarray.tostring` and binary
`np.fromstring`, so it needs numpy < 2 (requirements.txt pins it).
"""

import json

import numpy as np
import pytest

import dvision
from dvision import DVIDConnection, DVIDDataInstance

from conftest import http


@pytest.fixture
def dv(node):
    """The node, with (host, port) split out and dvision allowed to POST to it."""
    host, port = node.url.split("//", 1)[1].rsplit(":", 1)
    wl = dvision.dvid_requester.whitelist
    added = host not in wl
    if added:
        wl.append(host)
    yield node, host, int(port)
    if added:
        wl.remove(host)


def get_json(url):
    status, _, body = http("GET", url)
    assert status == 200, (url, status, body)
    return json.loads(body)


def new_repo(host, port, alias="dvision"):
    return DVIDConnection(host, port).create_repo(alias, "dvision client test")


def test_create_repo_and_instances(dv):
    node, host, port = dv
    repo = new_repo(host, port, alias="dvision-repo")
    root = repo.root_uuid
    assert isinstance(root, str) and len(root) == 32

    info = get_json(f"{node.api}/repo/{root}/info")
    assert info["Root"] == root
    assert info["Alias"] == "dvision-repo"
    assert info["Description"] == "dvision client test"
    assert root in get_json(f"{node.api}/repos/info")

    gray = repo.create_data_instance("grayscale", "uint8blk")
    seg = repo.create_data_instance("segmentation", "labelblk")
    assert isinstance(gray, DVIDDataInstance)
    assert gray.info["Base"]["TypeName"] == "uint8blk"
    assert gray.info["Base"]["Name"] == "grayscale"
    assert seg.info["Base"]["TypeName"] == "labelblk"
    assert gray.dtype == np.dtype("uint8")
    assert seg.dtype == np.dtype("uint64")
    # Nothing written yet: dvision reads MaxPoint null (or an empty box) as shape (0, 0, 0).
    assert gray.shape == (0, 0, 0)
    assert seg.shape == (0, 0, 0)
    # dvision's DVIDServer.block_shape, DVID's default when no BlockSize is given.
    assert gray.info["Extended"]["BlockSize"] == [32, 32, 32]
    assert seg.info["Extended"]["BlockSize"] == [32, 32, 32]

    instances = get_json(f"{node.api}/repo/{root}/info")["DataInstances"]
    assert set(instances) == {"grayscale", "segmentation"}


def test_grayscale_write_read(dv):
    node, host, port = dv
    repo = new_repo(host, port)
    gray = repo.create_data_instance("grayscale", "uint8blk")
    rng = np.random.default_rng(7)

    # A subvolume at the origin: (z, y, x) = 20 x 30 x 40.
    a = rng.integers(1, 256, size=(20, 30, 40), dtype=np.uint8)
    gray[0:20, 0:30, 0:40] = a
    back = gray[0:20, 0:30, 0:40]
    assert back.dtype == np.uint8 and back.shape == (20, 30, 40)
    np.testing.assert_array_equal(back, a)
    # The same bytes as DVID's raw endpoint without the /nD suffix, x fastest.
    status, _, raw = http("GET", f"{node.api}/node/{repo.root_uuid}/grayscale/raw/0_1_2/40_30_20/0_0_0")
    assert status == 200 and raw == a.tobytes()

    # Extents as DVID keeps them, voxel-exact: MinPoint [0,0,0], MaxPoint [39,29,19] -> (z,y,x) shape.
    gray._info_cache = None
    assert gray.info["Extended"]["MinPoint"] == [0, 0, 0]
    assert gray.info["Extended"]["MaxPoint"] == [39, 29, 19]
    assert gray.shape == (20, 30, 40)

    # An unaligned overwrite straddling blocks (and the first write's edge), then reads that cover
    # written and never-written voxels.
    model = np.zeros((80, 80, 80), dtype=np.uint8)
    model[0:20, 0:30, 0:40] = a
    b = rng.integers(1, 256, size=(33, 17, 45), dtype=np.uint8)
    gray[5:38, 21:38, 13:58] = b
    model[5:38, 21:38, 13:58] = b
    np.testing.assert_array_equal(gray[0:80, 0:80, 0:80], model)
    np.testing.assert_array_equal(gray[3:41, 19:40, 10:60], model[3:41, 19:40, 10:60])
    # An integer index is a one-voxel-thick slab.
    np.testing.assert_array_equal(gray[6, 22:30, 14:20], model[6:7, 22:30, 14:20])
    # Never written: background zeros.
    assert not gray[100:110, 100:110, 100:110].any()

    gray._info_cache = None
    assert gray.info["Extended"]["MinPoint"] == [0, 0, 0]
    assert gray.info["Extended"]["MaxPoint"] == [57, 37, 37]
    assert gray.shape == (38, 38, 58)


def test_labels_write_read(dv):
    node, host, port = dv
    repo = new_repo(host, port)
    seg = repo.create_data_instance("segmentation", "labelblk")
    rng = np.random.default_rng(11)

    # Labels spanning the whole uint64 range, at an offset that is not block aligned.
    labels = rng.integers(0, 2**63, size=(12, 34, 56), dtype=np.uint64)
    labels[0, 0, 0] = np.uint64(2**64 - 1)
    labels[1, 1, 1] = 0
    seg[70:82, 3:37, 9:65] = labels
    back = seg[70:82, 3:37, 9:65]
    assert back.dtype == np.uint64 and back.shape == labels.shape
    np.testing.assert_array_equal(back, labels)

    # A bigger box around it: zeros outside the write.
    around = seg[64:96, 0:64, 0:96]
    model = np.zeros((32, 64, 96), dtype=np.uint64)
    model[6:18, 3:37, 9:65] = labels
    np.testing.assert_array_equal(around, model)

    # Single voxels, as (1, 1, 1) arrays.
    for z, y, x in [(70, 3, 9), (81, 36, 64), (75, 20, 30), (71, 4, 10)]:
        v = seg[z, y, x]
        assert v.shape == (1, 1, 1)
        assert v[0, 0, 0] == labels[z - 70, y - 3, x - 9]

    # The labels the client wrote are the ones DVID's label endpoint answers, x_y_z order.
    got = get_json(f"{node.api}/node/{repo.root_uuid}/segmentation/label/30_20_75")
    assert got == {"Label": int(labels[75 - 70, 20 - 3, 30 - 9])}


def test_versions_keep_their_voxels(dv):
    """dvision reads and writes at whatever UUID it is given: a child sees the parent's voxels
    until it overwrites them, and the locked parent keeps its own."""
    node, host, port = dv
    repo = new_repo(host, port)
    root = repo.root_uuid
    gray_root = repo.create_data_instance("grayscale", "uint8blk")
    a = np.full((32, 32, 32), 7, dtype=np.uint8)
    gray_root[0:32, 0:32, 0:32] = a

    status, _, body = http("POST", f"{node.api}/node/{root}/commit", json.dumps({"note": "v1"}).encode())
    assert status == 200, body
    status, _, body = http("POST", f"{node.api}/node/{root}/newversion", b"{}")
    assert status == 200, body
    child = json.loads(body)["child"]

    gray_child = DVIDDataInstance(host, port, child, "grayscale")
    np.testing.assert_array_equal(gray_child[0:32, 0:32, 0:32], a)
    b = np.arange(8 * 8 * 8, dtype=np.uint64).astype(np.uint8).reshape(8, 8, 8)
    gray_child[8:16, 8:16, 8:16] = b
    model = a.copy()
    model[8:16, 8:16, 8:16] = b
    np.testing.assert_array_equal(gray_child[0:32, 0:32, 0:32], model)
    np.testing.assert_array_equal(gray_root[0:32, 0:32, 0:32], a)

    # The locked root refuses the write; dvision raises on a non-OK answer.
    with pytest.raises(Exception):
        gray_root[0:8, 0:8, 0:8] = np.zeros((8, 8, 8), dtype=np.uint8)
    np.testing.assert_array_equal(gray_root[0:32, 0:32, 0:32], a)
