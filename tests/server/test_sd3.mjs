// test_sd3.mjs: the server with SD3 / SD3.5 end to end, with the tiny
// models: the SD3.5-medium checkpoint given with its three text encoders as
// --clip-l / --clip-g / --t5xxl (used again for the SD3 model a job switches
// to from --models-dir); /v1/info's SD3 fields; a native job streamed to its
// PNG; A1111 inpainting on a switched-to SD3 (the latent blend of a flow
// model); OpenAI generation; sizes that are not
// multiples of 16 refused; the same request in two dialects gives the same
// image.
import { mkdtempSync, copyFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { assert, run, startServer, json, submit, sse, decodePNG, encodePNG, assertNotFlat, assertError, DATA }
  from './lib.mjs';

const SD3 = `${DATA}/sd3/models`;
const TE = `${SD3}/text_encoders`;
const SD35 = `${SD3}/sd35-tiny/sd35-tiny.safetensors`;
const PARTS = ['--clip-l', `${TE}/clip_l.safetensors`, '--clip-g', `${TE}/clip_g.safetensors`,
  '--t5xxl', `${TE}/t5xxl.safetensors`];

const dir = mkdtempSync(`${tmpdir()}/sdw-sd3-models-`);
copyFileSync(`${SD3}/sd3-tiny/sd3-tiny.safetensors`, `${dir}/sd3-tiny.safetensors`);
process.on('exit', () => rmSync(dir, { recursive: true, force: true }));

const srv = await startServer([...PARTS, '--models-dir', dir], { model: SD35 });

function image(b64, w, h) {
  const img = decodePNG(Buffer.from(b64, 'base64'));
  assert.equal(img.width, w);
  assert.equal(img.height, h);
  assertNotFlat(img);
  return img;
}

async function nativeImage(body) {
  const job = await submit(srv, body);
  const events = await sse(srv.url + job.sse_url);
  assert.deepEqual(events.slice(-2).map((e) => e.event), ['complete', 'done'], JSON.stringify(events.at(-2)?.data));
  return { events, complete: events.at(-2).data };
}

await run([
  ['/v1/info: sd3.5-medium, the MMDiT, 256 T5 tokens, flow shift 3, multiples of 16', async () => {
    const info = (await json(srv, 'GET', '/v1/info')).data;
    assert.equal(info.model.family, 'sd3.5-medium');
    assert.equal(info.model.denoiser, 'mmdit');
    assert.equal(info.model.prediction, 'flow');
    assert.equal(info.model.t5_max_length, 256);
    assert.equal(info.model.flow_shift, 3);
    assert.equal(info.defaults.guidance, undefined, 'SD3 has no distilled guidance');
    assert.equal(info.limits.size_multiple, 16);
  }],

  ['native: 64x96, 3 steps streamed to a PNG with its parameters', async () => {
    const { events, complete } = await nativeImage(
      { prompt: 'a (red:1.2) apple', negative_prompt: 'blurry', width: 64, height: 96, steps: 3, seed: 7, guidance_scale: 4.5 });
    const progress = events.filter((e) => e.event === 'progress');
    assert.deepEqual(progress.map((e) => e.data.step), [1, 2, 3]);
    const previews = events.filter((e) => e.event === 'preview');
    assert.deepEqual(previews.map((e) => e.data.step), [3]);
    decodePNG(Buffer.from(previews[0].data.image, 'base64'));
    assert.equal(complete.seed, 7);
    const img = image(complete.image, 64, 96);
    assert.equal(img.text.parameters, complete.info);
    for (const m of ['a (red:1.2) apple', 'Negative prompt: blurry', 'Steps: 3', 'CFG scale: 4.5', 'Seed: 7',
      'Size: 64x96', 'Model: sd35-tiny'])
      assert.ok(complete.info.includes(m), `parameters lack "${m}": ${complete.info}`);
  }],

  ['the same request natively and through A1111 gives the same image', async () => {
    const common = { prompt: 'a boat', width: 64, height: 64, steps: 2, seed: 5 };
    const { complete } = await nativeImage({ ...common, guidance_scale: 5, sampler: 'euler', scheduler: 'simple' });
    const r = await json(srv, 'POST', '/sdapi/v1/txt2img',
      { ...common, cfg_scale: 5, sampler_name: 'Euler', scheduler: 'Simple', override_settings: { randn_source: 'CPU' } });
    assert.equal(r.status, 200, JSON.stringify(r.data));
    const a = decodePNG(Buffer.from(r.data.images[0], 'base64'));
    const b = decodePNG(Buffer.from(complete.image, 'base64'));
    assert.deepEqual(a.pixels, b.pixels);
  }],

  ['skip-layer guidance through the native and A1111 bodies; bad fields refused naming them', async () => {
    const common = { prompt: 'a boat', width: 64, height: 64, steps: 4, seed: 9, guidance_scale: 4, sampler: 'euler' };
    const plain = (await nativeImage(common)).complete;
    const slg = (await nativeImage({ ...common, slg_layers: [0, 1], slg_scale: 3, slg_start: 0, slg_end: 1 })).complete;
    assert.notEqual(slg.image, plain.image, 'skip-layer guidance changed nothing');
    const r = await json(srv, 'POST', '/sdapi/v1/txt2img', { prompt: 'a boat', width: 64, height: 64, steps: 2,
      slg_layers: [1], slg_scale: 2, slg_start: 0, slg_end: 1 });
    assert.equal(r.status, 200, JSON.stringify(r.data));
    assertError(await json(srv, 'POST', '/v1/jobs', { prompt: 'x', slg_layers: 7 }), 400, /^slg_layers: must be an array/);
    assertError(await json(srv, 'POST', '/v1/jobs', { prompt: 'x', slg_layers: [1.5] }), 400, /^slg_layers: block numbers/);
    assertError(await json(srv, 'POST', '/v1/jobs', { prompt: 'x', slg_start: 0.5, slg_end: 0.2 }), 400, /^slg_start/);
    // A block the model does not have fails the job, naming the depth.
    const job = await submit(srv, { ...common, slg_layers: [99] });
    const events = await sse(srv.url + job.sse_url);
    assert.equal(events.at(-2).event, 'error', JSON.stringify(events.at(-2)));
    assert.match(events.at(-2).data.message, /99/);
  }],

  ['sizes not multiples of 16 are refused in every dialect', async () => {
    assertError(await json(srv, 'POST', '/v1/jobs', { prompt: 'x', width: 72, height: 64 }), 400, /multiples of 16.*72x64/);
    assertError(await json(srv, 'POST', '/sdapi/v1/txt2img', { prompt: 'x', width: 64, height: 72 }), 400, /multiples of 16/);
    assertError(await json(srv, 'POST', '/v1/images/generations', { prompt: 'x', size: '72x64' }), 400, /multiples of 16/);
  }],

  ['OpenAI generation', async () => {
    const r = await json(srv, 'POST', '/v1/images/generations',
      { model: 'sd3', prompt: 'a lighthouse', size: '80x64', n: 1, steps: 2, seed: 3, response_format: 'b64_json' });
    assert.equal(r.status, 200, JSON.stringify(r.data));
    image(r.data.data[0].b64_json, 80, 64);
  }],

  ['A1111 img2img with a mask on SD3 (switched to, with the same encoders)', async () => {
    const W = 64, H = 64;
    const init = encodePNG(W, H, 3, (x, y) => [x * 4, y * 4, 128]);
    const mask = encodePNG(W, H, 1, (x) => [x < W / 2 ? 0 : 255]);
    const r = await json(srv, 'POST', '/sdapi/v1/img2img', {
      prompt: 'a cat', init_images: [init.toString('base64')], mask: mask.toString('base64'), denoising_strength: 0.8,
      width: W, height: H, steps: 4, seed: 11, cfg_scale: 3, inpainting_fill: 1,
      override_settings: { sd_model_checkpoint: 'sd3-tiny.safetensors' },
    });
    assert.equal(r.status, 200, JSON.stringify(r.data));
    const img = image(r.data.images[0], W, H);
    assert.ok(img.text.parameters.includes('Model: sd3-tiny'), img.text.parameters);
    assert.ok(img.text.parameters.includes('Denoising strength: 0.8'), img.text.parameters);
    const info = (await json(srv, 'GET', '/v1/info')).data;
    assert.equal(info.model.family, 'sd3');
  }],

  ['SIGTERM exits 0', async () => {
    assert.deepEqual(await srv.stop('SIGTERM'), { code: 0, signal: null });
  }],
]);
