"""`dvid import` and `dvid export` with sources and results made and read by the real packages
(zarr, tensorstore, tifffile, numpy): round trips are byte-identical for every format, odd shapes
and offsets land where they should, and bad sources fail clearly and leave the instance as it was."""

import json
import os
import signal
import subprocess
import time

import numcodecs
import numpy as np
import pytest
import requests
import tensorstore as ts
import tifffile
import zarr
from conftest import BIN, get_raw, info, instance, new_repo, post_raw, realistic_gray, realistic_labels

# Shapes (z, y, x) that are no multiples of the 64³ blocks, and an offset (x, y, z) off the grid.
SHAPE = (45, 70, 83)
OFFSET = (10, -5, 3)


def dvid(node, *args, check=True):
    out = subprocess.run([str(BIN), "--server", node.url, *args], capture_output=True, text=True)
    if check and out.returncode != 0:
        raise AssertionError(f"dvid {' '.join(args)} failed: {out.stderr}")
    return out


def region(offset, shape_zyx):
    z, y, x = shape_zyx
    return f"{offset[0]},{offset[1]},{offset[2]}:{x},{y},{z}"


def write_source(kind, path, vol):
    """Writes `vol` (z, y, x) as the import source `kind` with the package labs use for it."""
    if kind == "zarr3":
        a = zarr.create_array(str(path), shape=vol.shape, chunks=(32, 32, 32), dtype=vol.dtype,
                              compressors=zarr.codecs.ZstdCodec(level=3), zarr_format=3)
        a[:] = vol
    elif kind == "zarr2":
        a = zarr.create_array(str(path), shape=vol.shape, chunks=(32, 32, 32), dtype=vol.dtype,
                              compressors=numcodecs.Blosc(cname="lz4"), zarr_format=2)
        a[:] = vol
    elif kind == "ome-zarr":
        g = zarr.open_group(str(path), mode="w", zarr_format=3)
        g.attrs["ome"] = {"version": "0.5", "multiscales": [{
            "axes": [{"name": n, "type": "space", "unit": "nanometer"} for n in "zyx"],
            "datasets": [{"path": "0", "coordinateTransformations": [{"type": "scale", "scale": [30, 8, 8]}]}],
        }]}
        a = g.create_array("0", shape=vol.shape, chunks=(64, 64, 64), dtype=vol.dtype)
        a[:] = vol
    elif kind == "n5":
        t = ts.open({"driver": "n5", "kvstore": {"driver": "file", "path": str(path)},
                     "metadata": {"dimensions": list(vol.shape[::-1]), "blockSize": [32, 32, 32],
                                  "dataType": str(vol.dtype), "compression": {"type": "gzip"}},
                     "create": True}).result()
        # tensorstore's N5 axes are N5's order (x, y, z).
        t.write(vol.transpose(2, 1, 0)).result()
        # The container's version, which N5's Java library writes and the n5 crate requires
        # (tensorstore leaves it out).
        attrs = json.loads((path / "attributes.json").read_text())
        (path / "attributes.json").write_text(json.dumps({**attrs, "n5": "2.5.1"}))
    elif kind == "tiff-stack":
        tifffile.imwrite(str(path), vol)
    elif kind == "tiff-folder":
        path.mkdir()
        for z in range(vol.shape[0]):
            tifffile.imwrite(str(path / f"slice_{z:04d}.tif"), vol[z])
    elif kind == "npy":
        np.save(str(path), vol)
    elif kind == "raw":
        vol.tofile(str(path))
    else:
        raise ValueError(kind)


def raw_args(kind, vol):
    if kind != "raw":
        return []
    z, y, x = vol.shape
    return ["--shape", f"{x},{y},{z}", "--dtype", str(vol.dtype)]


def read_export(fmt, path, dtype):
    """Reads an export back with the package labs read that format with, as (z, y, x)."""
    if fmt == "zarr":
        return zarr.open_array(str(path), mode="r")[:]
    if fmt == "ome-zarr":
        return zarr.open_group(str(path), mode="r")["s0"][:]
    if fmt == "n5":
        t = ts.open({"driver": "n5", "kvstore": {"driver": "file", "path": str(path)}}).result()
        return t.read().result().transpose(2, 1, 0)
    if fmt == "tiff":
        return tifffile.imread(str(path))
    if fmt == "npy":
        return np.load(str(path))
    raise ValueError(fmt)


SOURCES = ["zarr3", "zarr2", "ome-zarr", "n5", "tiff-stack", "tiff-folder", "npy", "raw"]


@pytest.mark.parametrize("kind", SOURCES)
def test_grayscale_round_trip(node, tmp_path, kind):
    uuid = new_repo(node)
    vol = realistic_gray(SHAPE, seed=hash(kind) % 1000)
    src = tmp_path / {"npy": "v.npy", "tiff-stack": "v.tif", "raw": "v.raw"}.get(kind, "src")
    write_source(kind, src, vol)
    fmt = ["--format", "raw"] if kind == "raw" else []
    dvid(node, "import", str(src), "--version", uuid, "--instance", "em", "--offset",
         ",".join(map(str, OFFSET)), *fmt, *raw_args(kind, vol))
    assert np.array_equal(get_raw(node, uuid, "em", OFFSET, SHAPE, np.uint8), vol)
    ext = info(node, uuid, "em")["Extended"]
    assert ext["MinPoint"] == list(OFFSET)
    assert ext["MaxPoint"] == [OFFSET[a] + SHAPE[2 - a] - 1 for a in range(3)]
    if kind == "ome-zarr":
        assert ext["VoxelSize"] == [8, 8, 30]
    for fmt in ["zarr", "ome-zarr", "n5", "tiff", "npy"]:
        out = tmp_path / f"out-{fmt}"
        dvid(node, "export", str(out), "--version", uuid, "--instance", "em", "--format", fmt,
             "--region", region(OFFSET, SHAPE))
        assert np.array_equal(read_export(fmt, out, np.uint8), vol), fmt


@pytest.mark.parametrize("kind,dtype", [("zarr3", np.uint64), ("npy", np.uint32), ("tiff-stack", np.uint32)])
def test_labels_round_trip(node, tmp_path, kind, dtype):
    uuid = new_repo(node)
    vol = realistic_labels(SHAPE, seed=5, dtype=dtype)
    src = tmp_path / {"npy": "l.npy", "tiff-stack": "l.tif"}.get(kind, "src")
    write_source(kind, src, vol)
    dvid(node, "import", str(src), "--version", uuid, "--instance", "seg")
    assert info(node, uuid, "seg")["Base"]["TypeName"] == "labelmap"
    assert np.array_equal(get_raw(node, uuid, "seg", (0, 0, 0), SHAPE, np.uint64), vol.astype(np.uint64))
    # The label index knows the imported segments.
    some = int(vol[20, 30, 40])
    r = requests.get(f"{node.api}/node/{uuid}/seg/size/{some}")
    assert r.status_code == 200 and r.json()["voxels"] == int(np.count_nonzero(vol == some))
    out = tmp_path / "out.npy"
    dvid(node, "export", str(out), "--version", uuid, "--instance", "seg", "--format", "npy")
    assert np.array_equal(np.load(str(out)), vol.astype(np.uint64))


def test_export_of_a_version_reads_in_zarr_tensorstore_and_reimports(node, tmp_path):
    uuid = new_repo(node)
    instance(node, uuid, "uint8blk", "em", BlockSize="32,32,32", VoxelSize="8,8,8")
    vol = realistic_gray((64, 64, 64), seed=7)
    post_raw(node, uuid, "em", (0, 0, 0), vol)
    assert requests.post(f"{node.api}/node/{uuid}/em/downres").status_code == 200
    assert requests.post(f"{node.api}/node/{uuid}/commit", json={"note": "v1"}).status_code == 200
    out = tmp_path / "em.ome.zarr"
    dvid(node, "export", str(out), "--version", uuid, "--instance", "em", "--format", "ome-zarr")
    group = zarr.open_group(str(out), mode="r")
    ms = group.attrs["ome"]["multiscales"][0]
    assert [d["path"] for d in ms["datasets"]][:2] == ["s0", "s1"]
    assert np.array_equal(group["s0"][:], vol)
    level1 = get_raw(node, uuid, "em_1", (0, 0, 0), (32, 32, 32), np.uint8)
    assert np.array_equal(group["s1"][:], level1)
    t = ts.open({"driver": "zarr3", "kvstore": {"driver": "file", "path": str(out / "s0")}}).result()
    assert np.array_equal(t.read().result(), vol)
    # The export imports again into another repo, voxel for voxel, with its levels.
    other = new_repo(node)
    dvid(node, "import", str(out), "--version", other, "--instance", "copy", "--all-levels")
    assert np.array_equal(get_raw(node, other, "copy", (0, 0, 0), (64, 64, 64), np.uint8), vol)
    assert info(node, other, "copy")["Extended"]["BlockSize"] == [32, 32, 32]
    assert np.array_equal(get_raw(node, other, "copy_1", (0, 0, 0), (32, 32, 32), np.uint8), level1)
    level_info = info(node, other, "copy_1")["Extended"]
    assert level_info["VoxelSize"] == [16, 16, 16] and level_info["BlockSize"] == [32, 32, 32]
    # They are levels as downres makes them: it takes them and brings them up to date.
    r = requests.post(f"{node.api}/node/{other}/copy/downres")
    assert r.status_code == 200, r.text


def test_bad_sources_fail_clearly_and_change_nothing(node, tmp_path):
    uuid = new_repo(node)
    instance(node, uuid, "uint8blk", "em")
    before = realistic_gray(SHAPE, seed=11)
    post_raw(node, uuid, "em", (0, 0, 0), before)

    def refused(src, *extra, says):
        out = dvid(node, "import", str(src), "--version", uuid, "--instance", "em", *extra, check=False)
        assert out.returncode != 0, out.stdout
        assert says in out.stderr, out.stderr
        assert "panicked" not in out.stderr
        assert np.array_equal(get_raw(node, uuid, "em", (0, 0, 0), SHAPE, np.uint8), before)

    refused(tmp_path / "nowhere.zarr", says="no such file or folder")
    np.save(str(tmp_path / "f.npy"), np.zeros(SHAPE, np.float32))
    refused(tmp_path / "f.npy", says="float")
    labels = tmp_path / "labels.npy"
    np.save(str(labels), np.zeros(SHAPE, np.uint64))
    refused(labels, says="uint8blk")
    raw = tmp_path / "v.raw"
    realistic_gray(SHAPE).tofile(str(raw))
    refused(raw, "--format", "raw", "--shape", "83,70,46", "--dtype", "uint8", says="truncated")
    refused(raw, "--format", "raw", "--shape", "83,70,44", "--dtype", "uint8", says="more than")
    npy = tmp_path / "t.npy"
    np.save(str(npy), realistic_gray(SHAPE))
    with open(npy, "r+b") as f:
        f.truncate(os.path.getsize(npy) - 1000)
    refused(npy, says="truncated")
    tif = tmp_path / "t.tif"
    tifffile.imwrite(str(tif), realistic_gray(SHAPE))
    with open(tif, "r+b") as f:
        f.truncate(os.path.getsize(tif) // 2)
    refused(tif, says="truncated")
    lzma = tmp_path / "lzma.zarr"
    a = zarr.create_array(str(lzma), shape=SHAPE, chunks=(32, 32, 32), dtype=np.uint8,
                          compressors=numcodecs.LZMA(), zarr_format=2)
    a[:] = 1
    refused(lzma, says="lzma")
    refused(raw, "--format", "raw", "--shape", "83,70,45", "--dtype", "uint8", "--region", "0,0,0:100,10,10",
            says="outside")
    # A chunk cut short is found only when it is read, after other blocks were staged: the
    # import is dropped and the version still shows what it held.
    cut = tmp_path / "cut.zarr"
    write_source("zarr3", cut, realistic_gray(SHAPE, seed=12))
    chunk = cut / "c" / "1" / "1" / "1"
    chunk.write_bytes(chunk.read_bytes()[:40])
    refused(cut, says="instance is unchanged")
    # A committed version takes no import: the node's refusal, said as it gave it.
    good = tmp_path / "good.npy"
    np.save(str(good), realistic_gray(SHAPE, seed=14))
    assert requests.post(f"{node.api}/node/{uuid}/commit", json={"note": "locked"}).status_code == 200
    refused(good, says="locked")


def test_an_interrupted_import_resumes_without_restaging(node, tmp_path):
    uuid = new_repo(node)
    vol = realistic_gray((256, 512, 512), seed=13)
    src = tmp_path / "big.npy"
    np.save(str(src), vol)
    args = [str(BIN), "--server", node.url, "import", str(src), "--version", uuid, "--instance", "em",
            "--workers", "1"]
    p = subprocess.Popen(args, stderr=subprocess.PIPE, text=True)
    session = None
    for line in p.stderr:
        if "import session" in line:
            session = line.split("import session ")[1].split(":")[0]
            break
    assert session, "the import names its session"
    staged = 0
    deadline = time.time() + 60
    while staged == 0 and time.time() < deadline:
        r = requests.get(f"{node.api}/node/{uuid}/em/import/{session}")
        staged = r.json()["count"] if r.status_code == 200 else 0
        time.sleep(0.01)
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert staged > 0
    # Nothing shows before the import finishes.
    assert not get_raw(node, uuid, "em", (0, 0, 0), (64, 64, 64), np.uint8).any()
    total = (512 // 64) * (512 // 64) * (256 // 64)
    r = requests.get(f"{node.api}/node/{uuid}/em/import/{session}")
    kept = r.json()["count"]
    assert 0 < kept < total, "kill it mid-import"
    out = dvid(node, "import", str(src), "--version", uuid, "--instance", "em")
    assert f"resuming: {kept} of {total} blocks were staged before" in out.stderr
    assert f"{total - kept} blocks to stage" in out.stderr
    assert np.array_equal(get_raw(node, uuid, "em", (0, 0, 0), vol.shape, np.uint8), vol)
    # The session is gone once the import finished.
    assert requests.get(f"{node.api}/node/{uuid}/em/import/{session}").json()["count"] == 0
