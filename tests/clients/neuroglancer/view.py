"""Shows dvid data in Neuroglancer, served by the neuroglancer package's viewer on 127.0.0.1.

  python tests/clients/neuroglancer/view.py --demo
      starts a dvid node in memory (HTTP on 127.0.0.1:8000, --http to change), writes a 128^3
      grayscale and labels volume with their levels (`dvid downres`), commits, writes a cube into a
      child version, and views the child.
  python tests/clients/neuroglancer/view.py --server http://127.0.0.1:8000 --uuid UUID \\
      --image grayscale --segmentation labels
      views a uint8blk and/or a labelblk instance of a running node.

Prints `Open URL` (the viewer, on port --viewer-port, default 8050) and serves until Ctrl-C, which
also stops the node that --demo started. Needs `pip install -r tests/clients/neuroglancer/requirements.txt`
(or just neuroglancer==2.41.2) and, for --demo, target/release/dvid (DVID_BIN overrides it).
"""

import argparse
import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error

import ngview

BIN = pathlib.Path(os.environ.get("DVID_BIN", pathlib.Path(__file__).resolve().parents[3] / "target/release/dvid"))


def fail(message: str):
    sys.exit(f"view.py: {message}")


def get(url: str):
    """(status, text) of a GET; fails clearly when nothing answers."""
    try:
        status, _, body = ngview.http("GET", url)
    except (urllib.error.URLError, OSError) as e:
        fail(f"no dvid node answers at {url.split('/api/')[0]} ({getattr(e, 'reason', e)}); "
             "start one (`dvid serve`) or pass --server URL")
    return status, body.decode(errors="replace").strip()


def start_node(http: str) -> subprocess.Popen:
    """`dvid serve --memory --http HTTP`, once its API answers; its output goes to a log file."""
    if not BIN.exists():
        fail(f"{BIN} is missing: build it with `cargo build --release -p dvid-node`")
    host, _, port = http.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=2).close()
    except (OSError, ValueError):
        pass
    else:
        fail(f"something already listens on {http}: stop it, or pass --http 127.0.0.1:PORT")
    log = tempfile.NamedTemporaryFile("w", prefix="dvid-view-", suffix=".log", delete=False)
    # In a session of its own: Ctrl-C reaches only view.py, which stops the node.
    node = subprocess.Popen([str(BIN), "serve", "--memory", "--http", http], stdout=log,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    node.log_path = log.name
    deadline = time.time() + 30
    while True:
        try:
            if ngview.http("GET", f"http://{http}/api/server/info")[0] == 200:
                return node
        except (urllib.error.URLError, OSError):
            pass
        if node.poll() is not None or time.time() > deadline:
            node.kill()
            node.wait()
            text = pathlib.Path(log.name).read_text()
            os.unlink(log.name)
            fail(f"dvid did not start on {http}:\n{text[-2000:]}")
        time.sleep(0.2)


def dvid(server: str, *args: str) -> str:
    out = subprocess.run([str(BIN), "--server", server, *args], capture_output=True, text=True)
    if out.returncode != 0:
        fail(f"dvid {' '.join(args)} failed: {out.stderr.strip()}")
    return out.stdout.strip()


def make_demo(server: str) -> str:
    """The demo repo; returns the child version's UUID."""
    root = dvid(server, "repo", "new", "--alias", "neuroglancer-demo").split()[-1]
    dvid(server, "instance", root, "uint8blk", "grayscale", "--block-size", "32,32,32")
    dvid(server, "instance", root, "labelblk", "labels", "--block-size", "64,64,64")
    ngview.post_raw(f"{server}/api", root, "grayscale", ngview.grayscale_volume())
    ngview.post_raw(f"{server}/api", root, "labels", ngview.labels_volume())
    for name in ("grayscale", "labels"):
        dvid(server, "downres", root, name)  # grayscale_1, grayscale_2, labels_1
    dvid(server, "commit", root, "--note", "demo volumes and their levels")
    child = dvid(server, "newversion", root).split()[-1]
    for name in ("grayscale", "labels"):
        vol, offset = ngview.change_cube(name)
        ngview.post_raw(f"{server}/api", child, name, vol, offset)
        dvid(server, "downres", child, name)  # the levels' blocks under the cube
    return child


def check_instance(server: str, uuid: str, name: str, option: str, typename: str):
    status, text = get(f"{server}/api/node/{uuid}/{name}/info")
    if status != 200:
        fail(f"{option} {name}: {text}")
    found = json.loads(text)["Base"]["TypeName"]
    if found != typename:
        fail(f"{option} {name}: {name} is a {found} instance; {option} takes a {typename}")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--demo", action="store_true", help="start a node in memory and view demo data in it")
    p.add_argument("--http", default="127.0.0.1:8000", help="with --demo: the node's HTTP address")
    p.add_argument("--server", default="http://127.0.0.1:8000", help="URL of the node to view")
    p.add_argument("--uuid", help="version to view")
    p.add_argument("--image", metavar="NAME", help="a uint8blk instance, shown as an image layer")
    p.add_argument("--segmentation", metavar="NAME", help="a labelblk instance, shown as a segmentation layer")
    p.add_argument("--viewer-port", type=int, default=8050, help="port of the viewer on 127.0.0.1")
    args = p.parse_args()
    try:
        ng = ngview.neuroglancer_for_dvid(args.viewer_port)
    except ImportError:
        fail("needs the neuroglancer package: pip install neuroglancer==2.41.2")

    # Ctrl-C (even when started with SIGINT ignored, as from a background job) and SIGTERM stop
    # the node too.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    node = None
    try:
        if args.demo:
            node = start_node(args.http)
            server = f"http://{args.http}"
            uuid, image, segmentation = make_demo(server), "grayscale", "labels"
        else:
            server = args.server.rstrip("/")
            server = server if "://" in server else "http://" + server
            status, text = get(f"{server}/api/server/info")
            if status != 200:
                fail(f"{server} does not look like a dvid node: GET /api/server/info answered {status}")
            if not args.uuid:
                fail("pass --uuid UUID (or --demo)")
            if not (args.image or args.segmentation):
                fail("pass --image NAME and/or --segmentation NAME")
            uuid, image, segmentation = args.uuid, args.image, args.segmentation
            if image:
                check_instance(server, uuid, image, "--image", "uint8blk")
            if segmentation:
                check_instance(server, uuid, segmentation, "--segmentation", "labelblk")

        try:
            viewer = ng.Viewer()
        except OSError as e:
            fail(f"cannot serve the viewer on 127.0.0.1:{args.viewer_port} ({e.strerror}): pass --viewer-port PORT")
        with viewer.txn() as s:
            if image:
                s.layers[image] = ng.ImageLayer(source=f"dvid://{server}/{uuid}/{image}")
            if segmentation:
                s.layers[segmentation] = ng.SegmentationLayer(source=f"dvid://{server}/{uuid}/{segmentation}")
            s.layout = "xy-3d"
            # Black, which also hides the zeros that Neuroglancer's DVID source draws past the end
            # of a level (it pads each level's extent to a multiple of 64 voxels).
            s.cross_section_background_color = "black"
            if args.demo:  # 8 nm voxels: 4 screen pixels per voxel, and the 3-D view tilted
                s.dimensions = ng.CoordinateSpace(names=["x", "y", "z"], units="nm", scales=[8, 8, 8])
                s.cross_section_scale = 0.25
                s.projection_scale = 300
                s.projection_orientation = [0.25, -0.2, 0.03, 0.95]
        print(f"Open {viewer.get_viewer_url()}", flush=True)
        while node is None or node.poll() is None:
            time.sleep(0.5)
        fail(f"the dvid node exited ({node.returncode}): see {node.log_path}")
    except KeyboardInterrupt:
        pass
    finally:
        if node is not None and node.poll() is None:
            node.terminate()
            try:
                node.wait(timeout=20)
            except subprocess.TimeoutExpired:
                node.kill()
                node.wait()
            os.unlink(node.log_path)


if __name__ == "__main__":
    main()
