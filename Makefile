# Top-level driver: CMake does the real work; these targets are the contract
# README.md promises (make, make demo, make test).
BUILD ?= build
JOBS  ?= $(shell nproc)
CMAKE_FLAGS ?= -DCMAKE_BUILD_TYPE=Release

DEPS_DEB := cmake gcc g++ make pkg-config libdnnl-dev libcjson-dev libutf8proc-dev \
            libpcre2-dev libyaml-dev libcmocka-dev libpng-dev zlib1g-dev libssl-dev \
            libjpeg62-turbo-dev libwebp-dev libmicrohttpd-dev clang libomp-dev libsentencepiece-dev libhiredis-dev \
            libsimde-dev

# What the server tests need on top: Chromium and its WebDriver (the web page
# test), redis-server (the fleet tests start their own) and node with npm
# (the openai client). Node from another source than
# Debian (e.g. nodesource, which bundles npm) is left alone.
TEST_DEPS_DEB := chromium chromium-driver redis-server

.PHONY: all demo test deps test-deps clean test-asan install

all: $(BUILD)/Makefile
	cmake --build $(BUILD) -j $(JOBS)

$(BUILD)/Makefile:
	cmake -S . -B $(BUILD) $(CMAKE_FLAGS)

# libsdw.so.0 and libsdw.a, include/sdw.h, lib/pkgconfig/sdw.pc and the
# sd-worker binary under PREFIX (DESTDIR=/staging for packaging). Then:
#   cc app.c $(pkg-config --cflags --libs sdw)   (--static with libsdw.a)
PREFIX ?= /usr/local
install: all
	DESTDIR="$(DESTDIR)" cmake --install $(BUILD) --prefix $(PREFIX)

deps:
	@./tools/install-deps.sh $(DEPS_DEB)

test-deps: deps
	@./tools/install-deps.sh $(TEST_DEPS_DEB)
	@command -v npm >/dev/null || ./tools/install-deps.sh nodejs npm

demo: deps all
	./$(BUILD)/sd-worker generate -m tests/data/models/sd1-tiny/sd1-tiny.safetensors \
	    -p "a photograph of an astronaut riding a horse" -W 256 -H 256 --steps 20 \
	    --sampler euler_a --seed 42 -o demo.png

# The full-size golden tests (ctest label "full", tests/fullsize/) are left out
# here: they need 2-7 GB checkpoints, up to ~20 GB of RAM and minutes each.
test: test-deps all
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS) -LE full

# The full-size golden tests: writes the seed-1 checkpoints that are missing
# into FULLSIZE_DIR (2.1 + 2.1 + 2.6 + 6.9 GB, SHA-256 checked; a family that
# does not fit on the disk is skipped, and so is its test), then runs them one
# at a time. FULLSIZE_FAMILIES to write fewer (the tests skip absent ones).
FULLSIZE_DIR      ?= $(BUILD)/fullsize
FULLSIZE_FAMILIES ?= sd15 sd15-inpaint sd21-v sdxl
.PHONY: test-full
test-full: all
	SDW_MAKE_FULLSIZE=$(abspath $(BUILD))/tools/fullsize/sdw-make-fullsize \
	    ./tests/fullsize/make_checkpoints.sh $(FULLSIZE_DIR) $(FULLSIZE_FAMILIES)
	cd $(BUILD) && SDW_FULLSIZE_DIR=$(abspath $(FULLSIZE_DIR)) ctest -L full --output-on-failure

# The SD1.5 512x512 benchmark (issue 7): stage timings, FLOPs, TFLOP/s and %
# of the peak measured in the same run, on the full-size SD1.5 architecture
# with random weights ($(BUILD)/fullsize/sd15-seed1.safetensors, 2.1 GB,
# written on first use). BENCH_FLAGS adds options (--precision f32, --json,
# --repeat 1, ...; later options win, so BENCH_FLAGS="-W 1024 -H 1024" for
# SDXL); BENCH_FAMILY picks another family (sd15-inpaint, sd2, sdxl).
BENCH_FAMILY ?= sd15
BENCH_FLAGS  ?=
.PHONY: bench
bench: all
	./$(BUILD)/sd-worker bench --family $(BENCH_FAMILY) -W 512 -H 512 --steps 20 --cfg-scale 7 --paired $(BENCH_FLAGS)

# FLUX.1 schnell at 512x512, 4 steps, one transformer pass a step (issue 17):
# the transformer as a Q8_0 GGUF (12.7 GB) + ae + clip_l + T5-XXL fp8 (4.8 GB),
# written into $(BUILD)/fullsize on first use (~5 minutes). BENCH_FLUX_FAMILY=
# flux-dev for dev (add --steps 28 for its default); BENCH_FLAGS as above
# (--weights bf16 for the 23.8 GB BF16 transformer).
BENCH_FLUX_FAMILY ?= flux-schnell
.PHONY: bench-flux
bench-flux: all
	./$(BUILD)/sd-worker bench --family $(BENCH_FLUX_FAMILY) -W 512 -H 512 --steps 4 --cfg-scale 1 --paired $(BENCH_FLAGS)

# SD3 / SD3.5 at 1024x1024, 28 steps, cfg 7: two MMDiT passes a step, T5 at
# 256 tokens (issue 18): the MMDiT as a Q8_0 GGUF (city96's layout; sd3-medium
# 2.3, sd35-medium 2.9, sd35-large 8.8 GB) with the VAE beside it, clip_l and
# clip_g (F16) and FLUX's T5-XXL fp8 (the same encoder, 4.8 GB, shared with
# bench-flux), written into $(BUILD)/fullsize on first use (~4 minutes for
# sd35-medium). BENCH_SD3_FAMILY= sd3-medium or sd35-large; BENCH_FLAGS as
# above (--weights bf16 for Stability's single file: SD3.5 BF16 5.1 / 16.5 GB,
# SD3-medium F16 4.3 GB).
BENCH_SD3_FAMILY ?= sd35-medium
.PHONY: bench-sd3
bench-sd3: all
	./$(BUILD)/sd-worker bench --family $(BENCH_SD3_FAMILY) -W 1024 -H 1024 --steps 28 --cfg-scale 7 --paired $(BENCH_FLAGS)

test-asan:
	$(MAKE) BUILD=build-asan CMAKE_FLAGS="-DCMAKE_BUILD_TYPE=Debug -DSDW_SANITIZE=ON" test

clean:
	rm -rf $(BUILD) build-asan $(FUZZ_BUILD)

# libFuzzer (clang): every tests/fuzz/fuzz_*.c is a target, built by CMake
# (-DSDW_FUZZ=ON) in FUZZ_BUILD with ASan + UBSan and run by tests/fuzz/run.sh,
# which seeds each from tests/fuzz/corpus/<target>/ and tests/data, and ends
# with a table of executions, corpus and coverage per target (also in
# FUZZ_BUILD/fuzz-summary.txt). `make fuzz` runs each target FUZZ_RUNS times;
# `make fuzz-smoke` (CI) each for FUZZ_SECONDS. FUZZ_TARGETS to run fewer,
# FUZZ_JOBS to run that many side by side.
FUZZ_CC      ?= clang
FUZZ_BUILD   ?= build-fuzz
FUZZ_RUNS    ?= 1000000
FUZZ_SECONDS ?= 60
FUZZ_JOBS    ?= 1
FUZZ_TARGETS ?=
.PHONY: fuzz-build fuzz fuzz-smoke
fuzz-build:
	@[ -f $(FUZZ_BUILD)/CMakeCache.txt ] || CC=$(FUZZ_CC) cmake -S . -B $(FUZZ_BUILD) -DCMAKE_BUILD_TYPE=Release -DSDW_FUZZ=ON
	cmake --build $(FUZZ_BUILD) -j $(JOBS)

fuzz: fuzz-build
	./tests/fuzz/run.sh -r $(FUZZ_RUNS) -j $(FUZZ_JOBS) $(FUZZ_BUILD) $(FUZZ_TARGETS)

fuzz-smoke: fuzz-build
	./tests/fuzz/run.sh -t $(FUZZ_SECONDS) -j $(FUZZ_JOBS) $(FUZZ_BUILD) $(FUZZ_TARGETS)
