#!/bin/bash
# Prints the path of a Python with matplotlib, for the benches' PNG plots. The virtualenv is
# a cache outside the repo (rebuildable from nothing), created once and reused; pip installs
# matplotlib from PyPI the first time only.
set -euo pipefail
CACHE=${GPUVM_CACHE:-$HOME/.cache/gpuvm}
VENV=$CACHE/venv-plot
if ! "$VENV/bin/python3" -c 'import matplotlib' 2>/dev/null; then
	rm -rf "$VENV"
	python3 -m venv "$VENV" >&2
	"$VENV/bin/pip" install --quiet --disable-pip-version-check 'matplotlib>=3.7,<4' >&2
fi
echo "$VENV/bin/python3"
