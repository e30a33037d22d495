"""Schemathesis hooks for .ci/schemathesis.sh.

Most generated raw writes get a small size and a body of exactly the right length, so that the tester
reaches the node's write path (read-modify-write of partial blocks) instead of stopping at the
body-length check every time. The rest go out as generated, to keep testing the refusals.
"""

import random

import schemathesis

# Bytes per voxel of the instances the script seeds.
VOXEL_BYTES = {"gray": 1, "seg": 8}
RAW = "/api/node/{uuid}/{data}/raw/{dims}/{size}/{offset}"


@schemathesis.hook
def map_case(context, case):
    if case.method.upper() != "POST" or case.path != RAW:
        return case
    vb = VOXEL_BYTES.get(case.path_parameters.get("data"))
    if vb is None:
        return case
    # Seeded by the generated case, so a run replays with the same schemathesis seed.
    rng = random.Random(repr(sorted(case.path_parameters.items())) + repr(case.body))
    if rng.random() < 0.2:
        return case
    size = [rng.randint(1, 40) for _ in range(3)]
    offset = [rng.randint(-40, 80) for _ in range(3)]
    case.path_parameters["dims"] = "0_1_2"
    case.path_parameters["size"] = "_".join(map(str, size))
    case.path_parameters["offset"] = "_".join(map(str, offset))
    case.body = rng.randbytes(size[0] * size[1] * size[2] * vb)
    return case
