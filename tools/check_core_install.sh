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
"$venv/bin/python" -m pip install -q . pytest pytest-xdist
cd "$venv"  # not the checkout: `import tsmlib` must find the installed copy
"$venv/bin/python" - <<'PY'
import importlib.util
# (scikit-learn may come with grad-cam, which depends on it: not ours to forbid)
extra = [m for m in ("tsmbook", "seaborn", "skimage", "papermill", "jupyter_book") if importlib.util.find_spec(m)]
assert not extra, f"a core install brought packages it should not: {extra}"
import tsmlib, tsmlib.data
assert "site-packages" in tsmlib.__file__, tsmlib.__file__
print(f"core install: tsmlib from {tsmlib.__file__.split('site-packages')[0]}site-packages, "
      f"{len(tsmlib.data.load_photos())} photos as package data")
PY
# the tests of the library alone: those that import neither the book's package nor its tools
mapfile -t tests < <(cd "$root" && grep -L -E "tsmbook|seaborn|papermill|nbformat|jupyter|run_notebooks" tests/test_*.py | sort)
echo "core install: ${#tests[@]} test files"
# (the slow parity tests ran in `make test` already; -n 2: the machine's two cores)
"$venv/bin/python" -m pytest -q -p no:cacheprovider -n 2 -m "not slow" "${tests[@]/#/$root/}"
