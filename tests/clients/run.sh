#!/usr/bin/env bash
# The real-client tests: Neuroglancer 2.41.2 in headless Chromium, and the published Python
# clients (dvidtools, dvision, compressed-segmentation) against `dvid` nodes on loopback (in
# tests/clients), then the volume readers and writers (zarr, tensorstore, tifffile, numpy) with
# `dvid import`, `dvid export` and the Zarr view (in tests/volumes, in a venv of their own: zarr 3
# wants numpy 2, which dvision cannot take). Installs what they need (Debian's chromium, venvs from
# the pinned requirements, playwright-core from npm), builds the release binary, then runs pytest
# (arguments go to both runs). Screenshots and reports go to $DVID_ARTIFACTS (default
# target/client-artifacts).
set -euo pipefail
cd "$(dirname "$0")/../.."

if ! command -v chromium >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
VENV=${CLIENTS_VENV:-target/clients-venv}
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/pip" install -q --disable-pip-version-check \
  -r tests/clients/requirements.txt -r tests/clients/neuroglancer/requirements.txt
VOLUMES_VENV=${VOLUMES_VENV:-target/volumes-venv}
[ -x "$VOLUMES_VENV/bin/python" ] || python3 -m venv "$VOLUMES_VENV"
"$VOLUMES_VENV/bin/pip" install -q --disable-pip-version-check -r tests/volumes/requirements.txt
(cd tests/clients/neuroglancer && npm ci --no-audit --no-fund --loglevel=error)
cargo build --release -p dvid-node
export DVID_ARTIFACTS=${DVID_ARTIFACTS:-$PWD/target/client-artifacts}
mkdir -p "$DVID_ARTIFACTS"
# pytest exits 5 when a -k filter selects nothing in one of the two folders: that is no failure.
run() { "$@" || { rc=$?; [ "$rc" -eq 5 ] || exit "$rc"; }; }
run "$VENV/bin/python" -m pytest tests/clients -q -p no:cacheprovider "$@"
run "$VOLUMES_VENV/bin/python" -m pytest tests/volumes -q -p no:cacheprovider "$@"
