"""Every version of a voxel instance is a read-only Zarr v3 store over HTTP: zarr-python and
tensorstore read the same voxels `raw` gives, at mutable, locked and levelled versions."""

import numpy as np
import requests
import tensorstore as ts
import zarr
from conftest import get_raw, info, instance, new_repo, post_raw, realistic_gray, realistic_labels


def zarr_url(node, uuid, name, kind="zarr"):
    return f"{node.api}/node/{uuid}/{name}/{kind}/"


def whole(node, uuid, name, dtype, query=""):
    """The instance from voxel 0 to MaxPoint through `raw`, (z, y, x)."""
    mx = info(node, uuid, name)["Extended"]["MaxPoint"]
    shape = (mx[2] + 1, mx[1] + 1, mx[0] + 1)
    return get_raw(node, uuid, name, (0, 0, 0), shape, dtype, query)


def test_zarr_and_tensorstore_read_grayscale_as_raw(node):
    uuid = new_repo(node)
    instance(node, uuid, "uint8blk", "em", VoxelSize="8,8,40")
    vol = realistic_gray((70, 90, 100), seed=1)
    post_raw(node, uuid, "em", (5, 70, 3), vol)
    expect = whole(node, uuid, "em", np.uint8)
    assert expect.shape == (73, 160, 105)

    arr = zarr.open_array(zarr_url(node, uuid, "em"), mode="r")
    assert arr.shape == expect.shape and arr.dtype == np.uint8
    assert arr.chunks == (32, 32, 32)  # uint8blk's default blocks, DVID's
    got = arr[:]
    assert np.array_equal(got, expect)
    # Never-written chunks follow Zarr's fill value; written voxels are where raw puts them.
    assert np.array_equal(got[3:73, 70:160, 5:105], vol)
    assert arr.attrs["dvid"]["voxel_size_zyx"] == [40, 8, 8]

    t = ts.open({"driver": "zarr3", "kvstore": zarr_url(node, uuid, "em")}).result()
    assert np.array_equal(t.read().result(), expect)
    # A box not aligned to chunks.
    assert np.array_equal(t[10:50, 65:140, 7:99].read().result(), expect[10:50, 65:140, 7:99])


def test_labelmap_view_shows_bodies_at_every_version(node):
    uuid = new_repo(node)
    instance(node, uuid, "labelmap", "seg", BlockSize="32,32,32")
    vol = realistic_labels((40, 50, 60), seed=2)
    post_raw(node, uuid, "seg", (0, 0, 0), vol)
    a, b = int(vol[0, 0, 0]), int(vol[30, 40, 50])
    assert a != b
    r = requests.post(f"{node.api}/node/{uuid}/commit", json={"note": "segmented"})
    assert r.status_code == 200, r.text
    r = requests.post(f"{node.api}/node/{uuid}/newversion", json={"note": "proofread"})
    child = r.json()["child"]
    r = requests.post(f"{node.api}/node/{child}/seg/merge", json=[a, b])
    assert r.status_code == 200, r.text

    locked = zarr.open_array(zarr_url(node, uuid, "seg"), mode="r")
    assert locked.dtype == np.uint64
    assert np.array_equal(locked[:], vol)
    merged = ts.open({"driver": "zarr3", "kvstore": zarr_url(node, child, "seg")}).result().read().result()
    assert np.array_equal(merged, whole(node, child, "seg", np.uint64))
    assert np.count_nonzero(merged == b) == 0 and np.count_nonzero(merged == a) == np.count_nonzero(
        (vol == a) | (vol == b)
    )


def test_ome_zarr_group_lists_the_levels(node):
    uuid = new_repo(node)
    instance(node, uuid, "uint8blk", "em", BlockSize="32,32,32", VoxelSize="4,4,4", VoxelUnits="nanometers")
    vol = realistic_gray((64, 64, 64), seed=3)
    post_raw(node, uuid, "em", (0, 0, 0), vol)
    r = requests.post(f"{node.api}/node/{uuid}/em/downres")
    assert r.status_code == 200, r.text

    group = zarr.open_group(zarr_url(node, uuid, "em", "omezarr"), mode="r")
    ms = group.attrs["ome"]["multiscales"][0]
    paths = [d["path"] for d in ms["datasets"]]
    assert paths[:2] == ["s0", "s1"]
    assert ms["datasets"][1]["coordinateTransformations"][0]["scale"] == [8, 8, 8]
    assert ms["axes"][0] == {"name": "z", "type": "space", "unit": "nanometer"}
    assert np.array_equal(group["s0"][:], vol)
    level1 = whole(node, uuid, "em_1", np.uint8)
    assert np.array_equal(group["s1"][:], level1)


def test_missing_chunks_and_bad_paths_answer_404(node):
    uuid = new_repo(node)
    instance(node, uuid, "uint8blk", "em")
    post_raw(node, uuid, "em", (64, 0, 0), np.full((1, 1, 1), 7, np.uint8))
    base = zarr_url(node, uuid, "em")
    assert requests.get(base + "c/0/0/2").status_code == 200  # 32³ blocks: x = 64 is block 2
    r = requests.get(base + "c/0/0/0")
    assert r.status_code == 404 and "never written" in r.text
    r = requests.get(base + "c/0/0/9")
    assert r.status_code == 404 and "chunks" in r.text
    r = requests.get(base + ".zarray")
    assert r.status_code == 404 and "no key" in r.text
    r = requests.get(zarr_url(node, uuid, "em", "omezarr") + "s3/zarr.json")
    assert r.status_code == 404 and "downres" in r.text
