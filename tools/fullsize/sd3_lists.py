#!/usr/bin/env python3
"""sd3_lists.py: writes the SD3 / SD3.5 tensor lists of sdw-make-fullsize
(tools/fullsize/sd3*-*.tensors.txt), the recipe's `name dtype shape init
param` lines (tests/data/fullsize/README.md section 1; SD3.md here), the way
flux_lists.py writes FLUX's (whose CLIP, T5 and autoencoder builders it
reuses).

The names and shapes come from each part's configuration (Stability's MMDiT /
MMDiT-X in single-file names, the 16-channel LDM autoencoder, CLIP-L and
CLIP-G with their projections) and, for the real sizes, are checked against
tests/data/sd3/fullsize_shapes.json (every name and shape of sd3_medium,
sd3.5_medium, sd3.5_large, their first_stage_model VAE, clip_l, clip_g and
t5xxl): nothing missing, nothing extra, equal parameter counts. That file has
no dtypes; the lists take the usual distribution's: SD3-medium F16, SD3.5
BF16 (Stability's checkpoints as published), CLIP-L / CLIP-G F16, the
separate VAE F16. The T5 needs no list of its own: SD3's t5xxl is the FLUX
T5-XXL encoder tensor for tensor (the official file adds
encoder.embed_tokens.weight, a copy of shared.weight that loaders do not
need), which this script checks against flux-t5xxl.tensors.txt.

    sd3-medium, sd35-medium, sd35-large   single files: model.diffusion_model.*
                                          (MMDiT) + first_stage_model.* (VAE)
    *-mmdit                               the MMDiT alone under bare names: what a
                                          GGUF holds (city96 strips the prefix)
    sd3-vae                               the VAE alone, bare LDM names
    sd3-clip_l, sd3-clip_g                HF CLIPTextModelWithProjection names
    sd3*-mini-*                           the same at small widths, real depths

    python3 tools/fullsize/sd3_lists.py            # rewrite the lists
    python3 tools/fullsize/sd3_lists.py --check    # fail if a list is stale
"""
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from flux_lists import autoencoder, clip_text, numel, t5_encoder  # noqa: E402

SHAPES = os.path.join(HERE, "..", "..", "tests", "data", "sd3", "fullsize_shapes.json")
MMDIT = "model.diffusion_model."
VAE = "first_stage_model."


def mmdit(hidden, depth, pos_max, pooled, joint, head_dim, qk_norm, dual, patch=2, in_ch=16, out_ch=16):
    """Stability's MMDiT (dual = the blocks with MMDiT-X's attn2), bare names."""
    t = []

    def lin(name, out, inp):
        t.append((name + ".weight", [out, inp]))
        t.append((name + ".bias", [out]))

    def attn(p):
        lin(p + ".qkv", 3 * hidden, hidden)
        if qk_norm:
            t.append((p + ".ln_q.weight", [head_dim]))
            t.append((p + ".ln_k.weight", [head_dim]))

    t.append(("pos_embed", [1, pos_max * pos_max, hidden]))
    t.append(("x_embedder.proj.weight", [hidden, in_ch, patch, patch]))
    t.append(("x_embedder.proj.bias", [hidden]))
    lin("t_embedder.mlp.0", hidden, 256)
    lin("t_embedder.mlp.2", hidden, hidden)
    lin("y_embedder.mlp.0", hidden, pooled)
    lin("y_embedder.mlp.2", hidden, hidden)
    lin("context_embedder", hidden, joint)
    for i in range(depth):
        last = i == depth - 1
        for s in ("x_block", "context_block"):
            p = "joint_blocks.%d.%s." % (i, s)
            pre_only = last and s == "context_block"
            attn(p + "attn")
            if not pre_only:
                lin(p + "attn.proj", hidden, hidden)
                lin(p + "mlp.fc1", 4 * hidden, hidden)
                lin(p + "mlp.fc2", hidden, 4 * hidden)
            if s == "x_block" and i in dual:
                attn(p + "attn2")
                lin(p + "attn2.proj", hidden, hidden)
            chunks = 2 if pre_only else 9 if (s == "x_block" and i in dual) else 6
            lin(p + "adaLN_modulation.1", chunks * hidden, hidden)
    lin("final_layer.linear", patch * patch * out_ch, hidden)
    lin("final_layer.adaLN_modulation.1", 2 * hidden, hidden)
    return t


def clip_proj(width, layers, mlp, proj):
    return clip_text(width, layers, mlp) + [("text_projection.weight", [proj, width])]


def prefixed(prefix, tensors):
    return [(prefix + n, s) for n, s in tensors]


def init_of(name, shape):
    """(init, param) by the recipe's rules, as flux_lists.py: biases bias; the
    MMDiT's position table and CLIP's embeddings emb; every other 1-D tensor
    (q/k RMS scales, GroupNorm, LayerNorm) norm; the rest weight with fan_in =
    the product of its dims after the first."""
    if name.endswith(".bias"):
        return "bias", "-"
    if name.endswith("pos_embed") or "embeddings." in name:
        return "emb", "-"
    if len(shape) == 1:
        return "norm", "-"
    return "weight", str(numel(shape[1:]))


REAL = {  # MMDiT configurations (fullsize_shapes.json "configs")
    "sd3-medium": dict(hidden=1536, depth=24, pos_max=192, pooled=2048, joint=4096, head_dim=64, qk_norm=False,
                       dual=()),
    "sd35-medium": dict(hidden=1536, depth=24, pos_max=384, pooled=2048, joint=4096, head_dim=64, qk_norm=True,
                        dual=tuple(range(13))),
    "sd35-large": dict(hidden=2432, depth=38, pos_max=192, pooled=2048, joint=4096, head_dim=64, qk_norm=True,
                       dual=()),
}
# Width 64 (sd3: one 64-wide head as SAI's convention has it; SD3.5: four
# 16-wide heads, which the q/k norms' length says), real depths, a 16 x 16
# position table (images up to 256 x 256); text 64 wide = the mini T5's
# d_model (flux-mini-t5xxl), CLIP-L and CLIP-G 32 wide each (cat = 64),
# pooled 32 + 32.
MINI = {
    "sd3-mini-medium": dict(REAL["sd3-medium"], hidden=64, pos_max=16, pooled=64, joint=64),
    "sd35-mini-medium": dict(REAL["sd35-medium"], hidden=64, pos_max=16, pooled=64, joint=64, head_dim=16),
    "sd35-mini-large": dict(REAL["sd35-large"], hidden=64, pos_max=16, pooled=64, joint=64, head_dim=16),
}
DTYPE = {"sd3-medium": "F16", "sd35-medium": "BF16", "sd35-large": "BF16"}
JSON_MODEL = {"sd3-medium": "sd3_medium", "sd35-medium": "sd3.5_medium", "sd35-large": "sd3.5_large"}


def full_ae():
    return autoencoder(128, (1, 2, 4, 4), 2, 16)


def mini_ae():
    return autoencoder(32, (1, 1, 1, 1), 1, 16)


def lists():
    """(list name, dtype, tensors, the fullsize_shapes.json file it must equal or None, json param count key)"""
    out = []
    for fam, cfg in REAL.items():
        m = mmdit(**cfg)
        out.append((fam, DTYPE[fam], prefixed(MMDIT, m) + prefixed(VAE, full_ae()), "single", JSON_MODEL[fam]))
        out.append((fam + "-mmdit", DTYPE[fam], m, "mmdit", JSON_MODEL[fam]))
    out.append(("sd3-vae", "F16", full_ae(), "vae", "vae"))
    out.append(("sd3-clip_l", "F16", clip_proj(768, 12, 3072, 768), "clip_l.safetensors", "clip_l"))
    out.append(("sd3-clip_g", "F16", clip_proj(1280, 32, 5120, 1280), "clip_g.safetensors", "clip_g"))
    for fam, cfg in MINI.items():
        m = mmdit(**cfg)
        real = fam.replace("-mini", "")
        out.append((fam, DTYPE[real], prefixed(MMDIT, m) + prefixed(VAE, mini_ae()), None, None))
        out.append((fam + "-mmdit", DTYPE[real], m, None, None))
    out.append(("sd3-mini-vae", "F16", mini_ae(), None, None))
    out.append(("sd3-mini-clip_l", "F16", clip_proj(32, 12, 128, 32), None, None))
    out.append(("sd3-mini-clip_g", "F16", clip_proj(32, 32, 128, 32), None, None))
    return out


def json_file_key(files, start):
    for k in files:
        if k.startswith(start):
            return k
    sys.exit("fullsize_shapes.json: no file %s*" % start)


def reference(real, kind, key):
    """{name: shape} and the parameter count the list must have."""
    files, counts = real["files"], real["parameter_counts"]
    vae = {n: s for n, s in files[json_file_key(files, "first_stage_model")]}
    if kind in ("single", "mmdit"):
        m = {n: s for n, s in files[json_file_key(files, key + ".safetensors")]}
        if kind == "mmdit":
            return {n[len(MMDIT):]: s for n, s in m.items()}, counts[key]
        m.update(vae)
        return m, counts[key] + counts["vae"]
    if kind == "vae":
        return {n[len(VAE):]: s for n, s in vae.items()}, counts["vae"]
    return {n: s for n, s in files[kind]}, counts[key]


def check_against(lname, tensors, want, n_params):
    got = {n: s for n, s in tensors}
    if len(got) != len(tensors):
        sys.exit("%s: a name twice" % lname)
    missing, extra = sorted(set(want) - set(got)), sorted(set(got) - set(want))
    wrong = [n for n in got if n in want and list(want[n]) != got[n]]
    if missing or extra or wrong:
        sys.exit("%s differs from the real file: missing %s, extra %s, shape %s" % (lname, missing[:5], extra[:5],
                                                                                     wrong[:5]))
    if sum(numel(s) for _, s in tensors) != n_params:
        sys.exit("%s: parameter count %d, the real file %d" % (lname, sum(numel(s) for _, s in tensors), n_params))


def check_t5(real):
    """SD3's t5xxl = the FLUX list's tensors, plus the embed_tokens copy."""
    files = real["files"]
    want = {n: s for n, s in files[json_file_key(files, "t5xxl")] if n != "encoder.embed_tokens.weight"}
    flux = {n: s for n, s in t5_encoder(4096, 64, 64, 10240, 24)}
    if want != flux:
        sys.exit("SD3's t5xxl differs from flux-t5xxl: %s" % sorted(set(want) ^ set(flux))[:5])
    listed = {}
    for line in open(os.path.join(HERE, "flux-t5xxl.tensors.txt")):
        if not line.startswith("#"):
            f = line.split()
            listed[f[0]] = [int(x) for x in f[2].split(",")]
    if listed != flux:
        sys.exit("flux-t5xxl.tensors.txt is not the T5-XXL encoder (run flux_lists.py)")
    key = [k for k in real["parameter_counts"] if k.startswith("t5xxl")][0]
    if sum(numel(s) for s in flux.values()) != real["parameter_counts"][key]:
        sys.exit("t5xxl: parameter count differs")


def render(dtype, tensors):
    lines = ["# name dtype shape init param   (shape: comma-separated dims or 'scalar'; param: fan_in for 'weight', "
             "the value for 'const', '-' otherwise; order = file order) -- written by sd3_lists.py"]
    for name, shape in sorted(tensors, key=lambda x: x[0].encode()):
        init, param = init_of(name, shape)
        lines.append("%s %s %s %s %s" % (name, dtype, ",".join(map(str, shape)), init, param))
    return "\n".join(lines) + "\n"


def main():
    check = "--check" in sys.argv[1:]
    real = json.load(open(SHAPES))
    check_t5(real)
    bad = 0
    for lname, dtype, tensors, kind, key in lists():
        if kind:
            want, n_params = reference(real, kind, key)
            check_against(lname, tensors, want, n_params)
        text = render(dtype, tensors)
        path = os.path.join(HERE, lname + ".tensors.txt")
        if check:
            old = open(path).read() if os.path.exists(path) else ""
            if old != text:
                print("stale: %s" % path)
                bad += 1
        else:
            with open(path, "w") as f:
                f.write(text)
        print("%-24s %4d tensors %14d params %s" % (lname, len(tensors), sum(numel(s) for _, s in tensors), dtype))
    print("sd3 t5xxl = flux-t5xxl (+ encoder.embed_tokens.weight, a copy of shared.weight)")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
