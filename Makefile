# tsm-book build glue. The two commands a reader needs:
#   make book   - install, execute every notebook with papermill (default parameters), build the site
#   make test   - install, run the test suite
# Both create/refresh the virtual environment in .venv themselves.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp

.PHONY: install test book clean-book

$(STAMP): pyproject.toml
	bash tools/install_system_deps.sh
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[book,test]'
	touch $(STAMP)

install: $(STAMP)

test: install
	$(PY) -m pytest -q

clean-book:
	rm -rf _build
