# Top-level driver: CMake does the real work; these targets are the contract
# README.md promises (make, make demo, make test).
BUILD ?= build
JOBS  ?= $(shell nproc)
CMAKE_FLAGS ?= -DCMAKE_BUILD_TYPE=Release

DEPS_DEB := cmake gcc make pkg-config libdnnl-dev libcjson-dev libutf8proc-dev \
            libpcre2-dev libyaml-dev libcmocka-dev libpng-dev zlib1g-dev libssl-dev

.PHONY: all demo test deps clean test-asan

all: $(BUILD)/Makefile
	cmake --build $(BUILD) -j $(JOBS)

$(BUILD)/Makefile:
	cmake -S . -B $(BUILD) $(CMAKE_FLAGS)

deps:
	@./tools/install-deps.sh $(DEPS_DEB)

demo: deps all
	./$(BUILD)/sd-worker encode -m tests/data/models/sd1-tiny/sd1-tiny.safetensors \
	    -p "a photograph of an astronaut riding a horse"

test: all
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

test-asan:
	$(MAKE) BUILD=build-asan CMAKE_FLAGS="-DCMAKE_BUILD_TYPE=Debug -DSDW_SANITIZE=ON" test

clean:
	rm -rf $(BUILD) build-asan

# libFuzzer smoke run of the safetensors reader (needs clang): seeds are the
# first 64 KB of each tests/data/*.safetensors (all cut short of their data, so
# invalid) plus three small valid images built here (F16/I64/metadata; BF16 at
# an odd address, a scalar and an empty tensor; an empty header); new inputs and
# any crash land in build-fuzz/. FUZZ_SECONDS=600 for a longer run.
FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 60
.PHONY: fuzz-smoke
fuzz-smoke:
	mkdir -p build-fuzz/corpus
	$(FUZZ_CC) -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -D_GNU_SOURCE \
	    -Iinclude -Isrc src/io/safetensors.c src/core/*.c tests/fuzz/fuzz_safetensors.c \
	    -lcjson -fopenmp -lm -o build-fuzz/fuzz_safetensors
	for f in tests/data/*.safetensors; do head -c 65536 "$$f" > "build-fuzz/corpus/seed_$$(basename "$$f")"; done
	printf '\215\0\0\0\0\0\0\0{"a":{"dtype":"F16","shape":[2,2],"data_offsets":[0,8]},"b":{"dtype":"I64","shape":[1],"data_offsets":[8,16]},"__metadata__":{"format":"pt"}}\0\74\0\300\0\70\377\173\7\0\0\0\0\0\0\0' > build-fuzz/corpus/seed_valid_f16_i64
	printf '\245\0\0\0\0\0\0\0{"c":{"dtype":"BF16","shape":[3],"data_offsets":[0,6]},"d":{"dtype":"F32","shape":[],"data_offsets":[6,10]},"e":{"dtype":"U8","shape":[0,4],"data_offsets":[10,10]}} \200\77\100\300\40\76\0\0\300\77' > build-fuzz/corpus/seed_valid_odd_bf16
	printf '\2\0\0\0\0\0\0\0{}' > build-fuzz/corpus/seed_valid_empty
	./build-fuzz/fuzz_safetensors -max_total_time=$(FUZZ_SECONDS) -artifact_prefix=build-fuzz/ build-fuzz/corpus
