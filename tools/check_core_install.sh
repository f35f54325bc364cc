#!/usr/bin/env bash
# The library alone, as a user installs it: `pip install .` (no extras) into a fresh virtual environment,
# then every test that needs nothing but tsmlib's core dependencies, run against the installed copy.
#
#   bash tools/check_core_install.sh          (CI runs it: .ci/run, step "core install")
#
# It fails when tsmlib imports a package it does not declare, when its package data (the photo set) is
# missing from the wheel, or when a core path needs the book's package (tsmbook), seaborn or scikit-image.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$(pwd)"
venv="$(mktemp -d -t tsm-core-XXXXXX)"
trap 'rm -rf "$venv"' EXIT
python3 -m venv "$venv"
"$venv/bin/python" -m pip install -q --upgrade pip
"$venv/bin/python" -m pip install -q . pytest
"$venv/bin/python" - <<'PY'
import importlib.util
extra = [m for m in ("tsmbook", "seaborn", "skimage", "sklearn", "papermill", "jupyter_book") if importlib.util.find_spec(m)]
assert not extra, f"a core install brought packages it should not: {extra}"
import tsmlib, tsmlib.data
assert "site-packages" in tsmlib.__file__, tsmlib.__file__
print(f"core install: tsmlib from {tsmlib.__file__.split('site-packages')[0]}site-packages, "
      f"{len(tsmlib.data.load_photos())} photos as package data")
PY
# the tests of the library alone: those that import neither the book's package nor its tools
mapfile -t tests < <(grep -L -E "tsmbook|seaborn|papermill|nbformat|jupyter|run_notebooks" tests/test_*.py | sort)
echo "core install: ${#tests[@]} test files"
cd "$venv"  # not the checkout: `import tsmlib` must find the installed copy
"$venv/bin/python" -m pytest -q -p no:cacheprovider "${tests[@]/#/$root/}"
