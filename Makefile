# Corelab: `make run` to use it, `make test` to check it. Both build on `make install`.
PY ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
STATIC_SOURCES := $(shell find static templates -type f -not -path 'static/build/*' 2>/dev/null)
# the image viewer's sources, bundled by Vite into static/build/ (generated, not in git)
VIEWER_SOURCES := $(shell find frontend -type f 2>/dev/null) vite.config.js
# Debian packages the tests drive as real peers: the browser for Playwright, DCMTK's DICOM clients,
# and dicom3tools' dciodvfy, the IOD validator de-identified output is checked with; Pango, HarfBuzz's
# subsetter and DejaVu fonts for WeasyPrint's audit PDF exports (chromium pulls them in today, but the
# PDF export must not depend on the browser being installed).
TEST_DEBS := chromium dcmtk dicom3tools tesseract-ocr libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0 fonts-dejavu-core

.PHONY: install run test lint bench debs

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@

node_modules/.package-lock.json: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error

static/build/viewer.js: node_modules/.package-lock.json $(VIEWER_SOURCES)
	npm run build --silent

staticfiles/staticfiles.json: $(STAMP) node_modules/.package-lock.json static/build/viewer.js $(STATIC_SOURCES)
	SECRET_KEY=collectstatic $(BIN)/python manage.py collectstatic --noinput -v0

install: $(STAMP) node_modules/.package-lock.json staticfiles/staticfiles.json

run: install
	$(BIN)/python -m config.run

lint: install
	$(BIN)/ruff check .
	$(BIN)/lint-imports

# apt-get only what is missing, so a prepared machine pays nothing
debs:
	@missing=""; for pkg in $(TEST_DEBS); do dpkg -s $$pkg >/dev/null 2>&1 || missing="$$missing $$pkg"; done; \
	if [ -n "$$missing" ]; then \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  echo "installing Debian packages:$$missing"; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

# pytest-xdist workers; each has its own test database, Redis database and file stores (tests/services.py).
# TEST_WORKERS=0 runs the suite in this one process.
TEST_WORKERS ?= $(shell nproc 2>/dev/null || echo 2)

test: lint debs
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist worksteal

bench: install
	@for script in bench/*.py; do echo "== $$script"; $(BIN)/python $$script || exit 1; done
