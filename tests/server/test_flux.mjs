// test_flux.mjs: the server with FLUX.1 end to end, with the tiny FLUX
// models: the transformer file given alone, its VAE, CLIP-L and T5-XXL as
// --vae / --clip-l / --t5xxl (and used again for a FLUX model a job switches
// to from --models-dir); /v1/info's FLUX fields; a native job streamed to its
// PNG; the distilled guidance in each dialect, kept apart from cfg (A1111's
// distilled_cfg_scale, OpenAI's guidance); sizes that are not multiples of
// 16 refused with the reason; the models folder listing a bare FLUX
// transformer file.
import { mkdtempSync, copyFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { assert, run, startServer, json, submit, sse, decodePNG, assertNotFlat, assertError, DATA } from './lib.mjs';

const FLUX = `${DATA}/flux/models`;
const SCHNELL = `${FLUX}/flux-tiny-schnell/flux1-schnell.safetensors`;
const PARTS = ['--vae', `${FLUX}/flux-tiny-common/ae.safetensors`,
  '--clip-l', `${FLUX}/flux-tiny-common/clip_l.safetensors`,
  '--t5xxl', `${FLUX}/flux-tiny-common/t5xxl.safetensors`];

// A models folder: FLUX dev's bare transformer beside an SD1 checkpoint.
const dir = mkdtempSync(`${tmpdir()}/sdw-flux-models-`);
copyFileSync(`${FLUX}/flux-tiny-dev/flux1-dev.safetensors`, `${dir}/flux1-dev.safetensors`);
copyFileSync(`${DATA}/models/sd1-tiny/sd1-tiny.safetensors`, `${dir}/sd1-tiny.safetensors`);
copyFileSync(`${DATA}/models/sd1-tiny/sd1-tiny.yaml`, `${dir}/sd1-tiny.yaml`);
process.on('exit', () => rmSync(dir, { recursive: true, force: true }));

const srv = await startServer([...PARTS, '--models-dir', dir], { model: SCHNELL });

function image(b64, w, h) {
  const img = decodePNG(Buffer.from(b64, 'base64'));
  assert.equal(img.width, w);
  assert.equal(img.height, h);
  assertNotFlat(img);
  return img;
}

await run([
  ['/v1/info: flux-schnell, its denoiser and T5 length, no distilled guidance, multiples of 16', async () => {
    const info = (await json(srv, 'GET', '/v1/info')).data;
    assert.equal(info.model.family, 'flux-schnell');
    assert.equal(typeof info.model.denoiser, 'string');
    assert.match(info.model.denoiser, /flux/);
    assert.equal(info.model.t5_max_length, 256);
    assert.equal(info.defaults.guidance, undefined, 'schnell has no distilled guidance');
    assert.equal(info.limits.size_multiple, 16);
  }],

  ['native: 64x64, 4 steps streamed to a PNG', async () => {
    // schnell has no distilled guidance: the field is accepted and ignored.
    const job = await submit(srv, { prompt: 'a red apple', width: 64, height: 64, steps: 4, seed: 7, guidance: 2 });
    const events = await sse(srv.url + job.sse_url);
    const progress = events.filter((e) => e.event === 'progress');
    assert.deepEqual(progress.map((e) => e.data.step), [1, 2, 3, 4]);
    assert.ok(progress.every((e) => e.data.total === 4));
    assert.deepEqual(events.filter((e) => e.event === 'preview').map((e) => e.data.step), [4]);
    for (const p of events.filter((e) => e.event === 'preview')) decodePNG(Buffer.from(p.data.image, 'base64'));
    assert.deepEqual(events.slice(-2).map((e) => e.event), ['complete', 'done'], JSON.stringify(events.at(-2)?.data));
    const complete = events.at(-2).data;
    assert.equal(complete.seed, 7);
    const img = image(complete.image, 64, 64);
    assert.equal(img.text.parameters, complete.info);
    for (const m of ['a red apple', 'Steps: 4', 'Seed: 7', 'Size: 64x64', 'Model: flux1-schnell'])
      assert.ok(complete.info.includes(m), `parameters lack "${m}": ${complete.info}`);
    assert.ok(!complete.info.includes('Distilled CFG Scale'), complete.info);
    const st = (await json(srv, 'GET', `/v1/jobs/${job.job_id}`)).data;
    assert.equal(st.status, 'completed');
    assert.equal(st.result.image, complete.image);
  }],

  ['sizes not multiples of 16 are refused in every dialect', async () => {
    assertError(await json(srv, 'POST', '/v1/jobs', { prompt: 'x', width: 72, height: 64 }), 400, /multiples of 16.*72x64/);
    assertError(await json(srv, 'POST', '/sdapi/v1/txt2img', { prompt: 'x', width: 64, height: 72 }), 400, /multiples of 16/);
    assertError(await json(srv, 'POST', '/v1/images/generations', { prompt: 'x', size: '72x64' }), 400, /multiples of 16/);
  }],

  ['guidance out of range is refused naming the field', async () => {
    assertError(await json(srv, 'POST', '/v1/jobs', { prompt: 'x', guidance: 31 }), 400, /^guidance: must be in/);
    assertError(await json(srv, 'POST', '/sdapi/v1/txt2img', { distilled_cfg_scale: -1 }), 400, /^distilled_cfg_scale: must be in/);
    assertError(await json(srv, 'POST', '/v1/images/generations', { prompt: 'x', guidance: 'high' }), 400, /^guidance: must be a number/);
  }],

  ['OpenAI generation', async () => {
    const r = await json(srv, 'POST', '/v1/images/generations',
      { model: 'flux', prompt: 'a boat', size: '80x64', n: 1, steps: 2, seed: 3, response_format: 'b64_json' });
    assert.equal(r.status, 200, JSON.stringify(r.data));
    assert.equal(r.data.data.length, 1);
    image(r.data.data[0].b64_json, 80, 64);
  }],

  ['sd-models and /v1/models list the bare FLUX transformer of --models-dir', async () => {
    const models = (await json(srv, 'GET', '/sdapi/v1/sd-models')).data;
    const names = models.map((m) => m.title.replace(/ \[[0-9a-f]{10}\]$/, ''));
    assert.deepEqual(names, ['flux1-schnell.safetensors', 'flux1-dev.safetensors', 'sd1-tiny.safetensors']);
    const ids = (await json(srv, 'GET', '/v1/models')).data.data.map((m) => m.id);
    assert.deepEqual(ids, models.map((m) => m.title));
  }],

  ['A1111 txt2img with distilled_cfg_scale on FLUX dev (switched to, with the same parts)', async () => {
    const r = await json(srv, 'POST', '/sdapi/v1/txt2img', {
      prompt: 'a cat', width: 64, height: 64, steps: 3, seed: 11, cfg_scale: 1, distilled_cfg_scale: 4.5,
      override_settings: { sd_model_checkpoint: 'flux1-dev.safetensors' },
    });
    assert.equal(r.status, 200, JSON.stringify(r.data));
    assert.equal(r.data.images.length, 1);
    const img = image(r.data.images[0], 64, 64);
    const info = JSON.parse(r.data.info);
    assert.equal(info.distilled_cfg_scale, 4.5);
    assert.equal(info.cfg_scale, 1);
    assert.equal(r.data.parameters.distilled_cfg_scale, 4.5);
    for (const m of ['CFG scale: 1', 'Distilled CFG Scale: 4.5', 'Model: flux1-dev'])
      assert.ok(img.text.parameters.includes(m), `parameters lack "${m}": ${img.text.parameters}`);
  }],

  ['FLUX dev: /v1/info gives its default guidance, which a job without one runs with', async () => {
    const info = (await json(srv, 'GET', '/v1/info')).data;
    assert.equal(info.model.family, 'flux-dev');
    assert.equal(info.model.t5_max_length, 512);
    assert.equal(info.defaults.guidance, 3.5);
    const job = await submit(srv, { prompt: 'x', width: 64, height: 96, steps: 2, seed: 1 });
    const events = await sse(srv.url + job.sse_url);
    assert.equal(events.at(-2).event, 'complete', JSON.stringify(events.at(-2).data));
    const complete = events.at(-2).data;
    image(complete.image, 64, 96);
    assert.ok(complete.info.includes('Distilled CFG Scale: 3.5'), complete.info);
  }],

  ['SIGTERM exits 0', async () => {
    assert.deepEqual(await srv.stop('SIGTERM'), { code: 0, signal: null });
  }],
]);
