#!/bin/sh
# test_cli.sh: the sd-worker command line as a user meets it: exit status 0
# and the files promised on success; non-zero with one clear line on stderr
# for bad input. Usage: test_cli.sh SD_WORKER DATA_DIR
set -u
SDW=$1
DATA=$2
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
M=$DATA/models/sd1-tiny/sd1-tiny.safetensors
fails=0

ok() { # ok NAME CMD...: must exit 0
    name=$1; shift
    if "$@" >"$TMP/out" 2>"$TMP/err"; then echo "ok   $name"; else
        echo "FAIL $name (exit $?)"; cat "$TMP/err"; fails=$((fails + 1)); fi
}
bad() { # bad NAME NEEDLE CMD...: must exit non-zero, stderr containing NEEDLE
    name=$1; needle=$2; shift 2
    if "$@" >"$TMP/out" 2>"$TMP/err"; then
        echo "FAIL $name (exit 0)"; fails=$((fails + 1))
    elif grep -q -- "$needle" "$TMP/err"; then echo "ok   $name: $(head -1 "$TMP/err")"
    else echo "FAIL $name: stderr lacks '$needle':"; cat "$TMP/err"; fails=$((fails + 1)); fi
}

G="$SDW generate -m $M -W 64 -H 64 --steps 3"
ok "txt2img" $G -p "a cube" -o "$TMP/a.png"
[ -s "$TMP/a.png" ] || { echo "FAIL no a.png"; fails=$((fails + 1)); }
ok "batch count and size" $G -p "a cube" --batch-count 2 --batch-size 2 -o "$TMP/b.png"
for i in 1 2 3 4; do [ -s "$TMP/b-$i.png" ] || { echo "FAIL no b-$i.png"; fails=$((fails + 1)); }; done
ok "random seed" $G -p "a cube" --seed -1 -o "$TMP/r.png"
grep -q "^seed [0-9]" "$TMP/err" || { echo "FAIL random seed not reported"; fails=$((fails + 1)); }
ok "img2img from our own png" $G -p "a cube" -i "$TMP/a.png" --strength 0.6 -o "$TMP/i.png"
# A mask of another size is resized to the output size.
ok "inpaint with a mask of another size" $G -p "a cube" -i "$TMP/a.png" --mask "$DATA/inputs/inp4_sd1_ddim_s0.75_mask.png" -o "$TMP/m.png"
ok "jpeg and webp outputs" $G -p "a cube" -o "$TMP/a.jpg"
ok "webp output" $G -p "a cube" -o "$TMP/a.webp"
ok "dump" $G -p "a cube" --dump "$TMP/dump" -o "$TMP/d.png"
[ -s "$TMP/dump/run-0.safetensors" ] || { echo "FAIL no dump"; fails=$((fails + 1)); }
ok "info" "$SDW" info --json "$M"
grep -q '"family":	"sd1"' "$TMP/out" || { echo "FAIL info family"; cat "$TMP/out"; fails=$((fails + 1)); }
ok "tokenize" "$SDW" tokenize "a photograph of an astronaut riding a horse"
grep -q "^\[49406, 320, 8853, 539, 550, 18376, 6765, 320, 4558, 49407, 49407" "$TMP/out" || { echo "FAIL tokenize"; fails=$((fails + 1)); }

bad "unknown sampler" "valid:" $G -p x --sampler euler_b
bad "unknown scheduler" "karras" $G -p x --scheduler fancy
bad "steps 0" "steps" $G -p x --steps 0
bad "strength 1.5" "strength" $G -p x -i "$TMP/a.png" --strength 1.5
bad "width not a multiple of 8" "multiples of 8" $G -p x -W 60
bad "missing init image" "nope.png" $G -p x -i "$TMP/nope.png"
printf 'garbage, not an image' > "$TMP/garbled.png"
bad "garbled init image" "garbled.png" $G -p x -i "$TMP/garbled.png"
bad "garbled mask" "garbled.png" $G -p x -i "$TMP/a.png" --mask "$TMP/garbled.png"
bad "mask without image" "init image" $G -p x --mask "$TMP/a.png"
bad "missing model" "no such file" "$SDW" generate -m "$TMP/none.safetensors" -p x
printf 'x' > "$TMP/model.ckpt"
bad "pickle refused" "safetensors" "$SDW" generate -m "$TMP/model.ckpt" -p x
bad "unknown option" "unknown option" $G -p x --frobnicate 1
bad "unknown command" "unknown command" "$SDW" frobnicate

[ $fails -eq 0 ] && echo "all CLI checks passed" || echo "$fails CLI checks failed"
exit $fails
