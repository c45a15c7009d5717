# The two commands of the README: `make demo` and `make test`. Everything else is a helper.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Flink gets its own environment: PyFlink pins apache-beam, which needs pyarrow < 17, and Ray Data
# needs pyarrow >= 17, so the [flink] and [ray] extras cannot share one Python environment.
FLINK_VENV := .venv-flink
FLINK_STAMP := $(FLINK_VENV)/.installed
FLINK_TESTS := tests/unit/stream/test_flink.py tests/integration/test_pairs_flink.py
SUDO := $(shell [ "$$(id -u)" = "0" ] || echo sudo)

.PHONY: demo test lint format bench system-deps clean

$(BIN)/python:
	@command -v $(PY) >/dev/null 2>&1 || { echo "Python 3.11 is required ($(PY) not found); set PY=/path/to/python3.11"; exit 1; }
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# torch first, pinned: the CPU wheel; an unpinned resolve would pull a multi-GB CUDA build.
$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[full,test,ray]'
	touch $(STAMP)

$(FLINK_STAMP): pyproject.toml
	@command -v $(PY) >/dev/null 2>&1 || { echo "Python 3.11 is required ($(PY) not found); set PY=/path/to/python3.11"; exit 1; }
	[ -x $(FLINK_VENV)/bin/python ] || $(PY) -m venv $(FLINK_VENV)
	$(FLINK_VENV)/bin/pip install -q --upgrade pip
	$(FLINK_VENV)/bin/pip install -q -e '.[flink]' 'pytest>=8'
	touch $(FLINK_STAMP)

demo: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" bash scripts/demo.sh

# System components the tests start for real: Mosquitto (MQTT), Chromium (browser tests),
# for `live --source rtsp://`: FFmpeg (makes the test video) and GStreamer's RTSP server (serves it),
# a Java 17 runtime (the Flink mini-cluster of `pairs --engine flink`) and iproute2 (`ip netns`:
# the Ray tests run their cluster in a loopback-only network namespace).
system-deps:
	@missing=""; \
	command -v ip >/dev/null 2>&1 || [ -x /usr/sbin/ip ] || missing="$$missing iproute2"; \
	command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || missing="$$missing mosquitto"; \
	command -v mosquitto_sub >/dev/null 2>&1 || missing="$$missing mosquitto-clients"; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	command -v ffmpeg >/dev/null 2>&1 || missing="$$missing ffmpeg"; \
	/usr/bin/python3 -c "import gi; gi.require_version('GstRtspServer', '1.0')" >/dev/null 2>&1 || \
	  missing="$$missing python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-good"; \
	command -v java >/dev/null 2>&1 || missing="$$missing openjdk-17-jre-headless"; \
	if [ -n "$$missing" ]; then \
	  echo "installing system packages:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null; \
	fi

# The whole suite in .venv (the Flink runtime tests skip there: no PyFlink), then the Flink tests
# again in .venv-flink, where PyFlink and Java run them for real.
test: $(STAMP) $(FLINK_STAMP) system-deps
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	PATH="$(CURDIR)/$(BIN):/usr/sbin:$$PATH" $(BIN)/pytest -q
	PATH="$(CURDIR)/$(FLINK_VENV)/bin:/usr/sbin:$$PATH" $(FLINK_VENV)/bin/pytest -q -p no:cacheprovider $(FLINK_TESTS)

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

format: $(STAMP)
	$(BIN)/ruff check --fix src tests bench
	$(BIN)/ruff format src tests bench

bench: $(STAMP)
	@for f in bench/*.py; do echo "== $$f"; $(BIN)/python $$f || exit 1; done

clean:
	rm -rf $(VENV) $(FLINK_VENV) demo-out .pytest_cache .ruff_cache
