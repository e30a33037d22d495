"""Neuroglancer's compressed segmentation as a node serves it (`raw/0_1_2/...?compression=googlegzip`),
decoded by the PyPI `compressed-segmentation` package: random labels and real-like blobs, aligned and
not, must come back voxel for voxel. (The other direction, the package's encoding decoded by dvid's
decoder, is a Rust unit test on fixtures the package wrote: node/src/http/formats/.)"""

import gzip
import json

import compressed_segmentation as cseg
import numpy as np

from conftest import http


def _setup(node, name="seg"):
    status, _, body = http("POST", node.api + "/repos", json.dumps({"alias": "cseg"}).encode())
    assert status == 200, body
    root = json.loads(body)["root"]
    status, _, body = http(
        "POST",
        f"{node.api}/repo/{root}/instance",
        json.dumps({"typename": "labelblk", "dataname": name}).encode(),
    )
    assert status == 200, body
    return root


def _blobs(shape, n, rng):
    """Labels of the nearest of n random centres: large, contiguous regions like a segmentation."""
    zz, yy, xx = np.indices(shape)
    centres = rng.integers(0, shape, size=(n, 3))
    ids = rng.integers(1, 2**63, size=n, dtype=np.uint64)
    d = np.stack([(zz - c[0]) ** 2 + (yy - c[1]) ** 2 + (xx - c[2]) ** 2 for c in centres])
    return ids[np.argmin(d, axis=0)]


def _check(node, root, vol, offset):
    sz, sy, sx = vol.shape
    ox, oy, oz = offset
    url = f"{node.api}/node/{root}/seg/raw/0_1_2/{sx}_{sy}_{sz}/{ox}_{oy}_{oz}"
    status, _, body = http("POST", url, vol.astype("<u8").tobytes())
    assert status == 200, body
    status, headers, body = http("GET", url + "?compression=googlegzip")
    assert status == 200, body
    assert headers.get("Content-Encoding") == "gzip"
    raw = gzip.decompress(body)
    # The package takes x-fastest (Fortran-order) arrays indexed [x, y, z].
    got = cseg.decompress(raw, (sx, sy, sz), np.uint64, (8, 8, 8), order="F")
    np.testing.assert_array_equal(np.asarray(got).transpose(2, 1, 0), vol)
    # And the package's own encoding decodes to the same labels as ours.
    theirs = cseg.compress(np.asfortranarray(vol.transpose(2, 1, 0)), block_size=(8, 8, 8), order="F")
    back = cseg.decompress(theirs, (sx, sy, sz), np.uint64, (8, 8, 8), order="F")
    np.testing.assert_array_equal(np.asarray(back), np.asarray(got))


def test_random_labels_round_trip(node):
    root = _setup(node)
    rng = np.random.default_rng(1)
    vol = rng.integers(0, 2**64, size=(32, 32, 32), dtype=np.uint64)
    _check(node, root, vol, (0, 0, 0))


def test_real_like_blobs_unaligned_round_trip(node):
    root = _setup(node)
    rng = np.random.default_rng(2)
    vol = _blobs((37, 50, 61), 12, rng)  # sizes not multiples of 8, at an unaligned offset
    _check(node, root, vol, (5, -3, 17))


def test_googlegzip_refused_for_grayscale(node):
    root = _setup(node)
    http(
        "POST",
        f"{node.api}/repo/{root}/instance",
        json.dumps({"typename": "uint8blk", "dataname": "gray"}).encode(),
    )
    status, _, body = http("GET", f"{node.api}/node/{root}/gray/raw/0_1_2/8_8_8/0_0_0?compression=googlegzip")
    assert status == 400 and b"labels" in body, body
