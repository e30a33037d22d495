"""Neuroglancer 2.41.2, in a real browser, shows grayscale and labels that dvid nodes serve.

Node A holds a repo with a uint8blk `grayscale` (32^3 blocks) and a labelblk `labels` (64^3 blocks)
volume of 128^3 voxels, downsampled into `grayscale_1`, `grayscale_2`, `labels_1`, `labels_2` by
`dvid downres`, and committed; a child version changes a cube of both. Node B pulls the locked
version from A. For each case -- the locked version, the child, the pulled version on B, and level 1
-- the Neuroglancer package's own server (bound to 127.0.0.1) serves a viewer whose two `xy` panels
show the `dvid://` grayscale and labels layers over a magenta background, and
`neuroglancer/shoot.mjs` drives Debian's Chromium (playwright-core) to it: it waits until the chunks
have loaded, takes a screenshot, and reports failed requests, console errors of the page and of its
workers, and pixel statistics per panel. The test checks that each panel draws real data (not the
background, not uniform), that no request failed, that no worker or page logged an error, that the
child shows its change, that B's picture is A's, and that level 1 came from the `_1` instances and
looks like level 0.

`test_meshes_and_skeletons` follows Neuroglancer's DVID conventions for a labelblk `labels` on a
node of its own: a segment's mesh in the keyvalue `labels_meshes` at `{id}.ngmesh` (in nm) and a
segment's skeleton in `labels_skeletons` at `{id}_swc` (SWC, in voxels). A 3-D panel, orthographic
and looking down z, shows one segment's mesh and another's skeleton; the test checks that both keys
were read (200) with nothing failed or logged, that the mesh covers its blob's outline and the
skeleton's lines lie on its edges, each in its segment's colour, and that nothing else is drawn.

`test_readme_view_command` runs the `view.py --demo` command of README.md's "View it in
Neuroglancer" and checks what its viewer shows the same way, and that Ctrl-C stops it and its node.

Screenshots and reports go to DVID_ARTIFACTS (default tests/clients/artifacts/).
Needs: `pip install -r tests/clients/neuroglancer/requirements.txt`, `npm ci` in
tests/clients/neuroglancer, and Debian's chromium at /usr/bin/chromium (CHROMIUM overrides it).
Outside CI a missing piece skips the test; under CI (CI set) it fails.
"""

import colorsys
import json
import os
import pathlib
import queue
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from conftest import BIN, ROOT, Node, http

HERE = pathlib.Path(__file__).resolve().parent
NG_DIR = HERE / "neuroglancer"
sys.path.insert(0, str(NG_DIR))
import ngview  # noqa: E402  (shared with neuroglancer/view.py)
from ngview import CHANGE, CHANGE_GRAY, CHANGE_LABEL, N, grayscale_volume, labels_volume  # noqa: E402

ARTIFACTS = pathlib.Path(os.environ.get("DVID_ARTIFACTS", HERE / "artifacts"))
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")

SENTINEL = "#ff00ff"  # crossSectionBackgroundColor: what a panel shows where nothing is drawn
VIEWPORT = (1200, 640)
ZOOM = 0.2  # crossSectionScale: 5 screen pixels per voxel, so the volume fills each panel

IS_CI = bool(os.environ.get("CI"))


def missing(what: str):
    if IS_CI:
        pytest.fail(what)
    pytest.skip(what)


def post_raw(node: Node, uuid: str, instance: str, vol: np.ndarray, offset=(0, 0, 0)):
    ngview.post_raw(node.api, uuid, instance, vol, offset)


def get_raw(node: Node, uuid: str, instance: str, dtype, size, offset=(0, 0, 0)) -> np.ndarray:
    sx, sy, sz = size
    url = (f"{node.api}/node/{uuid}/{instance}/raw/0_1_2/{sx}_{sy}_{sz}/"
           f"{offset[0]}_{offset[1]}_{offset[2]}")
    status, _, body = http("GET", url)
    assert status == 200, f"GET {url}: {status} {body[:300]!r}"
    return np.frombuffer(body, np.dtype(dtype).newbyteorder("<")).reshape(sz, sy, sx)


def get_json(url: str):
    status, _, body = http("GET", url)
    assert status == 200, f"GET {url}: {status} {body[:300]!r}"
    return json.loads(body)


# ----------------------------------------------------------------------------------------------
# Two nodes, the versions, the pull and the levels: built once for the four cases.


class World:
    a: Node
    b: Node
    root: str
    child: str
    errors: dict  # case -> why its setup failed


def peer_id(data_dir: pathlib.Path) -> str:
    out = subprocess.run([str(BIN), "id", "--data-dir", str(data_dir)], capture_output=True,
                         text=True, check=True)
    return out.stdout.strip().split()[-1]


def build_world(tmp: pathlib.Path, w: World):
    """Starts the nodes into `w` (so that the caller can stop them whatever happens) and fills them."""
    w.a = Node(tmp / "a", "--listen", "/ip4/127.0.0.1/tcp/0")
    info = get_json(w.a.api + "/p2p/info")
    a_addr = next(addr for addr in info["listen_addrs"] if "/127.0.0.1/" in addr)
    (tmp / "b").mkdir(parents=True, exist_ok=True)
    b_id = peer_id(tmp / "b" / "data")
    w.b = Node(tmp / "b", "--peer", a_addr)

    a = w.a
    w.root = a.cli("repo", "new", "--alias", "neuroglancer", "--description", "browser test").split()[-1]
    a.cli("instance", w.root, "uint8blk", "grayscale", "--block-size", "32,32,32")
    a.cli("instance", w.root, "labelblk", "labels", "--block-size", "64,64,64")
    gray, labels = grayscale_volume(), labels_volume()
    post_raw(a, w.root, "grayscale", gray)
    post_raw(a, w.root, "labels", labels)
    assert np.array_equal(get_raw(a, w.root, "grayscale", np.uint8, (N, N, N)), gray)
    # The levels and the pull each matter to one case only: a failure here fails that case, and
    # the others still run.
    try:
        for instance in ("grayscale", "labels"):
            a.cli("downres", w.root, instance, "--levels", "2")
        names = set(get_json(f"{a.api}/repo/{w.root}/info")["DataInstances"])
        assert {"grayscale_1", "grayscale_2", "labels_1", "labels_2"} <= names, names
    except (RuntimeError, AssertionError) as e:
        w.errors["level1"] = f"building the levels failed: {e}"
    a.cli("commit", w.root, "--note", "grayscale, labels and two levels of each")

    w.child = a.cli("newversion", w.root).split()[-1]
    for instance in ("grayscale", "labels"):
        post_raw(a, w.child, instance, *ngview.change_cube(instance))

    try:
        a.cli("share", w.root, b_id)
        deadline = time.time() + 60
        while True:  # B learns what A offers from its heads, refreshed every few seconds
            heads = get_json(w.b.api + "/p2p/heads")
            if any(h.get("uuid") == w.root for h in heads):
                break
            assert time.time() < deadline, f"B never saw {w.root} among its heads: {heads}"
            time.sleep(0.5)
        w.b.cli("pull", w.root)
        assert np.array_equal(get_raw(w.b, w.root, "grayscale", np.uint8, (N, N, N)), gray)
    except (RuntimeError, AssertionError) as e:
        w.errors["pulled"] = f"pulling to B failed: {e}"


def need_browser():
    for what, ok in [
        (f"{CHROMIUM} (apt-get install chromium)", pathlib.Path(CHROMIUM).exists()),
        ("node (apt-get install nodejs npm)", shutil.which("node") is not None),
        ("tests/clients/neuroglancer/node_modules (npm ci there)",
         (NG_DIR / "node_modules" / "playwright-core").exists()),
    ]:
        if not ok:
            missing(f"needs {what}")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    need_browser()
    w = World()
    w.errors = {}
    try:
        build_world(tmp_path_factory.mktemp("neuroglancer"), w)
        yield w
    finally:
        for n in (getattr(w, "b", None), getattr(w, "a", None)):
            if n is not None:
                n.stop()


@pytest.fixture(scope="module")
def ng():
    try:
        return ngview.neuroglancer_for_dvid()
    except ImportError:
        missing("needs the neuroglancer package (pip install -r tests/clients/neuroglancer/requirements.txt)")


# ----------------------------------------------------------------------------------------------
# One viewer and one screenshot per case.

CASES = {
    # name: (node, version, level Neuroglancer is steered to)
    "locked": ("a", "root", 0),
    "child": ("a", "child", 0),
    "pulled": ("b", "root", 0),
    "level1": ("a", "root", 1),
}


def cross_section_view(ng, s):
    """The view every cross-section case shares: the middle xy plane at ZOOM over the sentinel
    background, without axis lines, scale bar or default annotations."""
    s.dimensions = ng.CoordinateSpace(names=["x", "y", "z"], units="nm", scales=[8, 8, 8])
    s.position = [N / 2, N / 2, N / 2 + 0.5]
    s.cross_section_scale = ZOOM
    s.cross_section_background_color = SENTINEL
    s.show_axis_lines = False
    s.show_scale_bar = False
    s.show_default_annotations = False


def open_viewer(ng, node: Node, uuid: str, level: int):
    """A viewer with the grayscale and labels layers side by side, each in its own xy panel.

    With levels `NAME_1`, `NAME_2` present Neuroglancer loads the coarser ones first and stops at the
    level whose voxels are nearest crossSectionRenderScale screen pixels (times 1.1). At ZOOM 0.2 a
    render scale of 1 gives level 0, and 8 gives level 1 (2 voxels = 10 px is nearer 8.8 px than
    4 voxels, and 2 voxels is no longer above the target, so it stops there)."""
    viewer = ng.Viewer()
    render_scale = {0: 1.0, 1: 8.0}[level]
    source = f"dvid://{node.url}/{uuid}"
    with viewer.txn() as s:
        cross_section_view(ng, s)
        s.layers["grayscale"] = ng.ImageLayer(
            source=f"{source}/grayscale", opacity=1.0, cross_section_render_scale=render_scale)
        s.layers["labels"] = ng.SegmentationLayer(
            source=f"{source}/labels", selected_alpha=1.0, cross_section_render_scale=render_scale)
        s.layout = ng.row_layout([
            ng.LayerGroupViewer(layers=["grayscale"], layout="xy"),
            ng.LayerGroupViewer(layers=["labels"], layout="xy"),
        ])
    return viewer


def shoot(url: str, name: str) -> dict:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    png, report_path = ARTIFACTS / f"neuroglancer-{name}.png", ARTIFACTS / f"neuroglancer-{name}.json"
    cmd = ["node", str(NG_DIR / "shoot.mjs"), "--url", url, "--out", str(png), "--report",
           str(report_path), "--width", str(VIEWPORT[0]), "--height", str(VIEWPORT[1]),
           "--timeout", "120", "--sentinel", SENTINEL, "--chromium", CHROMIUM]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=NG_DIR)
    assert out.returncode == 0, f"shoot.mjs failed ({out.returncode}): {out.stderr[-3000:]}"
    return json.loads(out.stdout)


def summary(report: dict) -> str:
    """What to print when a check fails: enough to see why without opening the artifacts."""
    lines = [f"ready={report['ready']} reason={report['reason']} ({report['elapsedMs']} ms)",
             f"screenshot: {report['screenshot']}"]
    for layer in report["layers"]:
        lines.append(f"layer {layer['name']} {layer['type']}: {layer['sources']}")
    for src in report["chunkSources"]:
        p = src.get("parameters") or {}
        lines.append(f"chunks {p.get('dataInstanceKey')}@{p.get('nodeKey', '')[:8]} {src.get('chunkDataSize', src['type'])}: "
                     f"visible {src['visibleTotal']} gpu {src['visibleGpu']} failed {src['visibleFailed']} "
                     f"downloading {src['visibleDownloading']} queued {src['visibleQueued']}")
    for p in report["panels"]:
        lines.append(f"panel {p['layers']}: sentinel {p.get('sentinelFraction', 0):.3f} colours "
                     f"{p.get('distinctColours')} dominant {p.get('dominantColour')} "
                     f"{p.get('dominantFraction', 0):.3f} luma {p.get('lumaMean', 0):.1f}±{p.get('lumaStd', 0):.1f}")
    for r in report["failed"][:10]:
        lines.append(f"FAILED {r['method']} {r['url']} status={r['status']} failure={r['failure']}")
    for m in report["errors"][:10]:
        lines.append(f"ERROR [{m['source']}] {m['text'][:500]}")
    dvid = [r for r in report["requests"] if "/api/" in r["url"]]
    lines.append(f"{len(dvid)} DVID requests, e.g.:")
    lines += [f"  {r['status']} {r['url']}" for r in dvid[:8]]
    return "\n".join(lines)


def panel(report: dict, layer: str | list[str]) -> dict:
    """The panel of the layer group of `layer` (a layer's name, or the list of the group's)."""
    want = [layer] if isinstance(layer, str) else list(layer)
    found = [p for p in report["panels"] if p["layers"] == want]
    assert len(found) == 1, f"no single panel for {layer}: {report['panels']}"
    return found[0]


def panel_pixels(report: dict, layer: str) -> np.ndarray:
    """The screenshot inside the layer's panel, as an [h, w, 3] uint8 array."""
    from PIL import Image

    x, y, w, h = panel(report, layer)["crop"]
    with Image.open(report["screenshot"]) as im:
        return np.asarray(im.convert("RGB"))[y:y + h, x:x + w]


def expected_plane(version: str, instance: str, level: int) -> np.ndarray:
    """The [y, x] plane that the panels show (z = N/2 at level 0), at the level's resolution, as this
    test wrote it: levels are 2x2x2 means (grayscale) or every other voxel (labels) here, which is
    what the checks below tolerate in `dvid downres`'s levels (their borders may differ)."""
    vol = grayscale_volume() if instance == "grayscale" else labels_volume()
    if version == "child":
        vol[CHANGE] = CHANGE_GRAY if instance == "grayscale" else CHANGE_LABEL
    plane = vol[N // 2]
    f = 2**level
    if f > 1:
        if instance == "grayscale":
            sub = vol[N // 2 - N // 2 % f: N // 2 - N // 2 % f + f].astype(np.float32).mean(axis=0)
            plane = sub.reshape(N // f, f, N // f, f).mean(axis=(1, 3))
        else:
            plane = plane[::f, ::f]
    return plane


def sample_panel(report: dict, layer: str, level: int):
    """The screenshot's pixels at the centres of the displayed plane's voxels of `level`.

    The panel's centre shows the viewer's position (N/2, N/2) and a voxel is 1/ZOOM pixels wide.
    Returns (iy, ix, rgb): voxel indices and the [k, 3] colours there, for the voxels whose centres
    fall inside the panel, away from its corner widgets (the top 80 pixels are left out)."""
    from PIL import Image

    p = panel(report, layer)
    x0, y0, w, h = p["crop"]
    with Image.open(report["screenshot"]) as im:
        img = np.asarray(im.convert("RGB"))
    f = 2**level
    centres = (np.arange(N // f) + 0.5) * f  # level-0 coordinates of the level's voxel centres
    px = np.floor(p["x"] + p["width"] / 2 + (centres - N / 2) / ZOOM).astype(int)
    py = np.floor(p["y"] + p["height"] / 2 + (centres - N / 2) / ZOOM).astype(int)
    okx = (px >= x0) & (px < x0 + w)
    oky = (py >= y0 + 80) & (py < y0 + h)
    ix, iy = np.nonzero(okx)[0], np.nonzero(oky)[0]
    gy, gx = np.meshgrid(iy, ix, indexing="ij")
    rgb = img[py[gy], px[gx]]
    return gy.ravel(), gx.ravel(), rgb.reshape(-1, 3)


def check_content(report: dict, version: str, level: int):
    """The panels show what was written: grayscale values as grey levels (JPEG-close), and labels
    as one colour per label with the background where the label is 0."""
    info = summary(report)
    sentinel = np.array([int(SENTINEL[i:i + 2], 16) for i in (1, 3, 5)])

    iy, ix, rgb = sample_panel(report, "grayscale", level)
    want = expected_plane(version, "grayscale", level)[iy, ix].astype(np.float32)
    err = np.abs(luma(rgb) - want)
    assert len(err) > 2000 // 4**level, f"too few samples: {len(err)}\n{info}"
    # JPEG at quality 50 gives a mean |error| of 3.7 here, and 2% of voxels off by 24 or more; the
    # same picture one voxel off gives 6.7 and 5%. Level 1 allows for another way to downsample.
    mean_tol, far_tol = (5, 0.03) if level == 0 else (8, 0.08)
    assert np.mean(err) < mean_tol and np.mean(err >= 24) < far_tol, (
        f"grayscale panel does not show the written values: mean |error| {np.mean(err):.1f}, "
        f"{np.mean(err >= 24):.1%} of voxels off by >= 24\n{info}")

    iy, ix, rgb = sample_panel(report, "labels", level)
    want = expected_plane(version, "labels", level)[iy, ix]
    is_bg = np.all(np.abs(rgb.astype(int) - sentinel) <= 16, axis=1)
    worst = 0.98 if level == 0 else 0.9
    assert np.mean(is_bg[want == 0]) > worst, f"label 0 is not transparent\n{info}"
    assert np.mean(~is_bg[want != 0]) > worst, f"labelled voxels show the background\n{info}"
    colours = {}
    for label in np.unique(want[want != 0]):
        c, n = np.unique(rgb[want == label], axis=0, return_counts=True)
        assert n.max() / n.sum() > worst, f"label {label} is drawn in several colours\n{info}"
        colours[int(label)] = tuple(c[n.argmax()])
    assert len(set(colours.values())) == len(colours), f"labels share a colour: {colours}\n{info}"


def check_loaded(report: dict, node_url: str, uuid: str) -> list[str]:
    """Everything loaded from this node and version, and nothing failed. Returns the chunk URLs."""
    info = summary(report)
    assert report["ready"], f"the data never finished loading\n{info}"
    assert not report["failed"], f"requests failed\n{info}"
    assert not report["errors"], f"console errors in the page or its workers\n{info}"
    for layer in report["layers"]:
        assert all(s["state"] == "loaded" for s in layer["sources"]), info
    # Every DVID request went to this node and version, and every chunk source on this node
    # finished: its visible chunks are on the GPU.
    dvid = [r for r in report["requests"] if "/api/" in r["url"]]
    assert dvid, info
    assert all(r["url"].startswith(node_url + "/api/") for r in dvid), info
    chunk_urls = [r["url"] for r in dvid if "/api/node/" in r["url"]]
    assert chunk_urls and all(f"/api/node/{uuid}/" in u for u in chunk_urls), info
    sources = [s for s in report["chunkSources"] if (s.get("parameters") or {}).get("baseUrl") == node_url]
    assert sources, info
    for s in sources:
        assert s["visibleFailed"] == 0 and s["visibleGpu"] == s["visibleTotal"], info
    return chunk_urls


def check_report(report: dict, node: Node, uuid: str, level: int):
    info = summary(report)
    chunk_urls = check_loaded(report, node.url, uuid)
    # Real data drawn: not the background, and not a uniform panel.
    for name in ("grayscale", "labels"):
        p = panel(report, name)
        assert p["pixels"] > 100_000, info
        assert p["dominantFraction"] < 0.6, f"{name} panel is mostly one colour\n{info}"
        assert p["distinctColours"] >= (50 if name == "grayscale" else 4), info
        assert p["sentinelFraction"] < (0.02 if name == "grayscale" else 0.75), \
            f"{name} panel shows mostly background\n{info}"
        assert p["lumaStd"] > 10, info
    # The labels drew segments in several colours besides the background where label 0 is.
    labels = panel(report, "labels")
    assert labels["sentinelFraction"] > 0.1, f"label 0 should be transparent\n{info}"
    # The level Neuroglancer drew from: level 0 reads `grayscale` and `labels`, level 1 stops at
    # `grayscale_1` and `labels_1` (the coarser `_2` are loaded first in both cases).
    for name in ("grayscale", "labels"):
        wanted = name if level == 0 else f"{name}_{level}"
        finer = None if level == 0 else (name if level == 1 else f"{name}_{level - 1}")
        assert any(f"/{wanted}/raw/" in u for u in chunk_urls), f"no chunk of {wanted}\n{info}"
        if finer:
            assert not any(f"/{finer}/raw/" in u for u in chunk_urls), f"read {finer} too\n{info}"


def test_neuroglancer_case_locked(ng, world):
    run_case(world, ng, "locked")


def test_neuroglancer_case_child(ng, world):
    run_case(world, ng, "child")


def test_neuroglancer_case_pulled(ng, world):
    run_case(world, ng, "pulled")


def test_neuroglancer_case_level1(ng, world):
    run_case(world, ng, "level1")


def test_neuroglancer_zarr_source_draws_the_version(ng, world):
    """Neuroglancer's own `zarr3://` source reads the locked version's OME-Zarr view (the
    node's `omezarr/` group and its levels) and draws what `dvid://` draws."""
    node, uuid = world.a, world.root
    viewer = ng.Viewer()
    with viewer.txn() as s:
        cross_section_view(ng, s)
        base = f"zarr3://{node.url}/api/node/{uuid}"
        s.layers["grayscale"] = ng.ImageLayer(source=f"{base}/grayscale/omezarr/", opacity=1.0)
        s.layers["labels"] = ng.SegmentationLayer(source=f"{base}/labels/omezarr/", selected_alpha=1.0)
        s.layout = ng.row_layout([
            ng.LayerGroupViewer(layers=["grayscale"], layout="xy"),
            ng.LayerGroupViewer(layers=["labels"], layout="xy"),
        ])
    report = shoot(viewer.get_viewer_url(), "zarr")
    info = summary(report)
    assert report["ready"], f"the data never finished loading\n{info}"
    assert not report["failed"], f"requests failed\n{info}"
    assert not report["errors"], f"console errors in the page or its workers\n{info}"
    urls = [r["url"] for r in report["requests"]]
    for name in ("grayscale", "labels"):
        assert any(f"/api/node/{uuid}/{name}/omezarr/s0/c/" in u for u in urls), f"no s0 chunk of {name}\n{info}"
    check_content(report, "root", 0)


REPORTS: dict = {}


def run_case(world: World, ng, name: str) -> dict:
    if name in world.errors:
        pytest.fail(world.errors[name])
    node_name, version, level = CASES[name]
    node = getattr(world, node_name)
    uuid = getattr(world, version)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    status, _, body = http("GET", node.api + "/repos/info")  # what Neuroglancer parsed, for the record
    (ARTIFACTS / f"neuroglancer-{name}-repos-info.json").write_bytes(body)
    viewer = open_viewer(ng, node, uuid, level)  # held while the page runs: the server keeps weak references
    report = shoot(viewer.get_viewer_url(), name)
    REPORTS[name] = report
    check_report(report, node, uuid, level)
    check_content(report, version, level)
    compare_with_locked(world, ng, name, report)
    return report


def locked_report(world: World, ng) -> dict:
    """The locked case's report, shot now if that case did not run first (as with -k)."""
    if "locked" not in REPORTS:
        viewer = open_viewer(ng, world.a, world.root, 0)
        REPORTS["locked"] = shoot(viewer.get_viewer_url(), "locked")
    base = REPORTS["locked"]
    if not base["ready"] or base["failed"] or base["errors"]:
        pytest.fail("the locked case, which this one is compared with, did not load: see its failure")
    return base


def luma(img: np.ndarray) -> np.ndarray:
    return img.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)


def compare_with_locked(world: World, ng, name: str, report: dict):
    """The pictures of the other cases against the locked version's."""
    if name == "locked":
        return
    base = locked_report(world, ng)
    for layer in ("grayscale", "labels"):
        a, b = panel_pixels(base, layer), panel_pixels(report, layer)
        assert a.shape == b.shape, (a.shape, b.shape)
        changed = np.mean(np.any(a != b, axis=2))
        if name == "pulled":
            # The same version, pulled: the same picture.
            assert changed < 0.001, f"B's {layer} differs from A's in {changed:.3%} of pixels"
        elif name == "child":
            # The child rewrote a 48x48 square of the middle plane: about 10% of the panel.
            assert changed > 0.05, f"the child's {layer} shows no change ({changed:.3%} of pixels)"
            if layer == "grayscale":
                bright = np.mean(luma(b) >= 245) - np.mean(luma(a) >= 245)
                assert bright > 0.05, f"the child's bright square is missing ({bright:.3%})"
        elif name == "level1":
            # Level 1 is level 0 at half the resolution: the same picture, blockier.
            if layer == "grayscale":
                corr = np.corrcoef(luma(a).ravel(), luma(b).ravel())[0, 1]
                assert corr > 0.85, f"level 1 grayscale does not look like level 0 (r={corr:.3f})"
            else:
                same = np.mean(np.all(a == b, axis=2))
                assert same > 0.7, f"level 1 labels do not look like level 0 ({same:.3%} same)"


# ----------------------------------------------------------------------------------------------
# Meshes and skeletons: Neuroglancer's DVID conventions, in a 3-D panel.
#
# For a volume instance NAME, Neuroglancer (src/datasource/dvid/frontend.ts) adds a `meshes`
# subsource when the repo has an instance NAME_meshes and a `skeletons` subsource when it has
# NAME_skeletons, both enabled by default. It reads a segment's mesh from the key `{id}.ngmesh`
# (backend.ts: little-endian uint32 vertex count, float32 x,y,z per vertex, then uint32 triangle
# indices to the end) in nanometres: the mesh subsource maps them to voxels through
# diag(1/VoxelSize). It reads the skeleton from `{id}_swc` (SWC text) with no transform: in voxels.
# It asks for both of every segment shown, and a missing key is a failed request and a logged
# error; so the viewer has two layers on the one source, one with only the meshes enabled showing
# MESH_ID and one with only the skeletons showing SKELETON_ID, drawn in one 3-D panel.

MESH_ID = ngview.LABEL_IDS[3]  # 4_000_000_007, the blob at (94, 94, 64): past 31 bits
SKELETON_ID = ngview.LABEL_IDS[4]  # 2**40 + 5, the blob at (64, 64, 64): past 32 bits
MESH_BLOB = ((94, 94, 64), (26, 26, 40))  # centre and radii, in voxel indices (labels_volume)
# A plus sign through the middle blob, in the plane z = 64 (voxel coordinates: voxel i spans
# [i, i + 1), so its centre is at i + 0.5), as SWC nodes (id, x, y, z, parent).
SKELETON_NODES = [(1, 64.5, 64.5, 64.5, -1), (2, 50.5, 64.5, 64.5, 1), (3, 78.5, 64.5, 64.5, 1),
                  (4, 64.5, 50.5, 64.5, 1), (5, 64.5, 78.5, 60.5, 4)]
MESH_COLOUR, SKELETON_COLOUR = "#00ff00", "#ffff00"
SKELETON_LINE_PX = 4.0
PROJECTION_SCALE = 160  # orthographic: voxels per 3-D panel height


def ellipsoid_mesh(centre, radii, n_lat=24, n_lon=48) -> tuple[np.ndarray, np.ndarray]:
    """A closed ellipsoid surface: [V, 3] float32 vertices in the units of `centre` and `radii`,
    and [T, 3] uint32 triangles wound outwards."""
    theta = np.pi * np.arange(1, n_lat) / n_lat
    phi = 2 * np.pi * np.arange(n_lon) / n_lon
    t, p = np.meshgrid(theta, phi, indexing="ij")
    unit = np.concatenate([[[0, 0, 1]], np.stack([np.sin(t) * np.cos(p), np.sin(t) * np.sin(p),
                                                  np.cos(t)], -1).reshape(-1, 3), [[0, 0, -1]]])
    verts = np.asarray(centre) + unit * np.asarray(radii)
    ring = lambda i, j: 1 + i * n_lon + j % n_lon  # noqa: E731
    south = len(unit) - 1
    tris = []
    for j in range(n_lon):
        tris.append((0, ring(0, j), ring(0, j + 1)))
        tris.append((south, ring(n_lat - 2, j + 1), ring(n_lat - 2, j)))
        for i in range(n_lat - 2):
            tris.append((ring(i, j), ring(i + 1, j), ring(i + 1, j + 1)))
            tris.append((ring(i, j), ring(i + 1, j + 1), ring(i, j + 1)))
    tris = np.array(tris, np.uint32)
    a, b, c = (verts[tris[:, k]] for k in range(3))
    inward = np.einsum("ij,ij->i", np.cross(b - a, c - a), (a + b + c) / 3 - centre) < 0
    tris[inward] = tris[inward][:, ::-1]
    return verts.astype(np.float32), tris


def ngmesh(verts: np.ndarray, tris: np.ndarray) -> bytes:
    """Neuroglancer's DVID mesh format (decodeFragmentChunk in datasource/dvid/backend.ts)."""
    return (np.uint32(len(verts)).astype("<u4").tobytes() + verts.astype("<f4").tobytes()
            + tris.astype("<u4").tobytes())


def swc(nodes) -> bytes:
    lines = ["# a plus sign through one blob, in voxel coordinates"]
    lines += [f"{n} 0 {x:.1f} {y:.1f} {z:.1f} 1.0 {parent}" for n, x, y, z, parent in nodes]
    return ("\n".join(lines) + "\n").encode()


def post_key(node: Node, uuid: str, instance: str, key: str, value: bytes):
    url = f"{node.api}/node/{uuid}/{instance}/key/{key}"
    status, _, body = http("POST", url, value)
    assert status == 200, f"POST {url}: {status} {body[:300]!r}"


def build_meshes_repo(node: Node) -> str:
    """A repo with `labels` (labels_volume), `labels_meshes` holding MESH_ID's surface and
    `labels_skeletons` holding SKELETON_ID's skeleton, committed. Returns the version."""
    uuid = node.cli("repo", "new", "--alias", "meshes", "--description", "meshes and skeletons").split()[-1]
    node.cli("instance", uuid, "labelblk", "labels", "--block-size", "64,64,64")
    post_raw(node, uuid, "labels", labels_volume())
    for name in ("labels_meshes", "labels_skeletons"):
        url = f"{node.api}/repo/{uuid}/instance"
        status, _, body = http("POST", url, json.dumps({"typename": "keyvalue", "dataname": name}).encode())
        assert status == 200, f"POST {url}: {status} {body[:300]!r}"
    extended = get_json(f"{node.api}/node/{uuid}/labels/info")["Extended"]
    voxel_nm = np.array(extended["VoxelSize"], np.float64)
    (cx, cy, cz), radii = MESH_BLOB
    verts, tris = ellipsoid_mesh(np.array([cx, cy, cz]) + 0.5, np.array(radii, np.float64))
    post_key(node, uuid, "labels_meshes", f"{MESH_ID}.ngmesh", ngmesh(verts * voxel_nm, tris))
    post_key(node, uuid, "labels_skeletons", f"{SKELETON_ID}_swc", swc(SKELETON_NODES))
    node.cli("commit", uuid, "--note", "labels, a mesh and a skeleton")
    return uuid


def open_3d_viewer(ng, node: Node, uuid: str):
    """A viewer with one 3-D panel showing MESH_ID's mesh and SKELETON_ID's skeleton, seen down the
    z axis through an orthographic projection (x right, y down, PROJECTION_SCALE voxels per panel
    height, the panel's centre at the middle of the volume), without the cross sections: only the
    mesh and the skeleton are drawn over the background."""
    viewer = ng.Viewer()
    url = f"dvid://{node.url}/{uuid}/labels"
    with viewer.txn() as s:
        s.dimensions = ng.CoordinateSpace(names=["x", "y", "z"], units="nm", scales=[8, 8, 8])
        s.position = [N / 2, N / 2, N / 2]
        s.projection_orientation = [0, 0, 0, 1]
        s.projection_scale = PROJECTION_SCALE
        s.projection_background_color = SENTINEL
        s.show_slices = False
        s.show_axis_lines = False
        s.show_scale_bar = False
        s.show_default_annotations = False
        for name, segment, colour, off in (("meshes", MESH_ID, MESH_COLOUR, "skeletons"),
                                           ("skeletons", SKELETON_ID, SKELETON_COLOUR, "meshes")):
            layer = ng.SegmentationLayer(source=ng.LayerDataSource(url=url, subsources={off: False}),
                                         segments=[segment], segment_colors={segment: colour})
            layer.skeleton_rendering.line_width3d = SKELETON_LINE_PX
            s.layers[name] = layer
        s.layout = ng.row_layout([ng.LayerGroupViewer(
            layers=["meshes", "skeletons"],
            layout=ng.DataPanelLayout(type="3d", orthographic_projection=True))])
    return viewer


PANEL = ["meshes", "skeletons"]


def expected_pixels(report: dict):
    """Where the 3-D panel should show a voxel coordinate (x, y): a function to screenshot
    (column, row) inside the panel's crop, and the panel's pixels per voxel."""
    p = panel(report, PANEL)
    x0, y0, _, _ = p["crop"]
    k = p["height"] / PROJECTION_SCALE
    cx, cy = p["x"] + p["width"] / 2, p["y"] + p["height"] / 2

    def to_px(x, y):
        return cx + (np.asarray(x) - N / 2) * k - x0, cy + (np.asarray(y) - N / 2) * k - y0

    return to_px, k


def check_meshes_and_skeletons(report: dict, node: Node, uuid: str):
    info = summary(report)
    check_loaded(report, node.url, uuid)
    # Neuroglancer found `labels_meshes` and `labels_skeletons` and offers them as subsources that
    # are on by default (each layer here turned one off).
    for layer in report["layers"]:
        subs = {x["id"]: x for x in layer["sources"][0]["subsources"] or []}
        for sub in ("default", "meshes", "skeletons"):
            assert sub in subs and subs[sub]["default"], f"{layer['name']}: no default subsource {sub}\n{info}"
        want = {"meshes": layer["name"] == "meshes", "skeletons": layer["name"] == "skeletons"}
        assert {k: subs[k]["enabled"] for k in want} == want, f"{layer['name']}: {subs}\n{info}"
    # The mesh and the skeleton were read from their keys, and nothing else from these instances.
    for instance, key in (("labels_meshes", f"{MESH_ID}.ngmesh"), ("labels_skeletons", f"{SKELETON_ID}_swc")):
        url = f"{node.url}/api/node/{uuid}/{instance}/key/{key}"
        got = [r for r in report["requests"] if r["url"].split("?")[0] == url]
        assert got and all(r["status"] == 200 for r in got), f"want GET {url} answered 200\n{info}"
        others = [r["url"] for r in report["requests"] if f"/{instance}/" in r["url"] and r not in got]
        assert not others, f"unexpected requests to {instance}: {others}\n{info}"

    rgb = panel_pixels(report, PANEL).astype(int)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    sentinel = np.array([int(SENTINEL[i:i + 2], 16) for i in (1, 3, 5)])
    background = np.all(np.abs(rgb - sentinel) <= 16, axis=-1)
    mesh = (g >= 40) & (r * 2 < g) & (b * 2 < g)  # MESH_COLOUR, lit: (0, g, 0)
    skeleton = (r >= 150) & (g >= 150) & (b < 100)  # SKELETON_COLOUR, unlit
    to_px, k = expected_pixels(report)
    rows, cols = np.mgrid[0:rgb.shape[0], 0:rgb.shape[1]] + 0.5
    corners = rows < 80  # the panel's widgets (the axes' names, the maximise button)
    mesh &= ~corners
    skeleton &= ~corners

    # The mesh covers the blob's outline as seen down z (an ellipse with the blob's x and y radii),
    # and nothing outside it: in nanometres, divided by the voxel size, it landed on its blob.
    (bx, by, _), (rx, ry, _) = MESH_BLOB
    ex, ey = to_px(bx + 0.5, by + 0.5)

    def ellipse(grow_px):
        return ((cols - ex) / (rx * k + grow_px)) ** 2 + ((rows - ey) / (ry * k + grow_px)) ** 2 < 1

    inside, outside = ellipse(-3), ~ellipse(3)
    assert mesh.sum() > 0, f"no pixel in the mesh's colour {MESH_COLOUR}: the mesh is not drawn\n{info}"
    assert np.mean(mesh[inside]) > 0.97, (
        f"the mesh covers only {np.mean(mesh[inside]):.1%} of its blob's outline "
        f"({mesh.sum()} mesh pixels)\n{info}")
    assert np.sum(mesh & outside) < 0.01 * mesh.sum(), (
        f"{np.sum(mesh & outside)} mesh pixels outside its blob's outline\n{info}")
    # Lit as a surface (each triangle by its normal), not a flat disc.
    lit = g[inside]
    assert np.percentile(lit, 95) - np.percentile(lit, 5) > 60, (
        f"the mesh is not shaded as a surface: green {np.percentile(lit, 5):.0f}.."
        f"{np.percentile(lit, 95):.0f}\n{info}")

    # The skeleton: lines of its colour along each of its edges, and nowhere else.
    nodes = {n: (x, y) for n, x, y, _, _ in SKELETON_NODES}
    near = np.zeros_like(skeleton)
    for n, x, y, _, parent in SKELETON_NODES:
        if parent < 0:
            continue
        (ax, ay), (bx2, by2) = to_px(x, y), to_px(*nodes[parent])
        length = np.hypot(bx2 - ax, by2 - ay)
        t = np.clip(((cols - ax) * (bx2 - ax) + (rows - ay) * (by2 - ay)) / length**2, 0, 1)
        dist = np.hypot(cols - (ax + t * (bx2 - ax)), rows - (ay + t * (by2 - ay)))
        near |= dist <= SKELETON_LINE_PX
        # Every point of the edge (but its ends, where the lines meet) has the colour within a pixel.
        on_line = (dist <= 1) & (t > 0.1) & (t < 0.9)
        drawn = np.mean(skeleton[on_line]) if on_line.any() else 0
        assert drawn > 0.9, (f"the skeleton edge {n}-{parent} is drawn at {drawn:.0%} of its "
                             f"length ({skeleton.sum()} skeleton pixels)\n{info}")
    assert np.sum(skeleton & ~near) < 0.02 * skeleton.sum(), (
        f"{np.sum(skeleton & ~near)} skeleton pixels away from its edges\n{info}")
    # Nothing else is drawn: the rest of the panel is the background.
    rest = ~ellipse(3) & ~near & ~corners
    assert np.mean(background[rest]) > 0.995, (
        f"the panel shows {np.mean(~background[rest]):.2%} non-background pixels away from the mesh "
        f"and the skeleton\n{info}")


def test_meshes_and_skeletons(ng, node):
    """A segment's mesh from `labels_meshes` and another's skeleton from `labels_skeletons`, drawn
    in a 3-D panel where they belong, in their segments' colours."""
    need_browser()
    uuid = build_meshes_repo(node)
    viewer = open_3d_viewer(ng, node, uuid)
    report = shoot(viewer.get_viewer_url(), "meshes")
    check_meshes_and_skeletons(report, node, uuid)


# ----------------------------------------------------------------------------------------------
# The README's command: `view.py --demo`, as a newcomer runs it.

README_SECTION = "## View it in Neuroglancer"


def readme_demo_command() -> list[str]:
    """The `python .../view.py --demo` line of the ```console block in README.md's section, with this
    interpreter (the venv's) in place of the one the README names."""
    text = (ROOT / "README.md").read_text()
    if README_SECTION not in text:
        pytest.fail(f"README.md has no section {README_SECTION!r}")
    section = text.split(README_SECTION, 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```console\n(.*?)```", section, re.S)
    assert block, f"no ```console block in README.md's {README_SECTION!r}"
    pythons = []
    for line in block.group(1).splitlines():
        words = shlex.split(line.strip().removeprefix("$ "), comments=True)
        if words and re.fullmatch(r"(\S*/bin/)?python(3[.0-9]*)?", words[0]):
            pythons.append(words)
    demo = [w for w in pythons if "--demo" in w and any(x.endswith("view.py") for x in w)]
    assert len(demo) == 1, f"want one `python .../view.py --demo` line in the console block, got {pythons}"
    return [sys.executable, *demo[0][1:]]


def port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as dvid and tornado bind
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def with_free_ports(cmd: list[str]) -> tuple[list[str], str]:
    """The command with free ports in place of the README's if those are taken, and the node's
    HTTP address."""
    def option(name: str, default: str, free) -> str:
        value = cmd[cmd.index(name) + 1] if name in cmd else default
        if not port_free(int(value.rsplit(":", 1)[-1])):
            value = free()
            if name in cmd:
                cmd[cmd.index(name) + 1] = value
            else:
                cmd.extend([name, value])
        return value

    cmd = list(cmd)
    http_addr = option("--http", "127.0.0.1:8000", lambda: f"127.0.0.1:{free_port()}")
    option("--viewer-port", "8050", lambda: str(free_port()))
    return cmd, http_addr


def child_pids(pid: int) -> list[int]:
    found = []
    for d in pathlib.Path("/proc").glob("[0-9]*"):
        try:
            if int((d / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(d.name))
        except (OSError, ValueError, IndexError):
            continue
    return found


def check_overlay(report: dict):
    """The demo's viewer: an xy panel and a 3-D panel, each with both layers. In the xy panel the
    grayscale shows through grey where label 0 is, with its structure, and the segments are drawn
    in several colours over it (Neuroglancer blends them, which keeps their hue)."""
    from PIL import Image

    info = summary(report)
    panels = sorted(report["panels"], key=lambda p: p["x"])
    assert len(panels) == 2 and all(p["layers"] == ["grayscale", "labels"] for p in panels), info
    for p in panels:
        assert p["pixels"] > 100_000 and p["distinctColours"] >= 50 and p["lumaStd"] > 10, info
    x, y, w, h = panels[0]["crop"]
    with Image.open(report["screenshot"]) as im:
        rgb = np.asarray(im.convert("RGB"))[y:y + h, x:x + w].reshape(-1, 3).astype(int)
    sat = rgb.max(axis=1) - rgb.min(axis=1)
    background = rgb.max(axis=1) <= 2
    grey = rgb[(sat <= 4) & ~background]
    coloured = rgb[sat > 24]
    assert np.mean(background) < 0.4, f"the xy panel is mostly background ({np.mean(background):.1%})\n{info}"
    assert len(grey) > 0.15 * len(rgb) and grey[:, 0].std() > 10 and len(np.unique(grey[:, 0])) >= 50, \
        f"the xy panel shows no grayscale where label 0 is\n{info}"
    assert len(coloured) > 0.15 * len(rgb), f"the xy panel shows no segments ({len(coloured)} px)\n{info}"
    colours, counts = np.unique(coloured, axis=0, return_counts=True)
    hues = np.array([colorsys.rgb_to_hsv(*(c / 255))[0] for c in colours])
    share, _ = np.histogram(hues, bins=24, range=(0, 1), weights=counts / counts.sum())
    assert np.sum(share > 0.03) >= 4, f"the segments are not drawn in several colours: {share.round(3)}\n{info}"


def test_readme_view_command(ng):
    """README.md's `view.py --demo` serves a viewer that draws both layers of the demo, and
    Ctrl-C stops it and the node it started."""
    need_browser()
    cmd, http_addr = with_free_ports(readme_demo_command())
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    log = open(ARTIFACTS / "neuroglancer-readme-view.log", "w")
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=log, text=True)
    out = queue.Queue()
    threading.Thread(target=lambda: [out.put(line) for line in proc.stdout] + [out.put(None)],
                     daemon=True).start()
    lines, nodes = [], []
    try:
        deadline = time.time() + 180
        while not lines:
            line = out.get(timeout=max(0.1, deadline - time.time()))
            assert line is not None, f"{shlex.join(cmd)} exited ({proc.wait()}): see {log.name}"
            lines.append(line)
        m = re.fullmatch(r"Open (http://127\.0\.0\.1:\d+/v/\w+/)\n", lines[0])
        assert m, f"want `Open URL` first, got {lines[0]!r}"
        nodes = [p for p in child_pids(proc.pid)
                 if b"serve" in pathlib.Path(f"/proc/{p}/cmdline").read_bytes().split(b"\0")]
        assert len(nodes) == 1, f"view.py should run one dvid node, runs {nodes}"

        report = shoot(m.group(1), "readme")
        source = report["layers"][0]["sources"][0]["url"] if report["layers"] else ""
        uuid = re.search(r"/([0-9a-f]{32})/", source)
        assert uuid, f"no version in the layer source {source!r}\n{summary(report)}"
        chunk_urls = check_loaded(report, f"http://{http_addr}", uuid.group(1))
        for name in ("grayscale", "labels"):  # 4 screen pixels per voxel: level 0
            assert any(f"/{name}/raw/" in u for u in chunk_urls), f"no chunk of {name}\n{summary(report)}"
        check_overlay(report)

        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0, f"view.py exited {proc.returncode} on SIGINT: see {log.name}"
        assert not pathlib.Path(f"/proc/{nodes[0]}").exists(), "the dvid node outlived view.py"
        with pytest.raises(OSError):
            host, port = http_addr.rsplit(":", 1)
            socket.create_connection((host, int(port)), timeout=2).close()
        while (line := out.get(timeout=10)) is not None:
            lines.append(line)
        assert len(lines) == 1, f"view.py printed more than its `Open` line: {lines}"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pid in nodes:
            if pathlib.Path(f"/proc/{pid}").exists():
                os.kill(pid, signal.SIGKILL)
        log.close()


# ----------------------------------------------------------------------------------------------
# labelmap: supervoxels drawn as their bodies, before and after a merge.
#
# For a labelmap Neuroglancer reads `MaxDownresLevel` from the instance's Extended info and asks
# `raw/0_1_2/...?compression=googlegzip&scale=k` of the instance itself for each level k.

MERGED = (ngview.LABEL_IDS[0], ngview.LABEL_IDS[1])  # blobs at (36, 36) and (96, 34)


def build_labelmap_repo(node: Node) -> tuple[str, str]:
    """A labelmap `segmentation` of labels_volume()'s blobs as supervoxels with one level,
    committed, and a child version that merges the MERGED bodies. Returns (root, child)."""
    root = node.cli("repo", "new", "--alias", "proofreading", "--description", "labelmap").split()[-1]
    node.cli("instance", root, "labelmap", "segmentation", "--block-size", "64,64,64")
    post_raw(node, root, "segmentation", labels_volume())
    node.cli("downres", root, "segmentation", "--levels", "1")
    extended = get_json(f"{node.api}/node/{root}/segmentation/info")["Extended"]
    assert extended["MaxDownresLevel"] == 1, extended
    node.cli("commit", root, "--note", "supervoxels")
    child = node.cli("newversion", root).split()[-1]
    url = f"{node.api}/node/{child}/segmentation/merge"
    status, _, body = http("POST", url, json.dumps(list(MERGED)).encode())
    assert status == 200, f"POST {url}: {status} {body[:300]!r}"
    return root, child


def open_labelmap_viewer(ng, node: Node, uuid: str):
    viewer = ng.Viewer()
    with viewer.txn() as s:
        cross_section_view(ng, s)
        s.layers["segmentation"] = ng.SegmentationLayer(
            source=f"dvid://{node.url}/{uuid}/segmentation", selected_alpha=1.0)
        s.layout = ng.row_layout([ng.LayerGroupViewer(layers=["segmentation"], layout="xy")])
    return viewer


def body_colours(report: dict, bodies: dict) -> dict:
    """The colour each supervoxel of the middle plane is drawn in, checked to be one colour per
    supervoxel, the background where the label is 0. `bodies` maps supervoxel to body."""
    info = summary(report)
    sentinel = np.array([int(SENTINEL[i:i + 2], 16) for i in (1, 3, 5)])
    iy, ix, rgb = sample_panel(report, "segmentation", 0)
    want = labels_volume()[N // 2][iy, ix]
    assert len(want) > 2000, f"too few samples\n{info}"
    is_bg = np.all(np.abs(rgb.astype(int) - sentinel) <= 16, axis=1)
    assert np.mean(is_bg[want == 0]) > 0.98, f"label 0 is not transparent\n{info}"
    colours = {}
    for sv in np.unique(want[want != 0]):
        c, n = np.unique(rgb[want == sv], axis=0, return_counts=True)
        assert n.max() / n.sum() > 0.98, f"supervoxel {sv} is drawn in several colours\n{info}"
        colours[int(sv)] = tuple(c[n.argmax()])
    by_body = {}
    for sv, c in colours.items():
        by_body.setdefault(bodies[sv], set()).add(c)
    assert all(len(c) == 1 for c in by_body.values()), f"a body in several colours: {by_body}\n{info}"
    firsts = [next(iter(c)) for c in by_body.values()]
    assert len(set(firsts)) == len(firsts), f"bodies share a colour: {by_body}\n{info}"
    return colours


def test_labelmap_before_and_after_a_merge(ng, node):
    """A labelmap layer draws each body in its own colour at the locked version, and at a child that
    merged two bodies draws both in one colour, the rest as before, read through googlegzip and
    `scale`."""
    need_browser()
    root, child = build_labelmap_repo(node)
    identity = {sv: sv for sv in ngview.LABEL_IDS}
    merged = {**identity, MERGED[1]: MERGED[0]}
    shots = {}
    for name, uuid, bodies in (("labelmap-root", root, identity), ("labelmap-merged", child, merged)):
        viewer = open_labelmap_viewer(ng, node, uuid)
        report = shoot(viewer.get_viewer_url(), name)
        chunk_urls = check_loaded(report, node.url, uuid)
        raw = [u for u in chunk_urls if "/segmentation/raw/" in u]
        assert raw and all("compression=googlegzip&scale=" in u for u in raw), summary(report)
        assert any("scale=0" in u for u in raw), f"level 0 never read\n{summary(report)}"
        shots[name] = body_colours(report, bodies)
    before, after = shots["labelmap-root"], shots["labelmap-merged"]
    assert before[MERGED[0]] != before[MERGED[1]]
    assert after[MERGED[1]] == after[MERGED[0]] == before[MERGED[0]], (before, after)
    for sv in ngview.LABEL_IDS:
        if sv not in MERGED:
            assert after[sv] == before[sv], f"supervoxel {sv} changed colour: {before} {after}"
