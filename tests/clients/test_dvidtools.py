"""dvidtools 0.6.0 (flyconnectome's `dvid` package) against a real node.

dvidtools reads; it has no calls that create repos or instances or write voxels, so those are set up
with plain HTTP. Every request it sends carries `?u=<user>&app=dvidtools`. Instance names are its
defaults from `dvid.config`: `segmentation` (labels), `segmentation_annotations`,
`segmentation_skeletons`, `segmentation_meshes`, `segmentation_meshes_mutid`, `bookmarks`, `rois`,
`roi_data` (keyvalue). The calls that need the labelmap, annotation, labelsz or roi types are not here.
"""

import json

import numpy as np
import pytest

import dvid as dt
from dvid import fetch

from conftest import http


def call(method, url, body=None):
    if isinstance(body, (dict, list)):
        body = json.dumps(body).encode()
    elif isinstance(body, str):
        body = body.encode()
    status, _, out = http(method, url, body)
    assert status == 200, (method, url, status, out)
    return out


def call_json(method, url, body=None):
    return json.loads(call(method, url, body))


def new_repo(node, alias="dvidtools", description="dvidtools client test"):
    return call_json("POST", f"{node.api}/repos", {"alias": alias, "description": description})["root"]


def new_instance(node, uuid, typename, name):
    call("POST", f"{node.api}/repo/{uuid}/instance", {"typename": typename, "dataname": name})


def commit(node, uuid, note="done"):
    call("POST", f"{node.api}/node/{uuid}/commit", {"note": note})


def newversion(node, uuid):
    return call_json("POST", f"{node.api}/node/{uuid}/newversion", {})["child"]


def branch(node, uuid, name):
    return call_json("POST", f"{node.api}/node/{uuid}/branch", {"branch": name})["child"]


@pytest.fixture
def dvt(node):
    """A fresh node with dvidtools' globals pointing at it (and restored after)."""
    saved = {k: fetch.__dict__.get(k) for k in ("server", "node", "user")}
    root = new_repo(node)
    dt.setup(server=node.url, node=root, user="tester")
    fetch.get_segmentation_info.cache_clear()
    yield node, root
    for k, v in saved.items():
        if v is None:
            fetch.__dict__.pop(k, None)
        else:
            fetch.__dict__[k] = v
    fetch.get_segmentation_info.cache_clear()


# --- repos and versions -------------------------------------------------------------------------


def test_list_projects(dvt):
    node, root = dvt
    other = new_repo(node, alias="second", description="another")
    df = dt.list_projects()
    assert len(df) == 2
    assert set(df["Root"]) == {root, other}
    by_root = df.set_index("Root")
    assert by_root.loc[root, "Alias"] == "dvidtools"
    assert by_root.loc[other, "Alias"] == "second"
    assert by_root.loc[other, "Description"] == "another"
    assert root in by_root.loc[root, "DAG"]["Nodes"]


def test_master_node_and_branch_history(dvt):
    node, root = dvt
    # A single unlocked root: it is the master leaf.
    assert dt.get_branch_history(root) == [root]
    assert dt.get_master_node(root) == root

    commit(node, root)
    c1 = newversion(node, root)
    assert dt.get_branch_history(root) == [c1, root]
    commit(node, c1)
    c2 = newversion(node, c1)
    # Leaf first, back to the root; any UUID of the repo (or a unique prefix) names it.
    assert dt.get_branch_history(root) == [c2, c1, root]
    assert dt.get_branch_history(c1) == [c2, c1, root]
    assert dt.get_branch_history(c2[:8]) == [c2, c1, root]
    assert dt.get_master_node(root) == c2
    assert dt.get_master_node(c1) == c2

    # A side branch does not move master.
    side = branch(node, c1, "proofread")
    assert dt.get_master_node(root) == c2
    assert dt.get_branch_history(side) == [c2, c1, root]
    commit(node, c2)
    c3 = newversion(node, c2)
    assert dt.get_master_node(side) == c3
    assert dt.get_branch_history(root) == [c3, c2, c1, root]


def test_named_branch_versions(dvt):
    """dvidtools' get_branch_history always asks for `master` (its `branch` argument is unused), so
    the named-branch answers it would parse are checked on the endpoint itself."""
    node, root = dvt
    commit(node, root)
    c1 = newversion(node, root)
    commit(node, c1)
    side = branch(node, c1, "proofread")
    commit(node, side)
    side2 = newversion(node, side)
    api = f"{node.api}/repo/{root}/branch-versions"
    # A named branch runs from its leaf through its fork point to the root.
    assert call_json("GET", f"{api}/proofread") == [side2, side, c1, root]
    assert call_json("GET", f"{api}/master") == [c1, root]
    # DVID answers an unknown branch with an empty list.
    assert call_json("GET", f"{api}/nosuchbranch") == []
    assert dt.get_branch_history(side2, branch="proofread") == [c1, root]


# --- labels -------------------------------------------------------------------------------------


def test_segmentation_info(dvt):
    node, root = dvt
    new_instance(node, root, "labelblk", "segmentation")
    info = fetch.get_segmentation_info(node.url, root)
    assert info["Base"]["TypeName"] == "labelblk"
    assert info["Base"]["Name"] == "segmentation"
    assert info["Extended"]["BlockSize"] == [32, 32, 32]
    assert info["Extended"]["VoxelSize"] == [8, 8, 8]


def test_labels_at_points(dvt):
    node, root = dvt
    new_instance(node, root, "labelblk", "segmentation")
    rng = np.random.default_rng(3)
    # (z, y, x) = 20 x 40 x 70 labels at offset x=5, y=10, z=15: written with DVID's raw POST,
    # since dvidtools has no call that writes voxels.
    labels = rng.integers(1, 2**53, size=(20, 40, 70), dtype=np.uint64)
    labels[::3, ::5, ::7] = 0
    call("POST", f"{node.api}/node/{root}/segmentation/raw/0_1_2/70_40_20/5_10_15", labels.tobytes())

    pts = rng.integers(0, 100, size=(500, 3))  # x, y, z; many fall outside the written box
    pts = np.vstack([pts, [[5, 10, 15], [74, 49, 34], [75, 49, 34], [4, 10, 15]]])

    def expected(p):
        x, y, z = p
        if 5 <= x < 75 and 10 <= y < 50 and 15 <= z < 35:
            return int(labels[z - 15, y - 10, x - 5])
        return 0

    want = np.array([expected(p) for p in pts], dtype=np.uint64)
    got = dt.locs_to_ids(pts, progress=False)
    assert got.shape == (len(pts),)
    np.testing.assert_array_equal(got.astype(np.uint64), want)
    # In chunks of 64 points: the same answer.
    np.testing.assert_array_equal(dt.locs_to_ids(pts, chunk_size=64, progress=False).astype(np.uint64), want)

    # The single-point call (GET .../label/x_y_z -> {"Label": n}).
    old_get_body_id = fetch.__dict__["__old_get_body_id"]
    for p in pts[-6:]:
        assert old_get_body_id(list(p)) == expected(p)


def test_labels_per_version(dvt):
    node, root = dvt
    new_instance(node, root, "labelblk", "segmentation")
    ones = np.full((32, 32, 32), 1, dtype=np.uint64)
    call("POST", f"{node.api}/node/{root}/segmentation/raw/0_1_2/32_32_32/0_0_0", ones.tobytes())
    commit(node, root)
    child = newversion(node, root)
    twos = np.full((8, 8, 8), 2, dtype=np.uint64)
    call("POST", f"{node.api}/node/{child}/segmentation/raw/0_1_2/8_8_8/0_0_0", twos.tobytes())

    pts = [[0, 0, 0], [7, 7, 7], [8, 8, 8], [31, 31, 31], [32, 0, 0]]
    assert dt.locs_to_ids(pts, node=root, progress=False).tolist() == [1, 1, 1, 1, 0]
    assert dt.locs_to_ids(pts, node=child, progress=False).tolist() == [2, 2, 1, 1, 0]
    master = dt.get_master_node(root)
    assert master == child
    assert dt.locs_to_ids(pts, node=master, progress=False).tolist() == [2, 2, 1, 1, 0]


# --- keyvalue-backed calls ----------------------------------------------------------------------


def test_body_annotations(dvt):
    node, root = dvt
    new_instance(node, root, "keyvalue", "segmentation_annotations")
    assert dt.get_annotation(1234, verbose=False) == {}
    dt.edit_annotation(1234, {"status": "Traced", "name": "DA1_lPN"}, verbose=False)
    assert dt.get_annotation(1234) == {"status": "Traced", "name": "DA1_lPN"}
    # An edit merges into what is stored.
    dt.edit_annotation(1234, {"status": "Roughly traced", "user": "tester"}, verbose=False)
    assert dt.get_annotation(1234) == {"status": "Roughly traced", "name": "DA1_lPN", "user": "tester"}
    assert dt.get_annotation("1234") == dt.get_annotation(1234)
    # The value is the JSON dvidtools posted, under the body ID as key.
    assert call_json("GET", f"{node.api}/node/{root}/segmentation_annotations/keys") == ["1234"]

    # Versions: the child sees the parent's annotation; its edit stays in the child.
    commit(node, root)
    child = newversion(node, root)
    assert dt.get_annotation(1234, node=child)["name"] == "DA1_lPN"
    dt.edit_annotation(1234, {"name": "DA1_vPN"}, node=child, verbose=False)
    assert dt.get_annotation(1234, node=child)["name"] == "DA1_vPN"
    assert dt.get_annotation(1234, node=root)["name"] == "DA1_lPN"


def test_assignment_status(dvt):
    node, root = dvt
    new_instance(node, root, "keyvalue", "bookmarks")
    kv = f"{node.api}/node/{root}/bookmarks/key"
    stored = {
        "500_500_500": {"checked": True},
        "510_505_500": {"checked": False, "user": "a"},
        "450_450_450": {"checked": True, "edge": 1},  # in the key range, on the window's edge
        "600_500_500": {"checked": True, "far": 1},  # outside the key range
    }
    for k, v in stored.items():
        call("POST", f"{kv}/{k}", v)
    assert dt.get_assignment_status((500, 500, 500)) == {"checked": True}
    assert dt.get_assignment_status((510, 505, 500)) == {"checked": False, "user": "a"}
    # A missing key: dvidtools returns None when the 404's text says "not found".
    assert dt.get_assignment_status((1, 2, 3)) is None
    # A window: keyrange 450_450_450..550_550_550, then dvidtools keeps the points strictly inside.
    got = dt.get_assignment_status((500, 500, 500), window=(100, 100, 100))
    assert got == [{"checked": True}, {"checked": False, "user": "a"}]
    assert dt.get_assignment_status((700, 700, 700), window=(10, 10, 10)) == []
    # Keys compare as strings, so a window's start can sort after its end ("5_15_25" > "15_25_35"):
    # DVID answers that keyrange with [] (its range scan starts past the end), not an error.
    call("POST", f"{kv}/10_20_30", {"checked": True})
    assert dt.get_assignment_status((10, 20, 30), window=(10, 10, 10)) == []
    assert call_json("GET", f"{node.api}/node/{root}/bookmarks/keyrange/5_15_25/15_25_35") == []


SWC = """# {"mutation id": 77}
# made by hand
1 1 10.0 20.0 30.0 2.5 -1
2 0 11.0 20.0 30.0 1.5 1
3 0 12.5 21.0 31.0 1.0 2
4 0 11.0 25.0 30.0 1.0 2
"""


def test_skeletons(dvt):
    node, root = dvt
    new_instance(node, root, "keyvalue", "segmentation_skeletons")
    call("POST", f"{node.api}/node/{root}/segmentation_skeletons/key/42_swc", SWC)

    assert dt.has_skeleton([42, 43], progress=False).tolist() == [True, False]
    assert dt.has_skeleton(42, progress=False).tolist() == [True]
    (swc,) = dt.get_skeletons(42, output="swc", on_error="raise", progress=False)
    assert swc.mutation_id == 77
    assert swc["node_id"].tolist() == [1, 2, 3, 4]
    assert swc["parent_id"].tolist() == [-1, 1, 2, 2]
    np.testing.assert_allclose(swc[["x", "y", "z"]].values, [[10, 20, 30], [11, 20, 30], [12.5, 21, 31], [11, 25, 30]])
    np.testing.assert_allclose(swc["radius"].values, [2.5, 1.5, 1.0, 1.0])
    assert dt.get_skeletons(43, output="swc", on_error="skip", progress=False) == []
    assert dt.get_skeleton_mutation(42) == 77
    # Missing: dvidtools looks for "not found" in the 404's text.
    assert dt.get_skeleton_mutation(43) is None

    # save_to writes the stored SWC byte for byte.
    assert dt.get_skeletons(42, output=None, save_to=str(node.workdir), progress=False) == [None]
    assert (node.workdir / "42.swc").read_text() == SWC


def tetra_ngmesh():
    verts = np.array([[0, 0, 0], [8, 0, 0], [0, 8, 0], [0, 0, 8]], dtype=np.float32)
    faces = np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]], dtype=np.uint32)
    return verts, faces, np.uint32(len(verts)).tobytes() + verts.tobytes() + faces.tobytes()


def test_meshes(dvt):
    node, root = dvt
    new_instance(node, root, "keyvalue", "segmentation_meshes")
    new_instance(node, root, "keyvalue", "segmentation_meshes_mutid")
    verts, faces, ng = tetra_ngmesh()
    call("POST", f"{node.api}/node/{root}/segmentation_meshes/key/42.ngmesh", ng)
    call("POST", f"{node.api}/node/{root}/segmentation_meshes_mutid/key/42", "77")

    assert dt.has_mesh([42, 43], progress=False).tolist() == [True, False]
    (m,) = dt.get_meshes(42, output="trimesh", on_error="raise", progress=False)
    assert m.mutation_id == 77
    assert sorted(map(tuple, m.vertices.tolist())) == sorted(map(tuple, verts.tolist()))
    assert len(m.faces) == 4
    assert m.is_watertight and m.volume == pytest.approx(8**3 / 6)
    assert dt.get_meshes([43], output="trimesh", on_error="skip", progress=False) == []


def test_rois(dvt):
    node, root = dvt
    new_instance(node, root, "keyvalue", "rois")
    new_instance(node, root, "keyvalue", "roi_data")
    assert dt.get_available_rois() == []
    obj = "v 0 0 0\nv 10 0 0\nv 0 10 0\nv 0 0 10\nf 1 3 2\nf 1 2 4\nf 1 4 3\nf 2 3 4\n"
    for name in ["LH(R)", "AL-DC3"]:
        call("POST", f"{node.api}/node/{root}/rois/key/{name}", {"->": {"type": "key", "instance": "roi_data", "key": f"{name}_mesh"}})
        call("POST", f"{node.api}/node/{root}/roi_data/key/{name}_mesh", obj)
    assert dt.get_available_rois() == ["AL-DC3", "LH(R)"]
    mesh = dt.get_roi("AL-DC3", form="MESH")
    assert sorted(map(tuple, mesh.vertices.tolist())) == [(0, 0, 0), (0, 0, 10), (0, 10, 0), (10, 0, 0)]
    assert len(mesh.faces) == 4
    path = node.workdir / "lh.obj"
    assert dt.get_roi("LH(R)", form="MESH", save_to=str(path)) is None
    assert path.read_text() == obj
