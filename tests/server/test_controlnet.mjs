// test_controlnet.mjs: ControlNets through the server (issue 19), against
// the tiny SD1 model and the tiny ControlNets copied into a temporary
// --controlnet-dir: sd-webui-controlnet's API (alwayson_scripts units on
// txt2img / img2img, /controlnet/model_list, module_list, detect, version),
// the native API's "controlnets" streamed over SSE (and checked against the
// reference pipeline's image), the ControlNet cache across jobs, and bad
// units answered with 400s naming the problem while the server stays up.
import { spawnSync } from 'node:child_process';
import { copyFileSync, cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import {
  assert, run, startServer, json, submit, sse, decodePNG, assertNotFlat, assertError, BIN, DATA,
} from './lib.mjs';

const CN = `${DATA}/controlnet`;
const dir = mkdtempSync(path.join(tmpdir(), 'sdw-cn-'));
// The lllyasviel layout leaves the attention head count out: a config beside the file says it.
copyFileSync(`${CN}/models/cn-sd1-tiny/cn-sd1-tiny.safetensors`, `${dir}/cn-sd1-tiny.safetensors`);
copyFileSync(`${CN}/models/cn-sd1-tiny/diffusers/config.json`, `${dir}/cn-sd1-tiny.config.json`);
copyFileSync(`${CN}/models/cn-sd1-tiny-alt/cn-sd1-tiny-alt.noprefix.safetensors`, `${dir}/cn-sd1-tiny-alt.safetensors`);
copyFileSync(`${CN}/models/cn-sd1-tiny-alt/cn-sd1-tiny-alt.config.json`, `${dir}/cn-sd1-tiny-alt.config.json`);
copyFileSync(`${CN}/models/cn-sdxl-tiny/cn-sdxl-tiny.safetensors`, `${dir}/cn-sdxl-tiny.safetensors`);
cpSync(`${CN}/models/cn-sd1-tiny/diffusers`, `${dir}/folder/cn-sd1-tiny-diffusers`, { recursive: true });
writeFileSync(`${dir}/old-canny.pth`, 'not a real pickle');
process.on('exit', () => rmSync(dir, { recursive: true, force: true }));

// f32: the reference comparison below holds on every host.
const srv = await startServer(['--controlnet-dir', dir, '--cache-bytes', '64M', '--precision', 'f32']);
const b64 = (p) => readFileSync(p).toString('base64');
const scene = b64(`${CN}/canny/scene64_input.png`);
const edges1 = b64(`${CN}/inputs/cn_t2i_sd1_multi_control_1.png`);   // already a canny map

function unitsOf(info) {
  return [...info.matchAll(/ControlNet (\d+): "([^"]*)"/g)].map((m) => ({ k: Number(m[1]), text: m[2] }));
}

// The image of an A1111 answer, checked against its infotext.
function a1111Image(res) {
  assert.equal(res.status, 200, JSON.stringify(res.data).slice(0, 400));
  assert.equal(res.data.images.length, 1);
  const info = JSON.parse(res.data.info);
  const img = decodePNG(Buffer.from(res.data.images[0], 'base64'));
  assertNotFlat(img);
  assert.equal(img.text.parameters, info.infotexts[0]);
  return { img, info };
}

const twoUnits = (title0) => [
  { enabled: true, module: 'canny', model: title0, weight: 0.8, image: scene, resize_mode: 'Crop and Resize',
    processor_res: 64, threshold_a: 100, threshold_b: 200, guidance_start: 0, guidance_end: 1,
    control_mode: 'Balanced', pixel_perfect: false },
  { enabled: true, module: 'none', model: 'cn-sd1-tiny-alt', weight: 0.6, image: { image: edges1, mask: null },
    guidance_start: 0.25, guidance_end: 0.75, control_mode: 0 },
];
let titles;

await run([
  ['/controlnet/version, model_list, module_list', async () => {
    assert.deepEqual((await json(srv, 'GET', '/controlnet/version')).data, { version: 2 });
    const models = (await json(srv, 'GET', '/controlnet/model_list')).data.model_list;
    titles = Object.fromEntries(models.map((t) => [t.replace(/ \[.*$/, ''), t]));
    assert.deepEqual(Object.keys(titles).sort(),
      ['cn-sd1-tiny', 'cn-sd1-tiny-alt', 'cn-sd1-tiny-diffusers', 'cn-sdxl-tiny'], JSON.stringify(models));
    assert.match(titles['cn-sd1-tiny'], /^cn-sd1-tiny \[[0-9a-f]{8}\]$/);
    assert.equal(titles['cn-sdxl-tiny'], 'cn-sdxl-tiny [e3b0c442]', 'A1111 hashes the 64 KiB at 1 MiB: none here');
    const mods = (await json(srv, 'GET', '/controlnet/module_list')).data;
    for (const m of ['none', 'canny', 'invert', 'threshold']) assert.ok(mods.module_list.includes(m), m);
    assert.deepEqual(mods.module_detail.canny.sliders.map((s) => s.value), [512, 100, 200]);
    const alias = (await json(srv, 'GET', '/controlnet/module_list?alias_names=true')).data.module_list;
    assert.ok(alias.includes('invert (from white bg & black line)'));
  }],

  ['/controlnet/detect gives the CLI\'s canny map', async () => {
    const res = await json(srv, 'POST', '/controlnet/detect', {
      controlnet_module: 'canny', controlnet_input_images: [scene], controlnet_processor_res: 64,
      controlnet_threshold_a: 100, controlnet_threshold_b: 200,
    });
    assert.equal(res.status, 200, JSON.stringify(res.data));
    assert.equal(res.data.info, 'Success');
    const map = decodePNG(Buffer.from(res.data.images[0], 'base64'));
    const out = path.join(dir, 'cli-canny.png');
    const cli = spawnSync(BIN, ['preprocess', 'canny:100:200', `${CN}/canny/scene64_input.png`, '-o', out]);
    assert.equal(cli.status, 0, cli.stderr.toString());
    const want = decodePNG(readFileSync(out));
    assert.equal(map.width, want.width);
    assert.equal(map.height, want.height);
    for (let i = 0; i < map.width * map.height; i++)
      assert.equal(map.pixels[i * map.channels], want.pixels[i * want.channels], `pixel ${i}`);
    assert.ok(map.pixels.some((v) => v === 255), 'some edges');
    // The default processor resolution (512) scales the map as sd-webui-controlnet does.
    const big = await json(srv, 'POST', '/controlnet/detect', { controlnet_module: 'canny', controlnet_input_images: [scene] });
    assert.equal(decodePNG(Buffer.from(big.data.images[0], 'base64')).width, 512);
    assertError(await json(srv, 'POST', '/controlnet/detect', { controlnet_module: 'depth_leres', controlnet_input_images: [scene] }),
      400, /controlnet_module/);
    assertError(await json(srv, 'POST', '/controlnet/detect', { controlnet_module: 'canny' }), 400, /no image/);
  }],

  ['A1111 txt2img with two units: canny by the server and an already processed map', async () => {
    const body = {
      prompt: 'a lighthouse', seed: 5, steps: 4, width: 64, height: 64, cfg_scale: 7,
      alwayson_scripts: { controlnet: { args: twoUnits(titles['cn-sd1-tiny']) } },
    };
    const { img, info } = a1111Image(await json(srv, 'POST', '/sdapi/v1/txt2img', body));
    const units = unitsOf(info.infotexts[0]);
    assert.deepEqual(units.map((u) => u.k), [0, 1], info.infotexts[0]);
    assert.match(units[0].text, /^Module: canny, Model: cn-sd1-tiny \[[0-9a-f]{8}\], Weight: 0.8, Resize Mode: Crop and Resize/);
    assert.match(units[0].text, /Processor Res: 64, Threshold A: 100, Threshold B: 200, Guidance Start: 0, Guidance End: 1/);
    assert.match(units[1].text, /^Module: none, Model: cn-sd1-tiny-alt \[[0-9a-f]{8}\], Weight: 0.6/);
    assert.match(units[1].text, /Guidance Start: 0.25, Guidance End: 0.75/);
    // The units steer: the same job without them draws another image.
    const plain = a1111Image(await json(srv, 'POST', '/sdapi/v1/txt2img', { ...body, alwayson_scripts: {} }));
    assert.ok(!plain.info.infotexts[0].includes('ControlNet'));
    assert.notDeepEqual(plain.img.pixels, img.pixels);
    // "ControlNet is more important" and the diffusers folder by its name.
    const folder = a1111Image(await json(srv, 'POST', '/sdapi/v1/txt2img', {
      ...body, alwayson_scripts: { ControlNet: { args: [{ ...twoUnits()[0], model: 'cn-sd1-tiny-diffusers', control_mode: 2 }] } },
    }));
    assert.match(unitsOf(folder.info.infotexts[0])[0].text, /Model: cn-sd1-tiny-diffusers, .*Control Mode: ControlNet is more important/);
  }],

  ['A1111 img2img: a unit without an image uses the init image', async () => {
    const { info } = a1111Image(await json(srv, 'POST', '/sdapi/v1/img2img', {
      prompt: 'a house', init_images: [scene], denoising_strength: 0.6, steps: 4, seed: 3,
      alwayson_scripts: { controlnet: { args: [{ module: 'canny', model: 'cn-sd1-tiny', pixel_perfect: true }] } },
    }));
    assert.match(unitsOf(info.infotexts[0])[0].text, /Module: canny, .*Processor Res: 64/);
  }],

  ['native API with SSE: the reference pipeline\'s image (cn_t2i_sd1_multi)', async () => {
    const ref = JSON.parse(readFileSync(`${CN}/cases/cn_t2i_sd1_multi.json`));
    const job = await submit(srv, {
      prompt: ref.prompt, negative_prompt: ref.negative_prompt, seed: ref.seed, steps: ref.steps,
      guidance_scale: ref.guidance_scale, width: ref.width, height: ref.height, sampler: 'euler', scheduler: 'normal',
      rng: 'cpu', controlnets: ref.control.map((c, i) => ({
        model: ['cn-sd1-tiny', 'cn-sd1-tiny-alt.safetensors'][i], image: b64(`${CN}/${c.control_image}`),
        preprocessor: 'none', scale: ref.controlnet_conditioning_scale[i], start: ref.control_guidance_start[i],
        end: ref.control_guidance_end[i], mode: 'balanced',
      })),
    });
    const events = await sse(srv.url + job.sse_url);
    const progress = events.filter((e) => e.event === 'progress');
    assert.deepEqual(progress.map((e) => e.data.step), [1, 2, 3, 4, 5, 6, 7, 8]);
    const done = events.at(-2).data;
    assert.equal(done.type, 'complete', JSON.stringify(done));
    assert.deepEqual(unitsOf(done.info).map((u) => u.k), [0, 1]);
    const img = decodePNG(Buffer.from(done.image, 'base64'));
    assert.equal(img.text.parameters, done.info);
    const want = decodePNG(readFileSync(`${CN}/cases/cn_t2i_sd1_multi_0.png`));
    let max = 0;
    for (let i = 0; i < img.pixels.length; i++) max = Math.max(max, Math.abs(img.pixels[i] - want.pixels[i]));
    assert.ok(max <= 2, `differs from the reference image by up to ${max}`);
    console.log(`     (largest difference to the reference image: ${max} of 255)`);
  }],

  ['the cache loads each ControlNet once across jobs', async () => {
    for (const name of ['cn-sd1-tiny', 'cn-sd1-tiny-alt', 'cn-sd1-tiny-diffusers'])
      assert.equal(srv.stderr.split(`ControlNet ${titles[name]} loaded`).length - 1, 1, `${name}:\n${srv.stderr}`);
  }],

  ['bad units: 400 naming the problem, and the server stays up', async () => {
    const unit = (over) => ({ prompt: 'x', steps: 2, width: 64, height: 64,
      alwayson_scripts: { controlnet: { args: [{ module: 'canny', model: 'cn-sd1-tiny', image: scene, ...over }] } } });
    const bad = [
      [{ model: 'nope' }, /args\[0\]: model: unknown ControlNet 'nope'/],
      [{ model: '../cn-sd1-tiny' }, /'\.\.\/cn-sd1-tiny' must be a name inside --controlnet-dir/],
      [{ model: 'old-canny.pth' }, /pickle/],
      [{ module: 'openpose_full' }, /args\[0\]: module: /],
      [{ image: 'not base64!' }, /args\[0\]: image: invalid base64/],
      [{ weight: 2.5 }, /args\[0\]: weight: must be in \[0, 2\] \(got 2.5\)/],
      [{ model: titles['cn-sdxl-tiny'] }, /ControlNet 'cn-sdxl-tiny.safetensors' is for sdxl models, and .* is sd1/i],
    ];
    for (const [over, msg] of bad) assertError(await json(srv, 'POST', '/sdapi/v1/txt2img', unit(over)), 400, msg);
    const native = await json(srv, 'POST', '/v1/jobs', { prompt: 'x', controlnets: [{ model: 'cn-sdxl-tiny', image: scene }] });
    assertError(native, 400, /controlnets\[0\]: model: ControlNet 'cn-sdxl-tiny.safetensors' is for sdxl/i);
    assertError(await json(srv, 'POST', '/v1/jobs', { prompt: 'x', controlnets: [{ model: 'cn-sd1-tiny' }] }), 400,
      /controlnets\[0\]: image: required/);
    assert.equal((await json(srv, 'GET', '/health')).status, 200);
    a1111Image(await json(srv, 'POST', '/sdapi/v1/txt2img', unit({})));
    const other = await startServer([]);
    assertError(await json(other, 'POST', '/sdapi/v1/txt2img', unit({})), 400, /no --controlnet-dir/);
    assert.deepEqual((await json(other, 'GET', '/controlnet/model_list')).data, { model_list: [] });
  }],
]);
