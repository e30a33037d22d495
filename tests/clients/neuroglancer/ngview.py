"""What view.py and test_neuroglancer.py share: the demo volumes, writing them to a node, and the
Neuroglancer package set up to read dvid nodes anonymously. Needs numpy (and neuroglancer for
`neuroglancer_for_dvid`), nothing else."""

import urllib.error
import urllib.request

import numpy as np

N = 128  # the volumes are N^3 voxels
CHANGE = (slice(40, 88), slice(72, 120), slice(8, 56))  # z, y, x of the cube a child version rewrites
CHANGE_GRAY = 255  # brighter than anything in the original grayscale
CHANGE_LABEL = 77
LABEL_IDS = [1, 2, 3, 4_000_000_007, 2**40 + 5]  # past 32 bits too: labelblk is uint64


def grayscale_volume() -> np.ndarray:
    """uint8 [z, y, x]: a diagonal ramp (40..150) with three shaded bright spheres (<= 225) and a
    dark ring, so each xy plane has structure everywhere and nothing reaches CHANGE_GRAY."""
    z, y, x = np.mgrid[0:N, 0:N, 0:N].astype(np.float32)
    v = 40 + 70 * x / (N - 1) + 40 * y / (N - 1)
    for cx, cy, cz, r in [(40, 40, 64, 26), (92, 56, 60, 20), (70, 100, 70, 18)]:
        d = np.sqrt((x - cx) ** 2 + (y - cy) ** 2 + (z - cz) ** 2) / r
        v = np.where(d < 1, 225 - 90 * d**2, v)
    ring = np.abs(np.sqrt((x - 64) ** 2 + (y - 64) ** 2) - 56)
    v = np.where(ring < 3, 10, v)
    return np.clip(v, 0, 250).astype(np.uint8)


def labels_volume() -> np.ndarray:
    """uint64 [z, y, x]: five labelled blobs (ellipsoids) on background 0, covering about half of
    the middle xy plane."""
    z, y, x = np.mgrid[0:N, 0:N, 0:N].astype(np.float32)
    v = np.zeros((N, N, N), np.uint64)
    blobs = [(36, 36, 64, 30, 24, 40), (96, 34, 64, 24, 28, 40), (34, 96, 64, 28, 26, 40),
             (94, 94, 64, 26, 26, 40), (64, 64, 64, 16, 16, 30)]
    for label, (cx, cy, cz, rx, ry, rz) in zip(LABEL_IDS, blobs):
        inside = ((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2 + ((z - cz) / rz) ** 2 < 1
        v[inside] = label
    return v


def change_cube(instance: str) -> tuple[np.ndarray, tuple[int, int, int]]:
    """What a child version writes over CHANGE in `instance`, and where (x, y, z)."""
    z, y, x = CHANGE
    shape = (z.stop - z.start, y.stop - y.start, x.stop - x.start)
    vol = (np.full(shape, CHANGE_GRAY, np.uint8) if instance == "grayscale"
           else np.full(shape, CHANGE_LABEL, np.uint64))
    return vol, (x.start, y.start, z.start)


def http(method: str, url: str, body: bytes | None = None, headers: dict | None = None):
    """One request; returns (status, headers (case-insensitive), body bytes), never raising on 4xx/5xx (connection
    errors raise urllib.error.URLError)."""
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def post_raw(api: str, uuid: str, instance: str, vol: np.ndarray, offset=(0, 0, 0)):
    """Writes the [z, y, x] array `vol` at offset (x, y, z); `api` is http://HOST:PORT/api."""
    sz, sy, sx = vol.shape
    url = f"{api}/node/{uuid}/{instance}/raw/0_1_2/{sx}_{sy}_{sz}/{offset[0]}_{offset[1]}_{offset[2]}"
    status, _, body = http("POST", url, np.ascontiguousarray(vol).astype(vol.dtype.newbyteorder("<")).tobytes())
    if status != 200:
        raise RuntimeError(f"POST {url}: {status} {body[:300]!r}")


def neuroglancer_for_dvid(bind_port: int = 0):
    """The neuroglancer module, its viewer server to bind to 127.0.0.1:bind_port (0: any free port),
    with `dvid://` sources read anonymously. (The package's own DVID credentials provider wants a
    token for each server in DVID_CREDENTIALS and answers 401 otherwise, after which the page sends
    no DVID request at all.) Raises ImportError without the package."""
    import concurrent.futures

    import neuroglancer
    import neuroglancer.credentials_provider
    import neuroglancer.default_credentials_manager

    class Anonymous(neuroglancer.credentials_provider.CredentialsProvider):
        def get_new(self):
            f = concurrent.futures.Future()
            f.set_result({})
            return f

    neuroglancer.default_credentials_manager.default_credentials_manager.register(
        "DVID", lambda _parameters: Anonymous())
    neuroglancer.set_server_bind_address("127.0.0.1", bind_port)
    return neuroglancer
