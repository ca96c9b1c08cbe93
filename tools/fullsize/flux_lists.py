#!/usr/bin/env python3
"""flux_lists.py: writes the FLUX tensor lists of sdw-make-fullsize
(tools/fullsize/flux-*.tensors.txt), the recipe's `name dtype shape init
param` lines (tests/data/fullsize/README.md section 1; FLUX.md here).

The names and shapes are built from each part's configuration (BFL's
FluxParams / AutoEncoderParams, CLIP-L's and T5-XXL's configs) and, for the
real sizes, checked against tests/data/flux/fullsize_shapes.json (every
name, shape and usual dtype of flux1-dev/schnell.safetensors, ae.safetensors,
clip_l.safetensors and t5xxl_fp16.safetensors): nothing missing, nothing
extra. The same builders with small widths (full depth) give the flux-mini-*
lists that tests/test_fullsize_flux.c writes and loads.

    python3 tools/fullsize/flux_lists.py            # rewrite the lists
    python3 tools/fullsize/flux_lists.py --check    # fail if a list is stale
"""
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
SHAPES = os.path.join(HERE, "..", "..", "tests", "data", "flux", "fullsize_shapes.json")


def transformer(hidden, heads, in_ch, ctx, vec, depth, depth_single, guidance):
    hd, mlp = hidden // heads, 4 * hidden
    t = []

    def lin(name, out, inp, bias=True):
        t.append((name + ".weight", [out, inp]))
        if bias:
            t.append((name + ".bias", [out]))

    lin("img_in", hidden, in_ch)
    lin("time_in.in_layer", hidden, 256)
    lin("time_in.out_layer", hidden, hidden)
    lin("vector_in.in_layer", hidden, vec)
    lin("vector_in.out_layer", hidden, hidden)
    if guidance:
        lin("guidance_in.in_layer", hidden, 256)
        lin("guidance_in.out_layer", hidden, hidden)
    lin("txt_in", hidden, ctx)
    for i in range(depth):
        for s in ("img", "txt"):
            p = "double_blocks.%d.%s_" % (i, s)
            lin(p + "mod.lin", 6 * hidden, hidden)
            lin(p + "attn.qkv", 3 * hidden, hidden)
            t.append((p + "attn.norm.query_norm.scale", [hd]))
            t.append((p + "attn.norm.key_norm.scale", [hd]))
            lin(p + "attn.proj", hidden, hidden)
            lin(p + "mlp.0", mlp, hidden)
            lin(p + "mlp.2", hidden, mlp)
    for i in range(depth_single):
        p = "single_blocks.%d." % i
        lin(p + "linear1", 3 * hidden + mlp, hidden)
        lin(p + "linear2", hidden, hidden + mlp)
        t.append((p + "norm.query_norm.scale", [hd]))
        t.append((p + "norm.key_norm.scale", [hd]))
        lin(p + "modulation.lin", 3 * hidden, hidden)
    lin("final_layer.linear", in_ch, hidden)
    lin("final_layer.adaLN_modulation.1", 2 * hidden, hidden)
    return t


def autoencoder(ch, ch_mult, res_blocks, z):
    t = []

    def conv(name, cout, cin, k):
        t.append((name + ".weight", [cout, cin, k, k]))
        t.append((name + ".bias", [cout]))

    def norm(name, c):
        t.append((name + ".weight", [c]))
        t.append((name + ".bias", [c]))

    def resnet(p, cin, cout):
        norm(p + ".norm1", cin)
        conv(p + ".conv1", cout, cin, 3)
        norm(p + ".norm2", cout)
        conv(p + ".conv2", cout, cout, 3)
        if cin != cout:
            conv(p + ".nin_shortcut", cout, cin, 1)

    def mid(p, c):
        resnet(p + ".mid.block_1", c, c)
        norm(p + ".mid.attn_1.norm", c)
        for n in ("q", "k", "v", "proj_out"):
            conv(p + ".mid.attn_1." + n, c, c, 1)
        resnet(p + ".mid.block_2", c, c)

    levels = len(ch_mult)
    conv("encoder.conv_in", ch, 3, 3)
    cin = ch
    for i in range(levels):
        cout = ch * ch_mult[i]
        for j in range(res_blocks):
            resnet("encoder.down.%d.block.%d" % (i, j), cin, cout)
            cin = cout
        if i != levels - 1:
            conv("encoder.down.%d.downsample.conv" % i, cin, cin, 3)
    mid("encoder", cin)
    norm("encoder.norm_out", cin)
    conv("encoder.conv_out", 2 * z, cin, 3)
    top = ch * ch_mult[-1]
    conv("decoder.conv_in", top, z, 3)
    mid("decoder", top)
    cin = top
    for i in reversed(range(levels)):
        cout = ch * ch_mult[i]
        for j in range(res_blocks + 1):
            resnet("decoder.up.%d.block.%d" % (i, j), cin, cout)
            cin = cout
        if i != 0:
            conv("decoder.up.%d.upsample.conv" % i, cin, cin, 3)
    norm("decoder.norm_out", cin)
    conv("decoder.conv_out", 3, cin, 3)
    return t


def clip_text(width, layers, mlp, vocab=49408, positions=77):
    p = "text_model."
    t = [(p + "embeddings.token_embedding.weight", [vocab, width]),
         (p + "embeddings.position_embedding.weight", [positions, width])]
    for i in range(layers):
        q = p + "encoder.layers.%d." % i
        for n in ("k_proj", "v_proj", "q_proj", "out_proj"):
            t.append((q + "self_attn.%s.weight" % n, [width, width]))
            t.append((q + "self_attn.%s.bias" % n, [width]))
        t += [(q + "layer_norm1.weight", [width]), (q + "layer_norm1.bias", [width]),
              (q + "mlp.fc1.weight", [mlp, width]), (q + "mlp.fc1.bias", [mlp]),
              (q + "mlp.fc2.weight", [width, mlp]), (q + "mlp.fc2.bias", [width]),
              (q + "layer_norm2.weight", [width]), (q + "layer_norm2.bias", [width])]
    t += [(p + "final_layer_norm.weight", [width]), (p + "final_layer_norm.bias", [width])]
    return t


def t5_encoder(d, heads, d_kv, d_ff, layers, vocab=32128, buckets=32):
    inner = heads * d_kv
    t = [("shared.weight", [vocab, d])]
    for i in range(layers):
        p = "encoder.block.%d.layer." % i
        for n in ("q", "k", "v"):
            t.append((p + "0.SelfAttention.%s.weight" % n, [inner, d]))
        t.append((p + "0.SelfAttention.o.weight", [d, inner]))
        if i == 0:
            t.append((p + "0.SelfAttention.relative_attention_bias.weight", [buckets, heads]))
        t += [(p + "0.layer_norm.weight", [d]),
              (p + "1.DenseReluDense.wi_0.weight", [d_ff, d]), (p + "1.DenseReluDense.wi_1.weight", [d_ff, d]),
              (p + "1.DenseReluDense.wo.weight", [d, d_ff]), (p + "1.layer_norm.weight", [d])]
    t.append(("encoder.final_layer_norm.weight", [d]))
    return t


def numel(shape):
    n = 1
    for s in shape:
        n *= s
    return n


def init_of(part, name, shape):
    """(init, param) by the recipe's rules: fan_in = in_features or
    in_channels * kh * kw; norm = norm scales; emb = embedding tables."""
    if name.endswith(".bias"):
        return "bias", "-"
    if part == "transformer" and name.endswith(".scale"):
        return "norm", "-"
    if part == "clip_l" and "embeddings." in name:
        return "emb", "-"
    if part == "t5xxl" and (name == "shared.weight" or "relative_attention_bias" in name):
        return "emb", "-"
    if len(shape) == 1:
        return "norm", "-"
    return "weight", str(numel(shape[1:]))


DTYPE = {"transformer": "BF16", "ae": "F32", "clip_l": "F16", "t5xxl": "F16"}

# (list name, part, builder, the fullsize_shapes.json model it must equal or None)
FULL = [
    ("flux-dev", "transformer", lambda: transformer(3072, 24, 64, 4096, 768, 19, 38, True), "flux1-dev.safetensors"),
    ("flux-schnell", "transformer", lambda: transformer(3072, 24, 64, 4096, 768, 19, 38, False),
     "flux1-schnell.safetensors"),
    ("flux-ae", "ae", lambda: autoencoder(128, (1, 2, 4, 4), 2, 16), "ae.safetensors"),
    ("flux-clip_l", "clip_l", lambda: clip_text(768, 12, 3072), "clip_l.safetensors"),
    ("flux-t5xxl", "t5xxl", lambda: t5_encoder(4096, 64, 64, 10240, 24), "t5xxl_fp16.safetensors"),
]
# Small widths at the real depths (19 + 38 blocks, 24 T5 layers, 12 CLIP
# layers): what the tests write, load and run in a second.
MINI = [
    ("flux-mini-dev", "transformer", lambda: transformer(64, 4, 64, 64, 64, 19, 38, True), None),
    ("flux-mini-schnell", "transformer", lambda: transformer(64, 4, 64, 64, 64, 19, 38, False), None),
    ("flux-mini-ae", "ae", lambda: autoencoder(32, (1, 1, 1, 1), 1, 16), None),
    ("flux-mini-clip_l", "clip_l", lambda: clip_text(64, 12, 256), None),
    ("flux-mini-t5xxl", "t5xxl", lambda: t5_encoder(64, 4, 16, 128, 24), None),
]


def render(part, tensors):
    lines = ["# name dtype shape init param   (shape: comma-separated dims or 'scalar'; param: fan_in for 'weight', "
             "the value for 'const', '-' otherwise; order = file order) -- written by flux_lists.py"]
    for name, shape in sorted(tensors, key=lambda x: x[0].encode()):
        init, param = init_of(part, name, shape)
        lines.append("%s %s %s %s %s" % (name, DTYPE[part], ",".join(map(str, shape)), init, param))
    return "\n".join(lines) + "\n"


def main():
    check = "--check" in sys.argv[1:]
    real = json.load(open(SHAPES))["models"]
    bad = 0
    for lname, part, build, ref in FULL + MINI:
        tensors = build()
        if ref:
            want = {n: (s, d) for n, s, d in real[ref]["tensors"]}
            got = {n: s for n, s in tensors}
            if len(got) != len(tensors):
                sys.exit("%s: a name twice" % lname)
            missing, extra = sorted(set(want) - set(got)), sorted(set(got) - set(want))
            wrong = [n for n in got if n in want and (list(want[n][0]) != got[n] or want[n][1] != DTYPE[part])]
            if missing or extra or wrong:
                sys.exit("%s differs from %s: missing %s, extra %s, shape/dtype %s" % (lname, ref, missing[:5],
                                                                                        extra[:5], wrong[:5]))
            if sum(numel(s) for _, s in tensors) != real[ref]["n_params"]:
                sys.exit("%s: parameter count differs from %s" % (lname, ref))
        text = render(part, tensors)
        path = os.path.join(HERE, lname + ".tensors.txt")
        if check:
            old = open(path).read() if os.path.exists(path) else ""
            if old != text:
                print("stale: %s" % path)
                bad += 1
        else:
            with open(path, "w") as f:
                f.write(text)
        print("%-20s %4d tensors %14d params" % (lname, len(tensors), sum(numel(s) for _, s in tensors)))
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
