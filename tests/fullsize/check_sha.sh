#!/bin/bash
# check_sha.sh: writes each full-size seed-1 checkpoint with sdw-make-fullsize
# into a temporary folder, compares its SHA-256 with the value listed in
# tests/data/fullsize/README.md, and deletes it before the next one (the
# files are 2-7 GB). Not part of `make test`: it needs ~7 GB of free disk and
# a minute or two per family.
#
# usage: tests/fullsize/check_sha.sh [FAMILY...]     (default: all four)
# env:   SDW_MAKE_FULLSIZE  the tool (default build/tools/fullsize/sdw-make-fullsize)
#        FULLSIZE_TMPDIR    where the files go (default ${TMPDIR:-/tmp})
# Two hashes per file: the tool's own (bytes as written) and a read-back of the
# file on disk (openssl dgst when present, as coreutils sha256sum is ~5x slower).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
tool=${SDW_MAKE_FULLSIZE:-$root/build/tools/fullsize/sdw-make-fullsize}
readme=$root/tests/data/fullsize/README.md
families=("$@")
[ ${#families[@]} -gt 0 ] || families=(sd15 sd15-inpaint sd21-v sdxl)

[ -x "$tool" ] || { echo "check_sha: $tool not built (run make)" >&2; exit 2; }
"$tool" selftest > /dev/null || { echo "check_sha: selftest failed" >&2; exit 1; }

tmp=$(mktemp -d "${FULLSIZE_TMPDIR:-${TMPDIR:-/tmp}}/sdw-fullsize.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM

if command -v openssl > /dev/null; then
    readback() { openssl dgst -sha256 -r "$1" | cut -d' ' -f1; }
    readback_name="openssl dgst -sha256"
else
    readback() { sha256sum "$1" | cut -d' ' -f1; }
    readback_name="sha256sum"
fi
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }

fail=0
printf '%-13s %12s %8s %8s  %s\n' family bytes write_s hash_s result
for fam in "${families[@]}"; do
    want=$(awk -v f="$fam-seed1.safetensors" '$2 == f && length($1) == 64 { print $1 }' "$readme")
    if [ -z "$want" ]; then
        echo "check_sha: no SHA-256 for $fam in $readme" >&2
        fail=1
        continue
    fi
    out=$tmp/$fam-seed1.safetensors
    # Refuse early rather than fill the disk: the README's table gives the size.
    need=$(awk -v f="\`$fam\`" -F'|' '$2 ~ f && $6 ~ /bytes/ { gsub(/[^0-9]/, "", $6); print $6 }' "$readme")
    avail=$(df -P -B1 "$tmp" | awk 'NR == 2 { print $4 }')
    if [ -n "$need" ] && [ "$avail" -lt $((need + 512 * 1024 * 1024)) ]; then
        echo "check_sha: $fam needs $need bytes, only $avail free in $tmp" >&2
        fail=1
        continue
    fi
    t0=$(now)
    got_tool=$("$tool" "$fam" --seed 1 -o "$out" --sha256 -q | cut -d' ' -f1)
    t1=$(now)
    got_disk=$(readback "$out")
    t2=$(now)
    size=$(stat -c %s "$out")
    rm -f "$out"
    result=ok
    if [ "$got_tool" != "$want" ] || [ "$got_disk" != "$want" ]; then
        result="MISMATCH (tool $got_tool, disk $got_disk, README $want)"
        fail=1
    fi
    printf '%-13s %12s %8s %8s  %s\n' "$fam" "$size" "$(secs "$t0" "$t1")" "$(secs "$t1" "$t2")" "$result"
done
echo "(write_s: generate + write + in-tool SHA-256; hash_s: read-back with $readback_name)"
exit $fail
