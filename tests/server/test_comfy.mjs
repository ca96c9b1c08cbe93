// test_comfy.mjs: ComfyUI's API through the real `@saintno/comfyui-sdk`
// client (installed into BUILD/npm by the server_npm_setup test): the SD1
// default graph (txt2img) with progress and binary previews on the
// WebSocket and the result fetched through /view; the same seed twice;
// img2img from an image uploaded with the client; inpainting with a mask
// uploaded with the client (VAEEncodeForInpaint and SetLatentNoiseMask); a
// LoRA workflow; a workflow switching the checkpoint; a ControlNet workflow (Canny, ControlNetLoader,
// ControlNetApplyAdvanced); ComfyUI's 400 answers for a bad graph; /queue, /interrupt
// and /history, with a prompt waiting behind a native job in the one queue;
// /view and /upload refusing paths outside their folders; and the
// WebSocket refusing an unmasked client frame.
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { createRequire } from 'node:module';
import net from 'node:net';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { assert, run, startServer, decodePNG, encodePNG, assertNotFlat, sleep, json, BUILD, DATA } from './lib.mjs';

const entry = `${BUILD}/npm/node_modules/@saintno/comfyui-sdk/build/index.esm.js`;
if (!existsSync(entry)) {
  console.error(`FAIL: the @saintno/comfyui-sdk npm package is missing (${entry}); ` +
    `run: tests/server/npm_setup.sh ${BUILD}/npm (the server_npm_setup test does this)`);
  process.exit(1);
}
const { ComfyApi, CallWrapper, PromptBuilder } = await import(pathToFileURL(resolve(entry)).href);
const WebSocket = createRequire(resolve(`${BUILD}/npm/node_modules`) + '/')('ws');   // the client's own WebSocket library

const LORA_DIR = `${DATA}/models/sd1-tiny-lora`;
const LORA = 'sd1-tiny-lora-kohya.safetensors';
const CKPT = 'sd1-tiny.safetensors';
const PNG_SIG = '89504e470d0a1a0a';

const dir = mkdtempSync(`${tmpdir()}/sdw-comfy-`);
process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
const folders = (d) => ['--output-dir', `${d}/output`, '--input-dir', `${d}/input`, '--temp-dir', `${d}/temp`];
// The lllyasviel layout leaves the attention head count out: a config beside the file says it.
const CN = `${DATA}/controlnet/models/cn-sd1-tiny`;
mkdirSync(`${dir}/cn`);
copyFileSync(`${CN}/cn-sd1-tiny.safetensors`, `${dir}/cn/cn-sd1-tiny.safetensors`);
copyFileSync(`${CN}/diffusers/config.json`, `${dir}/cn/cn-sd1-tiny.config.json`);
// A second checkpoint a workflow may switch to.
mkdirSync(`${dir}/models`);
copyFileSync(`${DATA}/models/sd2-tiny/sd2-tiny.safetensors`, `${dir}/models/sd2-tiny.safetensors`);
copyFileSync(`${DATA}/models/sd2-tiny/sd2-tiny.yaml`, `${dir}/models/sd2-tiny.yaml`);
const srv = await startServer(['--lora-dir', LORA_DIR, '--controlnet-dir', `${dir}/cn`, '--models-dir', `${dir}/models`,
  ...folders(dir)]);

async function connect(url, clientId) {
  const api = new ComfyApi(url, clientId, { wsTimeout: 60000 });
  const connected = new Promise((res) => api.on('connected', res, { once: true }));
  api.init(5, 200);
  await api.waitForReady();
  await connected;
  return api;
}
const api = await connect(srv.url, 'sdw-test-client');

// ComfyUI's default graph (the one its page opens with), at the tiny model's size.
function defaultGraph({ seed = 42, steps = 3, text = 'a bottle on a beach' } = {}) {
  return {
    3: { class_type: 'KSampler', inputs: { seed, steps, cfg: 8, sampler_name: 'euler', scheduler: 'normal', denoise: 1,
      model: ['4', 0], positive: ['6', 0], negative: ['7', 0], latent_image: ['5', 0] } },
    4: { class_type: 'CheckpointLoaderSimple', inputs: { ckpt_name: CKPT } },
    5: { class_type: 'EmptyLatentImage', inputs: { width: 64, height: 64, batch_size: 1 } },
    6: { class_type: 'CLIPTextEncode', inputs: { text, clip: ['4', 1] } },
    7: { class_type: 'CLIPTextEncode', inputs: { text: 'text, watermark', clip: ['4', 1] } },
    8: { class_type: 'VAEDecode', inputs: { samples: ['3', 0], vae: ['4', 2] } },
    9: { class_type: 'SaveImage', inputs: { filename_prefix: 'ComfyUI', images: ['8', 0] } },
  };
}

// Runs a workflow through the client's CallWrapper; resolves with its output and
// what the client's socket carried for the prompt (started, progress, previews).
// Those are taken from the client's own event stream, listened to from before
// the prompt is queued, as ComfyUI's page listens: CallWrapper subscribes to
// "progress" only once POST /prompt has answered, an "executing" of the prompt
// has come and a GET /history has come back, so on a loaded machine it misses
// steps of the tiny model (a few ms each) sent meanwhile, and its onStart (fired
// by the first progress it sees) with them. When the whole prompt ran before
// the client handled POST /prompt's answer, run() never settles (it waits for
// an "executing" that came already): then the output comes from /history.
async function runWorkflow(wf, outNode = '9', client = api) {
  const events = [];
  const offAll = client.on('all', (ev) => events.push(ev.detail));
  const offPreview = client.on('b_preview', (ev) => events.push({ type: 'b_preview', blob: ev.detail }));
  let promptId, error, ended = () => {};
  const isEnd = (e) => e.type === 'executing' && e.data.node === null && e.data.prompt_id === promptId;
  const end = new Promise((res) => { ended = res; });
  const offEnd = client.on('executing', (ev) => { if (isEnd({ type: 'executing', data: ev.detail })) ended(); });
  let pending = () => {};
  const queued = new Promise((res) => { pending = res; });
  const builder = new PromptBuilder(wf, [], ['images']).setOutputNode('images', outNode);
  const run = new CallWrapper(client, builder)
    .onPending((id) => { promptId = id; pending(events.some(isEnd)); })
    .onFailed((e) => { error ??= e; })
    .run();
  let out;
  try {
    // run() settles without onPending when the prompt is refused.
    const finishedBeforeAnswer = await Promise.race([queued, run.then(() => false)]);
    if (finishedBeforeAnswer) {
      ended();
      const h = await client.getHistory(promptId);
      out = h?.status?.completed && { images: h.outputs[outNode] };
    } else {
      out = await run;
    }
    if (!out) throw new Error(`the workflow failed: ${error?.stack ?? error} ${JSON.stringify(error?.cause)}`);
    // The prompt's last message ("executing" with no node) may still be on its
    // way when the output came from /history.
    let timer;
    await Promise.race([end, new Promise((res, rej) => { timer = setTimeout(() => rej(new Error(`no end of ${promptId} on the socket`)), 60000); })])
      .finally(() => clearTimeout(timer));
  } finally {
    offAll();
    offPreview();
    offEnd();
  }
  const first = events.findIndex((e) => e.type === 'execution_start' && e.data.prompt_id === promptId);
  const last = events.findIndex(isEnd);
  const mine = first < 0 ? [] : events.slice(first, last + 1);
  return {
    started: first >= 0,
    progress: mine.filter((e) => e.type === 'progress' && e.data.prompt_id === promptId).map((e) => e.data),
    previews: mine.filter((e) => e.type === 'b_preview').map((e) => e.blob),
    output: out,
  };
}

// The first image of an output through /view, decoded, with its bytes.
async function fetchImage(info, client = api) {
  const res = await fetch(client.getPathImage(info));
  assert.equal(res.status, 200, `/view ${JSON.stringify(info)}`);
  assert.equal(res.headers.get('content-type'), 'image/png');
  const bytes = Buffer.from(await res.arrayBuffer());
  return { bytes, img: decodePNG(bytes) };
}

const picture = encodePNG(64, 64, 3, (x, y) => [x * 4, y * 4, 128]);
// Transparent in the centre: ComfyUI's LoadImage makes that the mask (1 - alpha), the area to repaint.
const maskPng = encodePNG(64, 64, 4, (x, y) => [0, 0, 0, x >= 16 && x < 48 && y >= 16 && y < 48 ? 0 : 255]);
let txt2imgBytes;

await run([
  ['object_info and the model folders through the client', async () => {
    assert.deepEqual(await api.getCheckpoints(), [CKPT, 'sd2-tiny.safetensors']);
    assert.deepEqual(await api.getLoras(), [LORA]);
    const s = await api.getSamplerInfo();
    assert.ok(s.sampler[0].includes('euler') && s.scheduler[0].includes('karras'), JSON.stringify(s));
    const defs = await api.getNodeDefs();
    for (const n of ['KSampler', 'LoadImage', 'VAEEncodeForInpaint', 'SetLatentNoiseMask', 'LoraLoader', 'SaveImage'])
      assert.ok(defs[n], `object_info lacks ${n}`);
    assert.equal(await api.getNodeDefs('NoSuchNode'), null);   // {} for an unknown node
    assert.deepEqual((await json(srv, 'GET', '/models/loras')).data, [LORA]);
    assert.equal((await json(srv, 'GET', '/models/nope')).status, 404);
    assert.deepEqual((await json(srv, 'GET', '/api/embeddings')).data, []);
    const stats = await api.getSystemStats();
    assert.equal(stats.system.os, 'posix');
    assert.equal(stats.devices[0].type, 'cpu');
  }],

  ['txt2img (the default graph): progress and previews on the WebSocket, the file through /view', async () => {
    const seen = await runWorkflow(defaultGraph());
    assert.ok(seen.started);
    assert.deepEqual(seen.progress.map((p) => [p.value, p.max, p.node]), [[1, 3, '3'], [2, 3, '3'], [3, 3, '3']]);
    assert.ok(seen.previews.length >= 1, 'no binary preview frame');
    const pv = Buffer.from(await seen.previews[0].arrayBuffer());
    assert.equal(pv.subarray(0, 8).toString('hex'), PNG_SIG, 'a preview is a PNG after the 8-byte header');
    const images = seen.output.images.images;
    assert.equal(images.length, 1);
    assert.deepEqual(images[0], { filename: 'ComfyUI_00001_.png', subfolder: '', type: 'output' });
    const { bytes, img } = await fetchImage(images[0]);
    assert.equal(img.width, 64);
    assert.equal(img.height, 64);
    assertNotFlat(img);
    assert.equal(JSON.parse(img.text.prompt)['3'].inputs.seed, 42, 'the prompt in the PNG');
    assert.deepEqual(readFileSync(`${dir}/output/ComfyUI_00001_.png`), bytes);
    txt2imgBytes = bytes;
  }],

  ['the same seed twice gives the same bytes; the workflow from extra_pnginfo is in the PNG', async () => {
    const seen = await runWorkflow(defaultGraph());
    const info = seen.output.images.images[0];
    assert.equal(info.filename, 'ComfyUI_00002_.png');
    assert.deepEqual((await fetchImage(info)).bytes, txt2imgBytes);
    // A raw POST /prompt as ComfyUI's page sends it, with a subfolder in the prefix.
    const wf = defaultGraph({ seed: 7 });
    wf[9].inputs.filename_prefix = 'sub/dir/pic';
    const r = await json(srv, 'POST', '/prompt', { prompt: wf, client_id: 'nobody', extra_data: { extra_pnginfo: { workflow: { nodes: [1] } } } });
    assert.equal(r.status, 200, JSON.stringify(r.data));
    assert.deepEqual(Object.keys(r.data).sort(), ['node_errors', 'number', 'prompt_id']);
    let h;
    for (let i = 0; i < 200 && !h?.status?.completed; i++) { await sleep(50); h = await api.getHistory(r.data.prompt_id); }
    assert.equal(h.status.status_str, 'success');
    const out = h.outputs['9'].images[0];
    assert.deepEqual(out, { filename: 'pic_00001_.png', subfolder: 'sub/dir', type: 'output' });
    const { img } = await fetchImage(out);
    assert.deepEqual(JSON.parse(img.text.workflow), { nodes: [1] });
    assert.equal(h.prompt[1], r.data.prompt_id);
    assert.deepEqual(h.prompt[4], ['9']);
  }],

  ['img2img from an image uploaded with the client', async () => {
    const up = await api.uploadImage(picture, 'picture.png');
    assert.ok(up, 'upload failed');
    assert.deepEqual({ ...up.info }, { name: 'picture.png', subfolder: '', type: 'input', filename: 'picture.png' });
    // The same bytes again keep the name; other bytes get "name (1)".
    assert.equal((await api.uploadImage(picture, 'picture.png')).info.name, 'picture.png');
    assert.equal((await api.uploadImage(maskPng, 'picture.png')).info.name, 'picture (1).png');
    assert.equal((await api.uploadImage(maskPng, 'picture.png', { override: true })).info.name, 'picture.png');
    await api.uploadImage(picture, 'picture.png', { override: true });
    const wf = defaultGraph({ seed: 5 });
    wf[10] = { class_type: 'LoadImage', inputs: { image: 'picture.png' } };
    wf[11] = { class_type: 'VAEEncode', inputs: { pixels: ['10', 0], vae: ['4', 2] } };
    wf[3].inputs.latent_image = ['11', 0];
    wf[3].inputs.denoise = 0.6;
    delete wf[5];
    const seen = await runWorkflow(wf);
    assert.equal(seen.progress.at(-1).max, 3, 'denoise 0.6 runs the last 3 of 5 steps, as ComfyUI');
    const { img, bytes } = await fetchImage(seen.output.images.images[0]);
    assert.equal(img.width, 64);
    assertNotFlat(img);
    assert.notDeepEqual(bytes, txt2imgBytes);
  }],

  ['inpainting with a mask uploaded with the client (VAEEncodeForInpaint, SetLatentNoiseMask)', async () => {
    const up = await api.uploadMask(maskPng, { filename: 'picture.png', subfolder: '', type: 'input' });
    assert.ok(up, 'mask upload failed');
    assert.equal(up.info.name, 'mask.png');
    // The mask's alpha went onto the original's pixels, as ComfyUI's mask editor saves it.
    const composed = decodePNG(readFileSync(`${dir}/input/mask.png`));
    assert.equal(composed.channels, 4);
    const at = (x, y) => Array.from(composed.pixels.subarray((y * 64 + x) * 4, (y * 64 + x) * 4 + 4));
    assert.deepEqual(at(2, 3), [8, 12, 128, 255]);
    assert.deepEqual(at(30, 30), [120, 120, 128, 0]);
    const alpha = await fetch(`${srv.url}/view?filename=mask.png&type=input&channel=a`);
    assert.equal(decodePNG(Buffer.from(await alpha.arrayBuffer())).channels, 4);
    for (const how of ['VAEEncodeForInpaint', 'SetLatentNoiseMask']) {
      const wf = defaultGraph({ seed: 9 });
      wf[10] = { class_type: 'LoadImage', inputs: { image: 'mask.png' } };
      if (how === 'VAEEncodeForInpaint') {
        wf[11] = { class_type: 'VAEEncodeForInpaint', inputs: { pixels: ['10', 0], vae: ['4', 2], mask: ['10', 1], grow_mask_by: 6 } };
      } else {
        wf[12] = { class_type: 'VAEEncode', inputs: { pixels: ['10', 0], vae: ['4', 2] } };
        wf[11] = { class_type: 'SetLatentNoiseMask', inputs: { samples: ['12', 0], mask: ['10', 1] } };
      }
      wf[3].inputs.latent_image = ['11', 0];
      delete wf[5];
      const seen = await runWorkflow(wf);
      const { img } = await fetchImage(seen.output.images.images[0]);
      assert.equal(img.width, 64, how);
      assert.equal(img.height, 64, how);
      assertNotFlat(img);
    }
  }],

  ['a LoRA workflow (LoraLoader) changes the image', async () => {
    const wf = defaultGraph();
    wf[10] = { class_type: 'LoraLoader', inputs: { model: ['4', 0], clip: ['4', 1], lora_name: LORA, strength_model: 1, strength_clip: 1 } };
    wf[3].inputs.model = ['10', 0];
    wf[6].inputs.clip = ['10', 1];
    wf[7].inputs.clip = ['10', 1];
    const seen = await runWorkflow(wf);
    const { bytes, img } = await fetchImage(seen.output.images.images[0]);
    assert.equal(img.width, 64);
    assert.notDeepEqual(bytes, txt2imgBytes);
    // And without it again, the model is back to its own weights.
    const again = await runWorkflow(defaultGraph());
    assert.deepEqual((await fetchImage(again.output.images.images[0])).bytes, txt2imgBytes);
  }],

  ['a workflow that names another checkpoint switches the model, and back', async () => {
    const wf = defaultGraph();
    wf[4].inputs.ckpt_name = 'sd2-tiny.safetensors';
    const seen = await runWorkflow(wf);
    assert.equal((await fetchImage(seen.output.images.images[0])).img.width, 64);
    assert.equal((await json(srv, 'GET', '/v1/info')).data.model.family, 'sd2');
    const back = await runWorkflow(defaultGraph());
    assert.deepEqual((await fetchImage(back.output.images.images[0])).bytes, txt2imgBytes);
    assert.equal((await json(srv, 'GET', '/v1/info')).data.model.family, 'sd1');
  }],

  ['a ControlNet workflow: Canny of an uploaded image, ControlNetLoader, ControlNetApplyAdvanced', async () => {
    assert.deepEqual((await api.getNodeDefs('ControlNetLoader')).ControlNetLoader.input.required.control_net_name[0],
      ['cn-sd1-tiny.safetensors']);
    await api.uploadImage(readFileSync(`${DATA}/controlnet/canny/scene64_input.png`), 'scene.png');
    const wf = defaultGraph();
    wf[10] = { class_type: 'LoadImage', inputs: { image: 'scene.png' } };
    wf[11] = { class_type: 'Canny', inputs: { image: ['10', 0], low_threshold: 0.4, high_threshold: 0.8 } };
    wf[12] = { class_type: 'ControlNetLoader', inputs: { control_net_name: 'cn-sd1-tiny.safetensors' } };
    wf[13] = { class_type: 'ControlNetApplyAdvanced', inputs: { positive: ['6', 0], negative: ['7', 0], control_net: ['12', 0],
      image: ['11', 0], strength: 1, start_percent: 0, end_percent: 1 } };
    wf[3].inputs.positive = ['13', 0];
    wf[3].inputs.negative = ['13', 1];
    const seen = await runWorkflow(wf);
    const { bytes, img } = await fetchImage(seen.output.images.images[0]);
    assert.equal(img.width, 64);
    assert.notDeepEqual(bytes, txt2imgBytes);
  }],

  ['ComfyUI 400 answers: an unknown node, a bad value, a missing link, no output', async () => {
    // Through the client: the queue call fails with ComfyUI's body as the cause.
    const bad = defaultGraph();
    bad[4].class_type = 'FancyLoader';
    let failure;
    const res = await new CallWrapper(api, new PromptBuilder(bad, [], ['images']).setOutputNode('images', '9'))
      .onFailed((e) => { failure ??= e; }).run();   // the first failure carries ComfyUI's body
    assert.equal(res, false);
    assert.equal(failure.cause.error.type, 'invalid_prompt');
    assert.match(failure.cause.error.message, /FancyLoader/);
    assert.equal(failure.cause.error.details, "Node ID '#4'");
    assert.deepEqual(failure.cause.node_errors, {});
    const post = (prompt) => json(srv, 'POST', '/prompt', { prompt, client_id: 'x' });
    const steps = defaultGraph({ steps: 0 });
    let r = await post(steps);
    assert.equal(r.status, 400);
    assert.equal(r.data.error.type, 'prompt_outputs_failed_validation');
    assert.equal(r.data.node_errors['3'].class_type, 'KSampler');
    assert.equal(r.data.node_errors['3'].errors[0].type, 'value_smaller_than_min');
    assert.deepEqual(r.data.node_errors['3'].dependent_outputs, ['9']);
    const link = defaultGraph();
    link[3].inputs.model = ['99', 0];
    r = await post(link);
    assert.equal(r.status, 400);
    assert.equal(r.data.node_errors['3'].class_type, 'KSampler');
    assert.ok(r.data.node_errors['3'].errors.length > 0);
    const none = defaultGraph();
    delete none[9];
    r = await post(none);
    assert.equal(r.status, 400);
    assert.equal(r.data.error.type, 'prompt_no_outputs');
    r = await json(srv, 'POST', '/prompt', { client_id: 'x' });
    assert.equal(r.data.error.type, 'no_prompt');
  }],

  ['/view and /upload keep to their folders', async () => {
    const view = async (q) => (await fetch(`${srv.url}/view?${q}`)).status;
    assert.equal(await view('filename=../secret.png&type=output'), 400);
    assert.equal(await view('filename=ComfyUI_00001_.png&type=output&subfolder=../..'), 403);
    assert.equal(await view('filename=ComfyUI_00001_.png&type=bogus'), 400);
    assert.equal(await view('filename=nothere.png&type=output'), 404);
    assert.equal(await view('filename=ComfyUI_00001_.png&type=output'), 200);
    const form = new FormData();
    form.append('image', new Blob([picture]), 'p.png');
    form.append('subfolder', '../escape');
    assert.equal((await fetch(`${srv.url}/upload/image`, { method: 'POST', body: form })).status, 400);
    const form2 = new FormData();
    form2.append('image', new Blob([picture]), '../p.png');
    assert.equal((await fetch(`${srv.url}/upload/image`, { method: 'POST', body: form2 })).status, 400);
  }],

  ['/queue, /interrupt and /history, in one queue with the native API', async () => {
    const slow = await startServer(['--step-delay-ms', '150', ...folders(`${dir}/slow`)]);
    const c = await connect(slow.url, 'slow-client');
    const events = [];
    c.on('all', (ev) => events.push(ev.detail));
    // A native job first: the ComfyUI prompts wait behind it.
    const native = await json(slow, 'POST', '/v1/jobs', { prompt: 'a cat', steps: 6, width: 64, height: 64 });
    assert.equal(native.status, 202);
    const a = await c.appendPrompt(defaultGraph({ steps: 20 }));
    const b = await c.appendPrompt(defaultGraph({ steps: 20, seed: 1 }));
    assert.equal(b.number, a.number + 1);
    let q = await c.getQueue();
    assert.equal(q.queue_running.length, 1);
    assert.equal(q.queue_running[0][1], native.data.job_id);
    assert.deepEqual(q.queue_pending.map((i) => i[1]), [a.prompt_id, b.prompt_id]);
    assert.deepEqual(q.queue_pending[0][4], ['9']);
    assert.equal(q.queue_pending[0][3].client_id, 'slow-client');
    // Delete b while it waits; interrupt a once it samples.
    await c.manageQueue({ delete: [b.prompt_id] });
    q = await c.getQueue();
    assert.deepEqual(q.queue_pending.map((i) => i[1]), [a.prompt_id]);
    for (let i = 0; i < 400 && !events.some((e) => e.type === 'progress' && e.data.prompt_id === a.prompt_id); i++) await sleep(25);
    q = await c.getQueue();
    assert.equal(q.queue_running[0][1], a.prompt_id);
    await c.interrupt();
    for (let i = 0; i < 400 && !events.some((e) => e.type === 'execution_interrupted'); i++) await sleep(25);
    const int = events.find((e) => e.type === 'execution_interrupted');
    assert.ok(int, `no execution_interrupted in ${events.map((e) => e.type)}`);
    assert.equal(int.data.prompt_id, a.prompt_id);
    assert.equal(int.data.node_id, '3');
    assert.equal(int.data.node_type, 'KSampler');
    const ends = events.filter((e) => e.type === 'executing' && e.data.node === null);
    assert.equal(ends.at(-1)?.data.prompt_id, a.prompt_id);
    for (let i = 0; i < 100 && (await c.getQueue()).queue_running.length; i++) await sleep(25);
    const status = events.filter((e) => e.type === 'status').at(-1);
    assert.equal(status.data.status.exec_info.queue_remaining, 0);
    const h = await c.getHistories();
    assert.deepEqual(Object.keys(h), [a.prompt_id]);
    assert.equal(h[a.prompt_id].status.status_str, 'error');
    assert.equal(h[a.prompt_id].status.completed, false);
    assert.deepEqual(h[a.prompt_id].status.messages.map((m) => m[0]), ['execution_start', 'execution_cached', 'execution_interrupted']);
    assert.equal((await json(slow, 'GET', `/v1/jobs/${native.data.job_id}`)).data.status, 'completed');
    await c.clearHistory({ clear: true });
    assert.deepEqual(await c.getHistories(), {});
    // The history of the first server, item by item.
    const all = await api.getHistories(2);
    assert.equal(Object.keys(all).length, 2);
    const id = Object.keys(all)[0];
    await api.clearHistory({ delete: [id] });
    assert.equal(await api.getHistory(id), undefined);
    c.destroy();
    await slow.stop();
  }],

  ['the WebSocket: ping answered, an unmasked frame closes with 1002', async () => {
    const key = Buffer.from('0123456789abcdef').toString('base64');
    const sock = net.connect(srv.port, '127.0.0.1');
    await new Promise((res) => sock.on('connect', res));
    let buf = Buffer.alloc(0);
    sock.on('data', (d) => { buf = Buffer.concat([buf, d]); });
    sock.write(`GET /ws?clientId=raw HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
      `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`);
    const until = async (pred) => { for (let i = 0; i < 200 && !pred(); i++) await sleep(10); assert.ok(pred(), buf.toString('latin1')); };
    await until(() => buf.includes('\r\n\r\n'));
    const head = buf.toString('latin1', 0, buf.indexOf('\r\n\r\n'));
    assert.match(head, /^HTTP\/1\.1 101/);
    assert.match(head, /Sec-WebSocket-Accept: BACScCJPNqyz\+UBoqMH89VmURoA=/i);  // SHA-1 of the key and the GUID
    buf = buf.subarray(buf.indexOf('\r\n\r\n') + 4);
    await until(() => buf.length > 2 && buf.length >= 2 + buf[1]);   // the "status" message
    assert.equal(buf[0], 0x81);
    assert.equal(JSON.parse(buf.subarray(2, 2 + buf[1]).toString()).data.sid, 'raw');
    buf = buf.subarray(2 + buf[1]);
    // A masked ping in two pieces, answered by a pong with the same payload.
    const mask = [1, 2, 3, 4], payload = Buffer.from('hey');
    const ping = Buffer.from([0x89, 0x80 | 3, ...mask, ...payload.map((v, i) => v ^ mask[i % 4])]);
    sock.write(ping.subarray(0, 3));
    await sleep(20);
    sock.write(ping.subarray(3));
    await until(() => buf.length >= 5);
    assert.deepEqual([...buf.subarray(0, 5)], [0x8a, 3, ...payload]);
    buf = buf.subarray(5);
    sock.write(Buffer.from([0x81, 2, 0x68, 0x69]));   // unmasked text: a protocol error
    await until(() => buf.length >= 4);
    assert.deepEqual([...buf.subarray(0, 4)], [0x88, 2, 1002 >> 8, 1002 & 255]);
    sock.destroy();
  }],

  ['SIGTERM: an open WebSocket gets a close frame, the server exits 0', async () => {
    api.destroy();
    const ws = new WebSocket(`${srv.url.replace('http', 'ws')}/ws?clientId=last`);
    const first = await new Promise((res, rej) => { ws.once('message', (d) => res(JSON.parse(d))); ws.once('error', rej); });
    assert.equal(first.type, 'status');
    const closed = new Promise((res) => ws.once('close', (code) => res(code)));
    const exit = await srv.stop('SIGTERM');
    assert.equal(await closed, 1000);
    assert.deepEqual(exit, { code: 0, signal: null });
    assert.doesNotMatch(srv.stderr, /Sanitizer|runtime error/);
  }],
]);
