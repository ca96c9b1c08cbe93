# Top-level driver: CMake does the real work; these targets are the contract
# README.md promises (make, make demo, make test).
BUILD ?= build
JOBS  ?= $(shell nproc)
CMAKE_FLAGS ?= -DCMAKE_BUILD_TYPE=Release

DEPS_DEB := cmake gcc make pkg-config libdnnl-dev libcjson-dev libutf8proc-dev \
            libpcre2-dev libcmocka-dev libpng-dev zlib1g-dev

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
