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
    # (and, in a sanitizer build, no report: an error path must not leak either)
    name=$1; needle=$2; shift 2
    if "$@" >"$TMP/out" 2>"$TMP/err"; then
        echo "FAIL $name (exit 0)"; fails=$((fails + 1))
    elif grep -q -e "Sanitizer" -e "runtime error:" "$TMP/err"; then
        echo "FAIL $name: sanitizer report"; cat "$TMP/err"; fails=$((fails + 1))
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
ok "tokenize --t5" "$SDW" tokenize --t5 --max-length 10 "a photo of a cat"; grep -qx "\[3, 9, 1202, 13, 3, 9, 1712, 1, 0, 0\]" "$TMP/out" || { echo "FAIL tokenize --t5"; fails=$((fails + 1)); }

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
# Pickle checkpoints are never read: refused by name, and by content whatever
# the name (a pickle, or torch.save's zip of pickles).
printf '\200\002}q\000.' > "$TMP/pickle"
printf 'PK\003\004\024\000archive/data.pkl' > "$TMP/zip"
for ext in ckpt pt pth bin; do
    cp "$TMP/pickle" "$TMP/model.$ext"
    bad "pickle .$ext refused by info" "convert it to .safetensors" "$SDW" info "$TMP/model.$ext"
    bad "pickle .$ext refused by generate" "convert it to .safetensors" "$SDW" generate -m "$TMP/model.$ext" -p x
done
cp "$TMP/pickle" "$TMP/upper.CKPT"
bad "pickle .CKPT refused" "convert it to .safetensors" "$SDW" info "$TMP/upper.CKPT"
cp "$TMP/pickle" "$TMP/renamed.safetensors"
bad "pickle named .safetensors refused" "convert it to .safetensors" "$SDW" generate -m "$TMP/renamed.safetensors" -p x
cp "$TMP/zip" "$TMP/zip.safetensors"
bad "torch zip named .safetensors refused" "convert it to .safetensors" "$SDW" info "$TMP/zip.safetensors"
# LoRA: by file with a weight, by prompt tag in --lora-dir (named in the PNG's
# parameters with its hash), and names that try to leave the directory.
LORA_DIR="$DATA/models/sd1-tiny-lora"
ok "generate --lora FILE:W" $G -p x -W 64 -H 64 --steps 1 --lora "$LORA_DIR/sd1-tiny-lora-kohya.safetensors:0.5" -o "$TMP/lora1.png"
ok "generate <lora:name:w> tag" $G -p "x <lora:sd1-tiny-lora-kohya:0.8>" --lora-dir "$LORA_DIR" -W 64 -H 64 --steps 1 -o "$TMP/lora2.png"
if grep -a -q 'Lora hashes: "sd1-tiny-lora-kohya: ' "$TMP/lora2.png"; then echo "ok   Lora hashes in parameters"
else echo "FAIL Lora hashes in parameters"; fails=$((fails + 1)); fi
bad "lora tag without --lora-dir" "--lora-dir" $G -p "x <lora:a:1>"
bad "lora tag escaping the directory" "not allowed" $G -p "x <lora:../sd1-tiny/sd1-tiny:1>" --lora-dir "$LORA_DIR"
bad "lora tag not found" "not found" $G -p "x <lora:nope:1>" --lora-dir "$LORA_DIR"
bad "lora for nothing in the model" "matched 0 of" $G -p x --lora "$DATA/models/sd1-tiny/sd1-tiny.safetensors"
# FLUX.1 as users have it: the transformer file with ae / clip_l / t5xxl beside it;
# which part is missing or of the wrong kind is said by name.
FD=$DATA/flux/models
FX="$SDW generate -m $FD/flux-tiny-schnell/flux1-schnell.safetensors -W 64 -H 64"
PARTS="--vae $FD/flux-tiny-common/ae.safetensors --clip-l $FD/flux-tiny-common/clip_l.safetensors"
T5="--t5xxl $FD/flux-tiny-common/t5xxl.safetensors"
ok "flux schnell txt2img" $FX $PARTS $T5 -p "a fox" -o "$TMP/fx.png"
grep -a -q "Model: flux1-schnell" "$TMP/fx.png" || { echo "FAIL flux parameters"; fails=$((fails + 1)); }
ok "flux dev from the GGUF, img2img" "$SDW" generate -m "$FD/flux-tiny-dev/flux1-dev-Q8_0.gguf" $PARTS $T5 -W 64 -H 64 \
    --steps 3 --guidance 4 -p "a fox" -i "$TMP/fx.png" --strength 0.7 -o "$TMP/fxi.png"
grep -a -q "Distilled CFG Scale: 4" "$TMP/fxi.png" || { echo "FAIL flux guidance in parameters"; fails=$((fails + 1)); }
ok "flux all-in-one, inpaint" "$SDW" generate -m "$FD/flux-tiny-dev/flux1-dev-allinone.safetensors" -W 64 -H 64 \
    --steps 2 -p "a fox" -i "$TMP/fx.png" --mask "$DATA/inputs/inp4_sd1_ddim_s0.75_mask.png" -o "$TMP/fxm.png"
ok "flux info" "$SDW" info --json "$FD/flux-tiny-dev/diffusers"
grep -q '"family":	"flux-dev"' "$TMP/out" || { echo "FAIL flux info family"; cat "$TMP/out"; fails=$((fails + 1)); }
bad "flux without its T5" "--t5xxl" $FX $PARTS -p x
bad "flux without its autoencoder" "--vae" $FX --clip-l $FD/flux-tiny-common/clip_l.safetensors $T5 -p x
bad "a T5 file given as --clip-l" "not a CLIP-L" $FX --vae $FD/flux-tiny-common/ae.safetensors --clip-l $FD/flux-tiny-common/t5xxl.safetensors $T5 -p x
bad "flux width not a multiple of 16" "multiples of 16" $FX $PARTS $T5 -p x -W 72
bad "flux parts on an SD model" "FLUX / SD3 parts" $G -p x $T5
bad "a FLUX LoRA on SD1" "flux" $G -p x --lora "$FD/flux-tiny-dev/loras/flux-tiny-dev-lora-kohya.safetensors"
head -c 1000 "$FD/flux-tiny-dev/flux1-dev-Q8_0.gguf" > "$TMP/truncated.gguf"
bad "truncated GGUF" "truncated.gguf" "$SDW" generate -m "$TMP/truncated.gguf" $PARTS $T5 -p x
# SD3 / SD3.5: Stability's single file with its text encoders beside it.
SD=$DATA/sd3/models
S3="$SDW generate -m $SD/sd3-tiny/sd3-tiny.safetensors -W 64 -H 64 --steps 3"
TE="--clip-l $SD/text_encoders/clip_l.safetensors --clip-g $SD/text_encoders/clip_g.safetensors"
ok "sd3 txt2img" $S3 $TE --t5xxl $SD/text_encoders/t5xxl.safetensors -p "a fox!" -o "$TMP/s3.png"
ok "sd3 without T5, img2img" $S3 $TE -p "a fox" -i "$TMP/s3.png" --strength 0.6 -o "$TMP/s3i.png"
grep -q "no T5" "$TMP/err" || { echo "FAIL sd3 without T5 not said"; fails=$((fails + 1)); }
ok "sd3.5 with skip-layer guidance" "$SDW" generate -m "$SD/sd35-tiny/sd35-tiny.safetensors" $TE -W 64 -H 64 --steps 4 \
    --slg-layers 0 --slg-scale 2.8 --slg-start 0.01 --slg-end 0.5 -p "a fox" -o "$TMP/s35.png"
ok "sd3 info" "$SDW" info --json "$SD/sd35-tiny/sd35-tiny.safetensors"
grep -q '"family":	"sd3.5-medium"' "$TMP/out" || { echo "FAIL sd3 info family"; cat "$TMP/out"; fails=$((fails + 1)); }
bad "sd3 without CLIP-G" "--clip-g" $S3 --clip-l $SD/text_encoders/clip_l.safetensors -p x
bad "a T5 given as CLIP-G" "t5xxl.safetensors" $S3 --clip-l $SD/text_encoders/clip_l.safetensors \
    --clip-g $SD/text_encoders/t5xxl.safetensors -p x
bad "skip-layer guidance on a block that is not there" "block 5" "$SDW" generate -m "$SD/sd35-tiny/sd35-tiny.safetensors" \
    $TE -W 64 -H 64 --steps 2 --slg-layers 5 -p x
# ControlNet: units from files (one net file named twice), the image as given or preprocessed and fit
# to the output size, the units in the PNG's parameters as sd-webui-controlnet writes them.
CD=$DATA/controlnet
CN=$CD/models/cn-sd1-tiny/cn-sd1-tiny.safetensors
EDGES=$CD/inputs/cn_t2i_sd1_euler_control.png
ok "controlnet, two units of one file" $G -p "a cube" --steps 2 --control "$CN:$EDGES:0.8:0.1:0.9" \
    --control "$CN:$CD/inputs/cn_t2i_sd1_euler_control_src.png" --control-preprocess canny:100:200 --control-mode prompt -o "$TMP/cn.png"
for want in 'ControlNet 0: "Module: canny, Model: cn-sd1-tiny [' 'Weight: 0.8, Resize Mode: Crop and Resize' \
    'Threshold A: 100, Threshold B: 200, Guidance Start: 0.1, Guidance End: 0.9' 'Control Mode: My prompt is more important' \
    'ControlNet 1: "Module: canny, Model: cn-sd1-tiny ['; do
    if grep -a -q -F "$want" "$TMP/cn.png"; then echo "ok   parameters: $want"; else echo "FAIL parameters lack: $want"; fails=$((fails + 1)); fi
done
ok "controlnet, a control image of another size, resize and fill" $G -p x --steps 1 \
    --control "$CN:$CD/inputs/cn_t2i_sd1_euler_scale_startend_control.png" --control-resize fill -o "$TMP/cnf.png"
grep -a -q -F 'Resize Mode: Resize and Fill' "$TMP/cnf.png" || { echo "FAIL resize mode in parameters"; fails=$((fails + 1)); }
ok "controlnet guess mode, sdxl" "$SDW" generate -m "$DATA/models/sdxl-tiny/sdxl-tiny.safetensors" -W 64 -H 64 --steps 2 -p x \
    --control "$CD/models/cn-sdxl-tiny/cn-sdxl-tiny.safetensors:$CD/inputs/cn_t2i_sdxl_euler_control.png" --control-guess -o "$TMP/cnx.png"
ok "controlnet mode, diffusers folder" $G -p x --steps 1 --control "$CD/models/cn-sd1-tiny/diffusers:$EDGES" \
    --control-mode controlnet -o "$TMP/cnd.png"
grep -a -q -F 'Control Mode: ControlNet is more important' "$TMP/cnd.png" || { echo "FAIL control mode in parameters"; fails=$((fails + 1)); }
bad "controlnet file missing" "nope-cn.safetensors" $G -p x --control "$TMP/nope-cn.safetensors:$EDGES"
bad "controlnet for another family" "cn-sdxl-tiny.safetensors" $G -p x --control "$CD/models/cn-sdxl-tiny/cn-sdxl-tiny.safetensors:$EDGES"
bad "controlnet image unreadable" "garbled.png" $G -p x --control "$CN:$TMP/garbled.png"
bad "controlnet scale out of range" "SCALE" $G -p x --control "$CN:$EDGES:2.5"
bad "controlnet start after end" "START < END" $G -p x --control "$CN:$EDGES:1:0.6:0.4"
bad "controlnet spec malformed" "FILE:IMAGE" $G -p x --control "$CN"
bad "controlnet unknown mode" "--control-mode" $G -p x --control "$CN:$EDGES" --control-mode louder
bad "controlnet unknown preprocessor" "sobel" $G -p x --control "$CN:$EDGES" --control-preprocess sobel
bad "controlnet options without a unit" "need a --control" $G -p x --control-guess
bad "controlnet on flux" "SD1, SD2 and SDXL" $FX $PARTS $T5 -p x --control "$CN:$EDGES"
bad "unknown option" "unknown option" $G -p x --frobnicate 1
bad "unknown command" "unknown command" "$SDW" frobnicate

[ $fails -eq 0 ] && echo "all CLI checks passed" || echo "$fails CLI checks failed"
exit $fails
