#!/usr/bin/env python3
"""controlnet_lists.py: writes the full-size ControlNet tensor lists of
sdw-make-fullsize (tools/fullsize/*-controlnet.tensors.txt), the recipe's
`name dtype shape init param` lines (tests/data/fullsize/README.md section 1;
CONTROLNET.md here).

A ControlNet is a copy of its base UNet's encoder half (time embedding, SDXL's
add embedding, conv_in, input / down blocks, middle block) plus the hint
encoder and one 1x1 "zero" convolution per skip tensor and one for the middle.
So the UNet half is taken from the base's list, which section 2 of that
README checks against the official configs (sd15.tensors.txt,
sdxl.tensors.txt): the same names (renamed to the ControlNet's layout) and
shapes. Added here:

* sd15-controlnet: control_v11p_sd15_canny's layout (lllyasviel, every key
  under "control_model."): input_hint_block.{0,2,...,14} with the real
  widths 3 -> 16 -> 16 -> 32 -> 32 -> 96 -> 96 -> 256 -> 320 (cldm.py),
  zero_convs.N.0 (N < 12), middle_block_out.0.
* sdxl-controlnet: diffusers/controlnet-canny-sdxl-1.0's layout (diffusers
  names, its diffusion_pytorch_model.fp16.safetensors): the LDM names of
  sdxl.tensors.txt mapped to diffusers' (as the converters do),
  controlnet_cond_embedding.{conv_in, blocks.0..5, conv_out},
  controlnet_down_blocks.N (N < 9), controlnet_mid_block.

Both F16 (the usual safetensors distributions). Lines sorted by name (strcmp).

    python3 tools/fullsize/controlnet_lists.py            # rewrite the lists
    python3 tools/fullsize/controlnet_lists.py --check    # fail if a list is stale
"""
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
UNET = "model.diffusion_model."
HINT = (16, 32, 96, 256)   # conditioning_embedding_out_channels of every released ControlNet
DTYPE = "F16"


def read_list(name):
    rows = []
    with open(os.path.join(HERE, name + ".tensors.txt")) as f:
        for line in f:
            if line.startswith("#") or not line.strip():
                continue
            n, dt, shape, init, param = line.split()
            rows.append((n, [int(d) for d in shape.split(",")] if shape != "scalar" else [], init, param))
    return rows


def encoder_half(rows):
    """The base UNet's tensors a ControlNet copies, LDM names without the prefix."""
    keep = ("time_embed.", "label_emb.", "input_blocks.", "middle_block.")
    return [(n[len(UNET):], s, i, p) for n, s, i, p in rows if n.startswith(UNET) and n[len(UNET):].startswith(keep)]


def numel(shape):
    p = 1
    for d in shape:
        p *= d
    return p


def conv(name, cout, cin, k):
    return [(name + ".weight", [cout, cin, k, k], "weight", str(cin * k * k)), (name + ".bias", [cout], "bias", "-")]


def hint_encoder(names, out):
    """conv_in 3 -> 16, then (same width, stride-2 to the next) x 3, conv_out -> out."""
    t = conv(names[0], HINT[0], 3, 3)
    for i in range(3):
        t += conv(names[1 + 2 * i], HINT[i], HINT[i], 3)
        t += conv(names[2 + 2 * i], HINT[i + 1], HINT[i], 3)
    return t + conv(names[7], out, HINT[3], 3)


def skip_widths(half):
    """The channels of every skip tensor in order: input block K's output
    (conv_in for K = 0, else a resnet's conv2 or a downsampler)."""
    widths = {}
    for n, s, _, _ in half:
        m = re.match(r"input_blocks\.(\d+)\.0\.(weight|out_layers\.3\.weight|op\.weight)$", n)
        if m:
            widths[int(m.group(1))] = s[0]
    return [widths[k] for k in sorted(widths)]


def sd15():
    half = encoder_half(read_list("sd15"))
    t = [("control_model." + n, s, i, p) for n, s, i, p in half]
    names = ["control_model.input_hint_block.%d" % (2 * k) for k in range(8)]
    t += hint_encoder(names, 320)
    widths = skip_widths(half)
    assert len(widths) == 12, widths
    for k, c in enumerate(widths):
        t += conv("control_model.zero_convs.%d.0" % k, c, c, 1)
    t += conv("control_model.middle_block_out.0", 1280, 1280, 1)
    return t


RESNET = {"in_layers.0": "norm1", "in_layers.2": "conv1", "emb_layers.1": "time_emb_proj",
          "out_layers.0": "norm2", "out_layers.3": "conv2", "skip_connection": "conv_shortcut"}


def resnet_part(rest):
    for ldm, diff in RESNET.items():
        if rest.startswith(ldm + "."):
            return diff + rest[len(ldm):]
    raise ValueError("unknown resnet tensor " + rest)


def diffusers_name(n, layers):
    """LDM UNet name (no prefix) -> diffusers name, the encoder half's rules of
    src/models/unet_config.c's sdw_unet_ldm_name, inverted."""
    fixed = {"time_embed.0.": "time_embedding.linear_1.", "time_embed.2.": "time_embedding.linear_2.",
             "label_emb.0.0.": "add_embedding.linear_1.", "label_emb.0.2.": "add_embedding.linear_2.",
             "input_blocks.0.0.": "conv_in.", "middle_block.1.": "mid_block.attentions.0."}
    for a, b in fixed.items():
        if n.startswith(a):
            return b + n[len(a):]
    m = re.match(r"middle_block\.([02])\.(.*)", n)
    if m:
        return "mid_block.resnets.%d.%s" % (int(m.group(1)) // 2, resnet_part(m.group(2)))
    m = re.match(r"input_blocks\.(\d+)\.(\d)\.(.*)", n)
    k, sub, rest = int(m.group(1)), int(m.group(2)), m.group(3)
    level, j = (k - 1) // (layers + 1), (k - 1) % (layers + 1)
    if rest.startswith("op."):
        return "down_blocks.%d.downsamplers.0.conv.%s" % (level, rest[3:])
    if sub == 1:
        return "down_blocks.%d.attentions.%d.%s" % (level, j, rest)
    return "down_blocks.%d.resnets.%d.%s" % (level, j, resnet_part(rest))


def sdxl():
    half = encoder_half(read_list("sdxl"))
    t = [(diffusers_name(n, 2), s, i, p) for n, s, i, p in half]
    names = ["controlnet_cond_embedding.conv_in"] + ["controlnet_cond_embedding.blocks.%d" % k for k in range(6)]
    t += hint_encoder(names + ["controlnet_cond_embedding.conv_out"], 320)
    widths = skip_widths(half)
    assert len(widths) == 9, widths
    for k, c in enumerate(widths):
        t += conv("controlnet_down_blocks.%d" % k, c, c, 1)
    t += conv("controlnet_mid_block", 1280, 1280, 1)
    return t


def render(tensors):
    tensors = sorted(tensors, key=lambda r: r[0].encode())
    names = [r[0] for r in tensors]
    assert len(set(names)) == len(names), "duplicate names"
    lines = ["# name dtype shape init param   (shape: comma-separated dims or 'scalar'; param: fan_in for 'weight', "
             "the value for 'const', '-' otherwise; order = file order)"]
    for n, s, i, p in tensors:
        lines.append("%s %s %s %s %s" % (n, DTYPE, ",".join(str(d) for d in s), i, p))
    return "\n".join(lines) + "\n", sum(numel(r[1]) for r in tensors), len(tensors)


def main():
    check = "--check" in sys.argv[1:]
    stale = False
    for name, build in (("sd15-controlnet", sd15), ("sdxl-controlnet", sdxl)):
        text, params, n = render(build())
        path = os.path.join(HERE, name + ".tensors.txt")
        if check:
            with open(path) as f:
                if f.read() != text:
                    print("stale: " + path)
                    stale = True
        else:
            with open(path, "w") as f:
                f.write(text)
        print("%s: %d tensors, %d parameters" % (name, n, params))
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
