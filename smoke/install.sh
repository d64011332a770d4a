#!/usr/bin/env bash
# Build both distributions, check their metadata, install the sessionwise wheel into a fresh
# virtualenv outside the repository, and run the smoke app against it (`make smoke`).
set -euo pipefail
cd "$(dirname "$0")/.."
UV=${UV:-uv}
dist=$(mktemp -d)
work=$(mktemp -d)
trap 'rm -rf "$dist" "$work"' EXIT
$UV build --quiet --package sessionwise --out-dir "$dist"
$UV build --quiet --package taskyard --out-dir "$dist"
python3 smoke/check_dists.py "$dist"
cp smoke/smoke_app.py "$work/"
wheel=$(ls "$dist"/sessionwise-*.whl)
cd "$work"  # nothing of the repository on the path from here on
$UV venv --quiet --no-project --python "${UV_PYTHON:-python3}" "$work/venv"
VIRTUAL_ENV="$work/venv" $UV pip install --quiet --no-config "${wheel}[fastapi,sqlite]" httpx
"$work/venv/bin/python" -I smoke_app.py
