// test_native.mjs: the native job API end to end against a real server with
// the tiny SD1 model: each operation streamed to `done` with its PNG decoded
// and its parameters read back, previews for 20 steps, two concurrent
// streams, a late client and Last-Event-ID, cancelling queued and running
// jobs, queue overflow (429), a client that hangs up mid-stream, /metrics.
import {
  assert, run, startServer, json, submit, sse, decodePNG, assertNotFlat, assertError, inputB64, sleep,
} from './lib.mjs';

const fast = await startServer();
// Slow steps make "running" and "queued" last long enough to act on.
const slow = await startServer(['--step-delay-ms', '40', '--queue-max', '2']);

function checkStream(events, steps, previewEvery = 5) {
  const ids = events.map((e) => e.id);
  assert.deepEqual(ids, [...ids].sort((a, b) => a - b), 'event ids increase');
  assert.equal(new Set(ids).size, ids.length, 'event ids are unique');
  const progress = events.filter((e) => e.event === 'progress');
  assert.deepEqual(progress.map((e) => e.data.step), Array.from({ length: steps }, (_, i) => i + 1));
  for (const p of progress) {
    assert.equal(p.data.type, 'progress');
    assert.equal(p.data.total, steps);
    assert.ok(Math.abs(p.data.percent - (100 * p.data.step) / steps) < 0.1);
  }
  const previews = events.filter((e) => e.event === 'preview');
  const want = [];
  for (let s = 1; s <= steps; s++) if (previewEvery && (s % previewEvery === 0 || s === steps)) want.push(s);
  assert.deepEqual(previews.map((e) => e.data.step), want, 'preview steps');
  for (const p of previews) {
    assert.equal(p.data.format, 'png');
    const img = decodePNG(Buffer.from(p.data.image, 'base64'));
    assert.ok(img.width > 0 && img.height > 0);
  }
  assert.deepEqual(events.slice(-2).map((e) => e.event), ['complete', 'done']);
  assert.equal(events.at(-1).data.status, 'completed');
  return events.at(-2).data;
}

function checkImage(complete, w, h, mentions = []) {
  assert.equal(complete.type, 'complete');
  assert.equal(complete.format, 'png');
  const img = decodePNG(Buffer.from(complete.image, 'base64'));
  assert.equal(img.width, w);
  assert.equal(img.height, h);
  assertNotFlat(img);
  assert.equal(img.text.parameters, complete.info, 'the PNG carries the A1111 parameters');
  for (const m of mentions) assert.ok(complete.info.includes(m), `parameters lack "${m}": ${complete.info}`);
  return img;
}

// Waits until GET /v1/jobs/{id} reports one of the states.
async function waitState(srv, id, states, ms = 120000) {
  const t0 = Date.now();
  for (;;) {
    const r = await json(srv, 'GET', `/v1/jobs/${id}`);
    if (states.includes(r.data.status)) return r.data;
    if (Date.now() - t0 > ms) throw new Error(`job ${id} still ${r.data.status}`);
    await sleep(20);
  }
}

await run([
  ['health, ready, info', async () => {
    assert.deepEqual((await json(fast, 'GET', '/health')).data, { status: 'healthy' });
    assert.deepEqual((await json(fast, 'GET', '/ready')).data, { ready: true });
    const info = (await json(fast, 'GET', '/v1/info')).data;
    assert.equal(info.model.family, 'sd1');
    assert.equal(info.defaults.steps, 20);
    assert.ok(info.samplers.includes('euler_a'));
    assert.ok(info.schedulers.includes('karras'));
    assert.equal(info.limits.max_steps, 150);
  }],

  ['image_generation: 20 steps streamed, previews at 5/10/15/20, PNG with parameters', async () => {
    const job = await submit(fast, {
      operation: 'image_generation', prompt: 'a red apple', negative_prompt: 'blurry', width: 64, height: 64,
      steps: 20, guidance_scale: 6.5, seed: 42, sampler: 'euler', scheduler: 'karras',
      hive_id: 'h1', worker_id: 'w1', model: 'whatever',
    });
    const events = await sse(fast.url + job.sse_url);
    const complete = checkStream(events, 20);
    assert.equal(complete.seed, 42);
    checkImage(complete, 64, 64, ['a red apple', 'Negative prompt: blurry', 'Steps: 20', 'Sampler: Euler',
      'Schedule type: Karras', 'CFG scale: 6.5', 'Seed: 42', 'Size: 64x64', 'Model: sd1-tiny']);
    const st = (await json(fast, 'GET', `/v1/jobs/${job.job_id}`)).data;
    assert.equal(st.status, 'completed');
    assert.equal(st.progress.step, 20);
    assert.equal(st.result.image, complete.image);
    assert.equal(st.result.seed, 42);
  }],

  ['image_generation: preview_every 0 and a random seed', async () => {
    const job = await submit(fast, { prompt: 'x', width: 64, height: 64, steps: 3, seed: -1, preview_every: 0 });
    const events = await sse(fast.url + job.sse_url);
    const complete = checkStream(events, 3, 0);
    assert.ok(Number.isInteger(complete.seed) && complete.seed >= 0);
    checkImage(complete, 64, 64, [`Seed: ${complete.seed}`]);
  }],

  ['image_transform: init_image and input_image', async () => {
    let job = await submit(fast, {
      operation: 'image_transform', prompt: 'a house', init_image: inputB64('i2i_sd1_euler_s0.5_init.png'),
      strength: 0.5, steps: 10, seed: 1,
    });
    let complete = checkStream(await sse(fast.url + job.sse_url), 5);
    checkImage(complete, 64, 64, ['Denoising strength: 0.5', 'Steps: 10']);
    // The size follows the init image when none is given (96x64).
    job = await submit(fast, {
      operation: 'image_transform', prompt: 'a house', input_image: inputB64('i2i_sd1_ddim_s0.8_init.png'),
      steps: 4, seed: 1,
    });
    complete = checkStream(await sse(fast.url + job.sse_url), 3);
    checkImage(complete, 96, 64, ['Denoising strength: 0.75']);
  }],

  ['image_inpaint: init and mask', async () => {
    const job = await submit(fast, {
      operation: 'image_inpaint', prompt: 'a cat', init_image: inputB64('inp4_sd1_euler_s1.0_init.png'),
      mask_image: inputB64('inp4_sd1_euler_s1.0_mask.png'), strength: 1.0, steps: 6, seed: 3,
    });
    const complete = checkStream(await sse(fast.url + job.sse_url), 6);
    checkImage(complete, 64, 64, ['Denoising strength: 1']);
  }],

  ['a late client replays the job; Last-Event-ID resumes after an event', async () => {
    const job = await submit(fast, { prompt: 'late', width: 64, height: 64, steps: 5, seed: 9 });
    await waitState(fast, job.job_id, ['completed']);
    const all = await sse(fast.url + job.sse_url);
    checkStream(all, 5);
    const rest = await sse(fast.url + job.sse_url, { headers: { 'Last-Event-ID': String(all[2].id) } });
    assert.deepEqual(rest.map((e) => e.id), all.slice(3).map((e) => e.id));
  }],

  ['two concurrent streams see the same events', async () => {
    const job = await submit(slow, { prompt: 'two', width: 64, height: 64, steps: 12, seed: 5 });
    const [a, b] = await Promise.all([sse(slow.url + job.sse_url), sse(slow.url + job.sse_url)]);
    checkStream(a, 12);
    assert.deepEqual(b, a);
  }],

  ['cancel a queued job at once and a running one at its next step', async () => {
    const running = await submit(slow, { prompt: 'long', width: 64, height: 64, steps: 100, seed: 1 });
    const queued = await submit(slow, { prompt: 'waiting', width: 64, height: 64, steps: 5, seed: 1 });
    assert.equal((await json(slow, 'GET', `/v1/jobs/${queued.job_id}`)).data.status, 'queued');
    let del = await json(slow, 'DELETE', `/v1/jobs/${queued.job_id}`);
    assert.equal(del.status, 200);
    assert.equal(del.data.status, 'cancelled');
    const qe = await sse(slow.url + queued.sse_url);
    assert.deepEqual(qe.map((e) => e.event), ['error', 'done']);
    assert.equal(qe[0].data.code, 'cancelled');
    assert.equal(qe[1].data.status, 'cancelled');

    let cancelledAt = 0;
    const re = await sse(slow.url + running.sse_url, {
      onEvent: (ev) => {
        if (ev.event === 'progress' && ev.data.step === 3 && !cancelledAt) {
          cancelledAt = 3;
          json(slow, 'DELETE', `/v1/jobs/${running.job_id}`).then((d) => assert.equal(d.data.status, 'cancelling'));
        }
      },
    });
    assert.deepEqual(re.slice(-2).map((e) => e.event), ['error', 'done']);
    assert.equal(re.at(-2).data.code, 'cancelled');
    const last = re.filter((e) => e.event === 'progress').at(-1).data.step;
    assert.ok(last >= 3 && last < 100, `stopped at step ${last}`);
    const st = (await json(slow, 'GET', `/v1/jobs/${running.job_id}`)).data;
    assert.equal(st.status, 'cancelled');
    assert.equal(st.error.code, 'cancelled');
  }],

  ['a full queue answers 429 with Retry-After', async () => {
    const a = await submit(slow, { prompt: 'a', width: 64, height: 64, steps: 100 });
    await waitState(slow, a.job_id, ['running']);
    const b = await submit(slow, { prompt: 'b', width: 64, height: 64, steps: 5 });
    const c = await submit(slow, { prompt: 'c', width: 64, height: 64, steps: 5 });
    const d = await json(slow, 'POST', '/v1/jobs', { prompt: 'd', width: 64, height: 64, steps: 5 });
    assertError(d, 429, /queue is full/);
    assert.equal(d.data.error.code, 'queue_full');
    assert.ok(Number(d.headers.get('retry-after')) > 0);
    for (const j of [a, b, c]) await json(slow, 'DELETE', `/v1/jobs/${j.job_id}`);
    for (const j of [a, b, c]) await waitState(slow, j.job_id, ['cancelled']);
  }],

  ['a client that hangs up mid-stream does not disturb the job', async () => {
    const job = await submit(slow, { prompt: 'gone', width: 64, height: 64, steps: 15, seed: 2 });
    const first = await sse(slow.url + job.sse_url, {
      onEvent: (ev) => (ev.event === 'progress' && ev.data.step >= 2 ? 'stop' : undefined),
    });
    assert.ok(first.length >= 2);
    const st = await waitState(slow, job.job_id, ['completed', 'failed', 'cancelled']);
    assert.equal(st.status, 'completed');
    decodePNG(Buffer.from(st.result.image, 'base64'));
    assert.equal((await json(slow, 'GET', '/health')).status, 200);
  }],

  ['unknown jobs are 404', async () => {
    for (const [m, p] of [['GET', '/v1/jobs/nope'], ['DELETE', '/v1/jobs/nope'], ['GET', '/v1/jobs/nope/stream'],
      ['GET', '/v1/files/nope-0.png'], ['GET', '/no/such/route']])
      assertError(await json(fast, m, p), 404);
  }],

  ['metrics count what the clients saw', async () => {
    const text = (await json(slow, 'GET', '/metrics')).data;
    const metric = (re) => Number(text.match(re)?.[1]);
    assert.equal(metric(/^sdw_jobs_total\{state="completed"\} (\d+)$/m), 2);
    assert.equal(metric(/^sdw_jobs_total\{state="cancelled"\} (\d+)$/m), 5);
    assert.equal(metric(/^sdw_jobs_rejected_total\{reason="queue_full"\} (\d+)$/m), 1);
    assert.equal(metric(/^sdw_jobs_accepted_total (\d+)$/m), 7);
    assert.equal(metric(/^sdw_queue_depth (\d+)$/m), 0);
    assert.equal(metric(/^sdw_jobs_in_flight (\d+)$/m), 0);
    assert.ok(metric(/^sdw_step_seconds_count (\d+)$/m) > 20);
    assert.equal(metric(/^sdw_image_generation_seconds_count (\d+)$/m), 2);
    assert.equal(metric(/^sdw_model_load_seconds_count (\d+)$/m), 1);
    assert.match(text, /^sdw_http_responses_total\{code="429"\} 1$/m);
  }],

  ['SIGTERM with nothing running exits 0', async () => {
    assert.deepEqual(await fast.stop('SIGTERM'), { code: 0, signal: null });
    assert.deepEqual(await slow.stop('SIGTERM'), { code: 0, signal: null });
  }],
]);
