#!/bin/sh
# test_install_example.sh: libsdw as a program that embeds it meets it: the
# build installed into a temporary prefix (libsdw.so.0 -> libsdw.so.0.x.y,
# libsdw.a, sdw.h, sdw.pc), the shared library exporting only sdw.h's
# functions, and examples/txt2img.c compiled against that prefix alone with
# pkg-config (shared, then static), run on the tiny SD1 model, its PNG
# checked. Usage: test_install_example.sh BUILD_DIR SOURCE_DIR DATA_DIR
# [EXTRA_CFLAGS] (the sanitizer flags of a sanitizer build).
set -u
BUILD=$1
SRC=$2
DATA=$3
EXTRA=${4:-}
CC=${CC:-cc}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
M=$DATA/models/sd1-tiny/sd1-tiny.safetensors
fails=0

ok() { # ok NAME CMD...: must exit 0
    name=$1; shift
    if "$@" >"$TMP/out" 2>"$TMP/err"; then echo "ok   $name"; else
        echo "FAIL $name (exit $?)"; cat "$TMP/out" "$TMP/err"; fails=$((fails + 1)); fi
}
check() { # check NAME CONDITION...: the condition (a command) must hold
    name=$1; shift
    if "$@" >/dev/null 2>&1; then echo "ok   $name"; else echo "FAIL $name"; fails=$((fails + 1)); fi
}

P=$TMP/prefix
ok "cmake --install --prefix" cmake --install "$BUILD" --prefix "$P"
PC=$(find "$P" -name sdw.pc | head -1)
[ -n "$PC" ] || { echo "FAIL no sdw.pc installed"; exit 1; }
LIB=$(dirname "$(dirname "$PC")")
export PKG_CONFIG_PATH=$(dirname "$PC")
check "header installed alone" test "$(ls "$P/include")" = sdw.h
check "libsdw.a" test -f "$LIB/libsdw.a"
REAL=$(readlink -f "$LIB/libsdw.so")
check "libsdw.so -> libsdw.so.0 -> libsdw.so.0.x.y" sh -c "test \"\$(readlink '$LIB/libsdw.so')\" = libsdw.so.0 &&
    readlink '$LIB/libsdw.so.0' | grep -q '^libsdw\.so\.0\.[0-9]*\.[0-9]*\$'"
check "soname libsdw.so.0" sh -c "readelf -d '$REAL' | grep -q 'SONAME.*\[libsdw\.so\.0\]'"
check "pkg-config prefix" test "$(pkg-config --variable=prefix sdw)" = "$P"

# Exported: the functions sdw.h declares, nothing else (no internal sdw_* either).
nm -D --defined-only "$REAL" | awk '$2 != "A" { print $3 }' | sed 's/@.*//' | sort > "$TMP/exports"
sed 's,/\*.*,,' "$SRC/include/sdw.h" | grep -v '^static inline' | grep -o '[ *]sdw_[a-z0-9_]*(' |
    tr -d ' *(' | sort -u > "$TMP/declared"
check "exports are sdw.h's functions" cmp -s "$TMP/exports" "$TMP/declared"
cmp -s "$TMP/exports" "$TMP/declared" || diff "$TMP/declared" "$TMP/exports" | head -20

# The header on its own, strict, in C and C++.
ok "sdw.h compiles alone (C17)" sh -c "echo '#include <sdw.h>' | $CC -std=c17 -Wall -Wextra -Wpedantic -Werror \
    -fsyntax-only -x c \$(pkg-config --cflags sdw) -"
ok "sdw.h compiles alone (C++)" sh -c "echo '#include <sdw.h>' | c++ -Wall -Wextra -Werror -fsyntax-only -x c++ \
    \$(pkg-config --cflags sdw) -"

EX=$SRC/examples/txt2img.c
ok "example, shared" sh -c "$CC -std=c17 -Wall -Wextra -Werror $EXTRA '$EX' -o '$TMP/txt2img' \$(pkg-config --cflags --libs sdw)"
check "example links libsdw.so.0 from the prefix" sh -c "LD_LIBRARY_PATH='$LIB' ldd '$TMP/txt2img' | grep -q '$LIB/libsdw.so.0'"
ok "example runs" env LD_LIBRARY_PATH="$LIB" "$TMP/txt2img" "$M" "a red cube" "$TMP/shared.png" 64 64 3
grep -q "step 3/3" "$TMP/err" || { echo "FAIL no progress on stderr"; fails=$((fails + 1)); }
check "a PNG" sh -c "head -c 8 '$TMP/shared.png' | od -An -c | grep -q 'P   N   G'"
check "with its parameters" grep -a -q "parameters.a red cube" "$TMP/shared.png"
check "the steps and size in them" grep -a -q "Steps: 3, .*Seed: 42, Size: 64x64" "$TMP/shared.png"

# Statically: libsdw.a and what sdw.pc's Libs.private / Requires.private name.
ok "example, static" sh -c "$CC -std=c17 -Wall -Wextra -Werror $EXTRA '$EX' -o '$TMP/txt2img-static' \
    \$(pkg-config --static --cflags --libs sdw | sed 's/-lsdw\\b/-l:libsdw.a/')"
check "no libsdw.so in the static example" sh -c "! ldd '$TMP/txt2img-static' | grep -q libsdw"
ok "static example runs" "$TMP/txt2img-static" "$M" "a red cube" "$TMP/static.png" 64 64 3
check "the same image both ways" cmp -s "$TMP/shared.png" "$TMP/static.png"

[ $fails -eq 0 ] && echo "all install checks passed" || echo "$fails install checks failed"
exit $fails
