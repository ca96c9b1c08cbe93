#!/bin/sh
# test_preprocess_cli.sh: `sd-worker preprocess` as a user meets it: the file
# it writes (the Canny edge map of scene64 at 100:200 equals OpenCV's), the
# --resize / --fit sizes, and one clear line on stderr with a non-zero exit
# for bad input. Usage: test_preprocess_cli.sh SD_WORKER DATA_DIR
set -u
SDW=$1
DATA=$2
C=$DATA/controlnet/canny
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
fails=0

ok() { # ok NAME CMD...: must exit 0
    name=$1; shift
    if "$@" >"$TMP/out" 2>"$TMP/err"; then echo "ok   $name"; else
        echo "FAIL $name (exit $?)"; cat "$TMP/err"; fails=$((fails + 1)); fi
}
bad() { # bad NAME NEEDLE CMD...: must exit non-zero, stderr containing NEEDLE, no sanitizer report
    name=$1; needle=$2; shift 2
    if "$@" >"$TMP/out" 2>"$TMP/err"; then
        echo "FAIL $name (exit 0)"; fails=$((fails + 1))
    elif grep -q -e "Sanitizer" -e "runtime error:" "$TMP/err"; then
        echo "FAIL $name: sanitizer report"; cat "$TMP/err"; fails=$((fails + 1))
    elif grep -q -- "$needle" "$TMP/err"; then echo "ok   $name: $(head -1 "$TMP/err")"
    else echo "FAIL $name: stderr lacks '$needle':"; cat "$TMP/err"; fails=$((fails + 1)); fi
}
# Our output is RGB; `preprocess none` turns OpenCV's single-channel reference
# into RGB through the same encoder, so equal edges give byte-identical files.
ok "canny 100:200" "$SDW" preprocess canny:100:200 "$C/scene64_input.png" -o "$TMP/edges.png"
ok "reference as RGB" "$SDW" preprocess none "$C/scene64_canny_100_200.png" -o "$TMP/ref.png"
cmp -s "$TMP/edges.png" "$TMP/ref.png" || { echo "FAIL canny output differs from OpenCV's edge map"; fails=$((fails + 1)); }
ok "canny default thresholds" "$SDW" preprocess canny "$C/scene64_input.png" -o "$TMP/default.png"
cmp -s "$TMP/default.png" "$TMP/ref.png" || { echo "FAIL canny default is not 100:200"; fails=$((fails + 1)); }
ok "swapped thresholds" "$SDW" preprocess canny:200:100 "$C/scene64_input.png" -o "$TMP/swap.png"
cmp -s "$TMP/swap.png" "$TMP/ref.png" || { echo "FAIL canny 200:100 differs"; fails=$((fails + 1)); }
for fit in just crop fill; do
    ok "resize 96x64 $fit" "$SDW" preprocess scribble "$C/scene37x53_input.png" -o "$TMP/$fit.png" --resize 96x64 --fit $fit
    ok "info of $fit" "$SDW" preprocess none "$TMP/$fit.png" -o "$TMP/$fit-copy.png"
    grep -q "96x64" "$TMP/err" || { echo "FAIL $fit output is not 96x64: $(cat "$TMP/err")"; fails=$((fails + 1)); }
done
ok "A1111 module name" "$SDW" preprocess "invert (from white bg & black line)" "$C/gray64x96_input.png" -o "$TMP/inv.webp"

bad "unknown preprocessor" "valid:" "$SDW" preprocess lineart "$C/scene64_input.png" -o "$TMP/x.png"
bad "bad thresholds" "canny takes" "$SDW" preprocess canny:50 "$C/scene64_input.png" -o "$TMP/x.png"
bad "unknown fit" "Resize and Fill" "$SDW" preprocess canny "$C/scene64_input.png" -o "$TMP/x.png" --resize 64x64 --fit stretch
bad "fit without resize" "needs --resize" "$SDW" preprocess canny "$C/scene64_input.png" -o "$TMP/x.png" --fit crop
bad "bad size" "WxH" "$SDW" preprocess canny "$C/scene64_input.png" -o "$TMP/x.png" --resize 64by64
bad "missing input" "nope.png" "$SDW" preprocess canny "$TMP/nope.png" -o "$TMP/x.png"
bad "missing output" "usage" "$SDW" preprocess canny "$C/scene64_input.png"

[ "$fails" -eq 0 ] && echo "all preprocess CLI checks passed"
exit "$fails"
