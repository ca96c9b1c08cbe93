#!/bin/bash
# make_checkpoints.sh: writes the full-size seed-1 checkpoints that
# tests/fullsize/test_fullsize_models.c compares with tests/data/fullsize/
# (DIR/<family>-seed1.safetensors), skipping those already there. Each file is
# written under a temporary name, its SHA-256 (hashed by the tool while
# writing) checked against tests/data/fullsize/README.md, and only then
# renamed into place, so an interrupted or wrong file is never used. A family
# that does not fit on the disk (size from the README table + 1 GiB) is
# skipped with a message; the test then skips it too.
#
# usage: tests/fullsize/make_checkpoints.sh [DIR [FAMILY...]]
#        DIR default build/fullsize; FAMILY default all four
#        (sd15 sd15-inpaint sd21-v sdxl: 2.1 + 2.1 + 2.6 + 6.9 GB, 10-40 s each)
# env:   SDW_MAKE_FULLSIZE  the tool (default build/tools/fullsize/sdw-make-fullsize)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
tool=${SDW_MAKE_FULLSIZE:-$root/build/tools/fullsize/sdw-make-fullsize}
readme=$root/tests/data/fullsize/README.md
dir=${1:-$root/build/fullsize}
[ $# -gt 0 ] && shift
families=("$@")
[ ${#families[@]} -gt 0 ] || families=(sd15 sd15-inpaint sd21-v sdxl)

[ -x "$tool" ] || { echo "make_checkpoints: $tool not built (run make)" >&2; exit 2; }
mkdir -p "$dir"
fail=0
for fam in "${families[@]}"; do
    out=$dir/$fam-seed1.safetensors
    if [ -f "$out" ]; then
        echo "make_checkpoints: $out present"
        continue
    fi
    want=$(awk -v f="$fam-seed1.safetensors" '$2 == f && length($1) == 64 { print $1 }' "$readme")
    need=$(awk -v f="\`$fam\`" -F'|' '$2 ~ f && $6 ~ /bytes/ { gsub(/[^0-9]/, "", $6); print $6 }' "$readme")
    if [ -z "$want" ] || [ -z "$need" ]; then
        echo "make_checkpoints: $fam is not in $readme" >&2
        fail=1
        continue
    fi
    avail=$(df -P -B1 "$dir" | awk 'NR == 2 { print $4 }')
    if [ "$avail" -lt $((need + 1024 * 1024 * 1024)) ]; then
        echo "make_checkpoints: SKIP $fam: needs $need bytes + 1 GiB spare, only $avail free in $dir" >&2
        continue
    fi
    tmp=$out.partial
    trap 'rm -f "$tmp"' EXIT INT TERM
    t0=$(date +%s)
    got=$("$tool" "$fam" --seed 1 -o "$tmp" --sha256 -q | cut -d' ' -f1)
    if [ "$got" != "$want" ]; then
        rm -f "$tmp"
        echo "make_checkpoints: $fam: SHA-256 $got, README says $want" >&2
        fail=1
        continue
    fi
    mv "$tmp" "$out"
    trap - EXIT INT TERM
    echo "make_checkpoints: wrote $out ($need bytes, SHA-256 ok, $(($(date +%s) - t0)) s)"
done
exit $fail
