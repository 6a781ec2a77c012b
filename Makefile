# polyrun's front door. `make run` and `make test` set up everything they need on a fresh
# Debian 12 machine (as root, or with sudo available).

SHELL := /bin/bash
.DEFAULT_GOAL := build

SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# Build and runtime dependencies, all from Debian.
PACKAGES := build-essential cmake ninja-build pkg-config git \
  libseccomp-dev nlohmann-json3-dev libboost1.81-dev prometheus-cpp-dev libcli11-dev libspdlog-dev libfmt-dev libtoml11-dev \
  libgtest-dev libgmock-dev libbenchmark-dev clang-format clang-tidy-19 \
  python3 bash gcc g++ nodejs \
  ruby php-cli lua5.4 r-base-core guile-3.0 sqlite3 golang-go rustc openjdk-17-jdk-headless \
  wabt zip \
  libsqlite3-dev libpq-dev postgresql libsodium-dev \
  bubblewrap hyperfine wrk \
  qemu-system-x86 busybox-static cpio xz-utils
# Sessions, rich outputs and Jupyter kernels. Installed without Recommends: pandas' and R's
# recommendations pull in Boost 1.74 headers, which replace libboost1.81-dev.
SESSION_PACKAGES := python3-numpy python3-pandas python3-matplotlib r-cran-jsonlite lua-dkjson \
  xeus-dev python3-jupyter-kernel-test python3-nbclient python3-nbconvert python3-ipykernel \
  jupyter-client
JOBS ?= $(shell nproc)

# $(call install_missing,PACKAGES,APT-OPTIONS): apt-get install those not yet installed.
define install_missing
missing=$$(for p in $(1); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
if [ -n "$$missing" ]; then \
  echo "setup: installing $$missing"; \
  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $(2) $$missing; \
else echo "setup: all packages present"; fi
endef

.PHONY: setup build build-asan test test-unit test-asan test-cgroup2 run demo format format-check lint bench clean

## setup: install every build and runtime dependency (idempotent; skips apt when all present)
setup:
	@$(call install_missing,$(PACKAGES),)
	@$(call install_missing,$(SESSION_PACKAGES),--no-install-recommends)
	@# NodeSource's nodejs bundles npm; Debian's does not (and conflicts with Debian's npm).
	@command -v npm >/dev/null || { $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq npm; }
	@# Toolchains from npm live in their language's folder, pinned by its package-lock.json.
	@# A local "file:" dependency (TypeScript's copy of the JavaScript session driver) is copied
	@# in by npm, so a change to its files also calls for a new install.
	@for lock in languages/*/package-lock.json tests/*/package-lock.json; do \
	  [ -e "$$lock" ] || continue; d=$$(dirname $$lock); marker=$$d/node_modules/.package-lock.json; \
	  stale=; for dep in $$(grep -o '"file:[^"]*"' $$d/package.json | sed 's/"file:\(.*\)"/\1/'); do \
	    [ -f $$marker ] && [ -n "$$(find $$d/$$dep -path '*/node_modules' -prune -o -newer $$marker -type f -print | head -1)" ] && stale=1; \
	  done; \
	  if [ ! -d $$d/node_modules ] || [ $$lock -nt $$marker ] || [ -n "$$stale" ]; then \
	    echo "setup: npm ci in $$d"; (cd $$d && npm ci --no-audit --no-fund --loglevel=error) || exit 1; \
	  fi; \
	done
	@# Java's warm bootstrap runs as a class: compiled here from its source, into the language's
	@# folder (the sandbox sees only that), whenever the source is newer.
	@w=languages/java/warm/polyrun/Warm.class; \
	if [ ! -f $$w ] || [ languages/java/Warm.java -nt $$w ]; then \
	  echo "setup: javac languages/java/Warm.java"; \
	  /usr/lib/jvm/java-17-openjdk-amd64/bin/javac -encoding UTF-8 -d languages/java/warm languages/java/Warm.java || exit 1; \
	fi

## build: the CLI at ./build/polyrun, with all tests
build: setup
	cmake --preset dev >/dev/null
	cmake --build --preset dev -j $(JOBS)

build-asan: setup
	cmake --preset asan-ubsan >/dev/null
	cmake --build --preset asan-ubsan -j $(JOBS)

## test: everything CI runs (needs root for the sandbox tests)
test: lint build-asan
	ctest --preset dev -L unit -j $(JOBS) --output-on-failure
	ctest --preset dev -LE unit --output-on-failure   # sandbox suites: one at a time, they time things
	ctest --preset asan-ubsan -j 2 --output-on-failure
	$(MAKE) --no-print-directory test-cgroup2

test-unit: build
	ctest --preset dev -L unit --output-on-failure

test-asan: build-asan
	ctest --preset asan-ubsan --output-on-failure

## test-cgroup2: the sandbox and escape suites again in a VM whose only hierarchy is cgroup v2
test-cgroup2: build
	tests/vm/cgroup2-vm.sh --timeout 1800 --rw $(CURDIR) -- $(CURDIR)/tests/vm/run-suites.sh $(CURDIR)/build

## run: set up, build and serve the API (docs/api.md) on SQLite until Ctrl-C
run: build
	./build/polyrun serve --listen 127.0.0.1:8080

## demo: the command line at work (runs, the artifact cache, the analyzer)
demo: build
	@scripts/demo.sh ./build/polyrun

format:
	clang-format -i $$(git ls-files 'src/*.cc' 'src/*.h' 'tests/*.cc' 'tests/*.h' 'bench/*.cc' 'bench/*.h')

format-check:
	@command -v clang-format >/dev/null || $(MAKE) --no-print-directory setup
	clang-format --dry-run --Werror $$(git ls-files 'src/*.cc' 'src/*.h' 'tests/*.cc' 'tests/*.h' 'bench/*.cc' 'bench/*.h')

## lint: clang-tidy-19 over the sources (build/compile_commands.json) and the format check.
## (Debian's default clang-tidy 14 cannot parse libstdc++ 12's <expected>.)
## Tests beside the code are linted too, except for optional access after ASSERT_TRUE, which
## clang-tidy cannot see through.
lint: build format-check
	git ls-files 'src/*.cc' | grep -v '_test\.cc$$' | xargs -P $(JOBS) -n 1 clang-tidy-19 -p build --quiet
	git ls-files 'src/*_test.cc' | xargs -P $(JOBS) -n 1 clang-tidy-19 -p build --quiet \
	  --checks=-bugprone-unchecked-optional-access

## bench: the suite of docs/performance.md, figures in bench/results/: cold-run latency against
## the bare toolchains and bubblewrap; the sandbox's own cost; cold, prebuilt, warm (pooled) and
## zygote (forked) runs beside the bare interpreter, and their throughput at concurrency 1-8; the
## artifact cache; the server's overhead over the library, cold, warm, zygote, prebuilt, and in a
## session over WebSocket; sessions against one-shot runs per language; the polyrun-python
## Jupyter kernel beside ipykernel; every language's hello world; then the latency plots
bench: setup
	cmake --preset release >/dev/null
	cmake --build --preset release -j $(JOBS)
	bench/cold_start.sh ./build-release/polyrun
	./build-release/bench/sandbox_bench
	./build-release/bench/warm_bench
	./build-release/bench/compile_cache_bench
	./build-release/bench/server_bench
	./build-release/bench/server_bench --warm-pools
	./build-release/bench/server_bench --zygote
	./build-release/bench/server_bench --prebuilt
	./build-release/bench/session_bench
	kernels=$$(mktemp -d) && trap 'rm -rf "$$kernels"' EXIT && \
	  ./build-release/polyrun kernel install --prefix "$$kernels" python >/dev/null && \
	  JUPYTER_PATH="$$kernels/share/jupyter" JUPYTER_RUNTIME_DIR="$$kernels/runtime" \
	  bench/jupyter_bench.py
	bench/languages.py ./build-release/polyrun
	bench/plot.py

clean:
	rm -rf build build-asan build-release
