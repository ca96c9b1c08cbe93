// test_models.mjs: model switching with --models-dir (listing with A1111
// titles, switching by options and by a job's `model`, queued jobs keeping
// their order, a failed load leaving the previous model in place), names
// that may never become paths (.., absolute, symlinks out, pickle files),
// and LoRA through --lora-dir.
import { mkdtempSync, copyFileSync, writeFileSync, symlinkSync, rmSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { resolve } from 'node:path';
import { spawnSync } from 'node:child_process';
import { assert, run, startServer, json, submit, sse, decodePNG, assertError, DATA, BIN, MODEL } from './lib.mjs';

// A models folder of our own: two checkpoints, a diffusers folder, a pickle
// file, and a symlink that points outside it.
const dir = mkdtempSync(`${tmpdir()}/sdw-models-`);
mkdirSync(`${dir}/sd2`);
copyFileSync(`${DATA}/models/sd1-tiny/sd1-tiny.safetensors`, `${dir}/sd1-tiny.safetensors`);
copyFileSync(`${DATA}/models/sd1-tiny/sd1-tiny.yaml`, `${dir}/sd1-tiny.yaml`);
copyFileSync(`${DATA}/models/sd2-tiny/sd2-tiny.safetensors`, `${dir}/sd2/sd2-tiny.safetensors`);
copyFileSync(`${DATA}/models/sd2-tiny/sd2-tiny.yaml`, `${dir}/sd2/sd2-tiny.yaml`);
symlinkSync(`${DATA}/models/sdxl-tiny/diffusers`, `${dir}/sdxl-link`);
symlinkSync(`${DATA}/models/sdxl-tiny/sdxl-tiny.safetensors`, `${dir}/outside.safetensors`);
writeFileSync(`${dir}/old.ckpt`, 'PK\x03\x04 not really a pickle');

// The symlinked folder stays out: its real path is outside the models folder.
const srv = await startServer(['--models-dir', dir, '--lora-dir', `${DATA}/models/sd1-tiny-lora`,
  '--step-delay-ms', '20'], { model: `${dir}/sd1-tiny.safetensors` });

async function generate(body) {
  const job = await submit(srv, { width: 64, height: 64, steps: 2, seed: 1, ...body });
  const events = await sse(srv.url + job.sse_url);
  return { job, events, last: events.at(-2) };
}

function modelOf(complete) {
  assert.equal(complete.event, 'complete', JSON.stringify(complete.data));
  const info = decodePNG(Buffer.from(complete.data.image, 'base64')).text.parameters;
  return info.match(/Model: ([^,]+)/)[1];
}

await run([
  ['sd-models and /v1/models list the folder with A1111 titles', async () => {
    const models = (await json(srv, 'GET', '/sdapi/v1/sd-models')).data;
    const names = models.map((m) => m.title.replace(/ \[[0-9a-f]{10}\]$/, ''));
    assert.deepEqual(names, ['sd1-tiny.safetensors', 'sd2/sd2-tiny.safetensors']);
    assert.equal(models[1].model_name, 'sd2_sd2-tiny');
    assert.match(models[1].title, /^sd2\/sd2-tiny\.safetensors \[[0-9a-f]{10}\]$/);
    const ids = (await json(srv, 'GET', '/v1/models')).data.data.map((m) => m.id);
    assert.deepEqual(ids, models.map((m) => m.title));
    assert.equal((await json(srv, 'GET', '/sdapi/v1/options')).data.sd_model_checkpoint, models[0].title);
  }],

  ['POST /sdapi/v1/options switches the model between jobs', async () => {
    const r = await json(srv, 'POST', '/sdapi/v1/options', { sd_model_checkpoint: 'sd2/sd2-tiny.safetensors' });
    assert.equal(r.status, 200, JSON.stringify(r.data));
    assert.match((await json(srv, 'GET', '/sdapi/v1/options')).data.sd_model_checkpoint, /^sd2\/sd2-tiny\.safetensors \[/);
    assert.equal((await json(srv, 'GET', '/v1/info')).data.model.family, 'sd2');
    assert.equal(modelOf((await generate({ prompt: 'a' })).last), 'sd2-tiny');
  }],

  ['a job naming a model loads it; queued jobs keep their order', async () => {
    const a = await submit(srv, { prompt: 'a', width: 64, height: 64, steps: 8, model: 'sd1-tiny' });
    const b = await submit(srv, { prompt: 'b', width: 64, height: 64, steps: 2, model: 'sd2_sd2-tiny' });
    const c = await submit(srv, { prompt: 'c', width: 64, height: 64, steps: 2 });
    const [ea, eb, ec] = await Promise.all([a, b, c].map((j) => sse(srv.url + j.sse_url)));
    assert.equal(modelOf(ea.at(-2)), 'sd1-tiny');
    assert.equal(modelOf(eb.at(-2)), 'sd2-tiny');
    assert.equal(modelOf(ec.at(-2)), 'sd2-tiny', 'a job without a model runs on the one loaded before it');
  }],

  ['a model that fails to load fails only its job and leaves the previous one', async () => {
    const hold = await submit(srv, { prompt: 'hold', width: 64, height: 64, steps: 10, model: 'sd1-tiny.safetensors' });
    const bad = await submit(srv, { prompt: 'x', width: 64, height: 64, steps: 2, model: 'sd2/sd2-tiny.safetensors' });
    const after = await submit(srv, { prompt: 'after', width: 64, height: 64, steps: 2 });
    // Spoil the file while the job that names it waits in the queue.
    writeFileSync(`${dir}/sd2/sd2-tiny.safetensors`, Buffer.alloc(4096, 0xff));
    const [eh, eb, ea] = await Promise.all([hold, bad, after].map((j) => sse(srv.url + j.sse_url)));
    assert.equal(modelOf(eh.at(-2)), 'sd1-tiny');
    assert.equal(eb.at(-2).event, 'error');
    assert.equal(eb.at(-2).data.code, 'model_load_failed');
    assert.match(eb.at(-2).data.message, /sd2-tiny\.safetensors/);
    assert.equal(modelOf(ea.at(-2)), 'sd1-tiny');
    assert.equal((await json(srv, 'GET', '/v1/info')).data.model.family, 'sd1');
    copyFileSync(`${DATA}/models/sd2-tiny/sd2-tiny.safetensors`, `${dir}/sd2/sd2-tiny.safetensors`);
  }],

  ['names never become paths outside the folder; pickle files are refused', async () => {
    const opt = (name) => json(srv, 'POST', '/sdapi/v1/options', { sd_model_checkpoint: name });
    assertError(await opt('old.ckpt'), 400, /pickle checkpoint.*convert it to \.safetensors/);
    assertError(await opt('weights.pt'), 400, /pickle/);
    assertError(await opt('../sd1-tiny.safetensors'), 400, /no '\.\.'/);
    assertError(await opt(resolve(MODEL)), 400, /no absolute path/);
    assertError(await opt('outside.safetensors'), 400, /unknown model/);
    assertError(await opt('sdxl-link'), 400, /unknown model/);
    assertError(await json(srv, 'POST', '/v1/jobs', { prompt: 'x', model: 'nope.safetensors' }), 400, /^model: unknown model/);
    assertError(await json(srv, 'POST', '/sdapi/v1/txt2img', { prompt: 'x', override_settings: { sd_model_checkpoint: '/etc/passwd' } }),
      400, /absolute/);
    const r = spawnSync(BIN, ['serve', '-m', `${dir}/old.ckpt`, '--port', '0'], { encoding: 'utf8' });
    assert.equal(r.status, 2);
    assert.match(r.stderr, /pickle checkpoint, which sd-worker never loads: convert it to \.safetensors/);
  }],

  ['LoRA through --lora-dir: listed, applied by field and by prompt tag', async () => {
    const loras = (await json(srv, 'GET', '/sdapi/v1/loras')).data;
    assert.deepEqual(loras.map((l) => l.name), ['sd1-tiny-lora-kohya']);
    const { last } = await generate({ prompt: 'x', model: 'sd1-tiny', loras: [{ name: 'sd1-tiny-lora-kohya', strength: 0.8 }] });
    assert.equal(last.event, 'complete', JSON.stringify(last.data));
    assert.match(last.data.info, /Lora hashes: "?sd1-tiny-lora-kohya: [0-9a-f]{12}/);
    assert.deepEqual(last.data.loras.map((l) => [l.name, l.keys_applied, l.keys_total]), [['sd1-tiny-lora-kohya', 90, 90]]);
    const res = await json(srv, 'POST', '/sdapi/v1/txt2img', { prompt: 'x <lora:sd1-tiny-lora-kohya:0.5>', steps: 2, width: 64, height: 64 });
    assert.equal(res.status, 200, JSON.stringify(res.data));
    assert.match(JSON.parse(res.data.info).infotexts[0], /Lora hashes/);
    assertError(await json(srv, 'POST', '/v1/jobs', { prompt: 'x <lora:missing:1>' }), 400, /^loras: .*missing/);
  }],

  ['SIGTERM exits 0', async () => {
    assert.deepEqual(await srv.stop('SIGTERM'), { code: 0, signal: null });
    rmSync(dir, { recursive: true, force: true });
  }],
]);
