# tsm-book build glue. The commands a reader needs:
#   make book   - install, execute every notebook with papermill (default parameters), build the site
#   make test   - install, run the test suite
#   make lab    - install, open the chapters (notebooks/) in JupyterLab, which renders their MyST
# Each creates/refreshes the virtual environment in .venv itself.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp

.PHONY: install system-deps test book lab clean-book

# tsmlib (the library, with the sanity check's scikit-image and the test tools) and tsmbook (the book's
# own package, book/pyproject.toml: figures, house style, jupyter-book, papermill) with its `lab` extra
# (JupyterLab and jupyterlab-myst: `make lab`, and the test that opens a chapter in JupyterLab), editable.
$(STAMP): pyproject.toml book/pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[sanity,test]' -e './book[lab]'
	touch $(STAMP)

# The Debian packages of tools/system-packages.txt, only those missing (needs root or password-less sudo;
# otherwise it stops with the exact apt-get command to run).
system-deps:
	bash tools/install_system_deps.sh

install: system-deps $(STAMP)

test: install
	$(PY) -m pytest -q

# Execute every notebook with the default parameters (unchanged ones are cached), then build the
# offline site into _build/html (warnings are errors).
book: install
	$(PY) tools/run_notebooks.py --params params/default.yaml --output-dir book/executed
	$(VENV)/bin/jupyter-book build . -W --keep-going

# The chapters for a student: JupyterLab on notebooks/, with jupyterlab-myst rendering the chapters' MyST
# (cross-references, math, folded solutions). Run a chapter top to bottom: it reads as its page on the site.
# (--allow-root only where make runs as root, e.g. in a container: JupyterLab refuses root otherwise)
lab: install
	$(VENV)/bin/jupyter lab notebooks/ $(if $(filter 0,$(shell id -u)),--allow-root)

clean-book:
	rm -rf _build book/executed
