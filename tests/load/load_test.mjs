// load_test.mjs: the load and fault test of `sd-worker serve` (issue 8,
// item 3). One real server on 127.0.0.1 with the tiny SD1 model, 64x64
// images of 2-4 steps, then:
//   warm-up     64 jobs of every kind and fault, as many connections at
//               once as the load opens; then RSS, open fds and the /metrics
//               counters are taken as the "before" figures;
//   queue full  a 150-step job holds the generation thread while 16 clients
//               submit as fast as they can: the queue (--queue-max 4) stays
//               full and answers 429 with Retry-After; a queued job and the
//               running one are cancelled (DELETE /v1/jobs/{id});
//   mix         16 clients run the planned jobs: native image_generation /
//               image_transform / image_inpaint with their SSE streams (some
//               hang up mid-stream, some are cancelled at once), A1111
//               txt2img / img2img, OpenAI generations (b64_json and url) and
//               edits; among them bodies over --max-body (413) and invalid
//               bodies (400); meanwhile raw sockets trickle a body, or the
//               headers, one byte per second, or send nothing, and must be
//               cut after --request-timeout;
//   afterwards  every accepted job reached exactly one final state (its SSE
//               stream, replayed after a hang-up, ends with one `done`, and
//               GET /v1/jobs/{id} agrees, read within --result-ttl); the
//               /metrics counters moved by what the clients saw; once the
//               job records expired, RSS is within 10% of the "before" figure
//               and no fd is left open; /health and a last job still answer;
//               SIGTERM exits 0.
//
// ctest runs the short form (60 mixed jobs, every fault kind; about 35 s):
//   node tests/load/load_test.mjs build/sd-worker tests/data build --short
// The full form (200 mixed jobs from 16 clients; under a minute on two cores):
//   node tests/load/load_test.mjs build/sd-worker tests/data build
// The plan comes from a seed that is printed; --seed N plans the same jobs
// again (the timing, and so the interleaving, differs from run to run).
import http from 'node:http';
import net from 'node:net';
import { readFileSync, readdirSync, readlinkSync } from 'node:fs';
import { assert, startServer, decodePNG, encodePNG, input, sleep } from '../server/lib.mjs';

const SHORT = process.argv.includes('--short');
const seedAt = process.argv.indexOf('--seed');
const SEED = seedAt > 0 ? Number(process.argv[seedAt + 1]) : Math.floor(Math.random() * 1e6);

// What each form runs; the limits the server is started with.
const P = SHORT
  ? { jobs: 60, queueJobs: 10, queue429: 16, oversized: 4, invalid: 3, slowBody: 2 }
  : { jobs: 200, queueJobs: 24, queue429: 48, oversized: 8, invalid: 6, slowBody: 4 };
const CLIENTS = 16;
const WARM_JOBS = 64;
const QUEUE_MAX = 4;
const RESULT_TTL_S = 8;
const MAX_BODY = 256 * 1024;
const REQUEST_TIMEOUT_S = 2;
const SERVER_ARGS = ['--queue-max', String(QUEUE_MAX), '--result-ttl', String(RESULT_TTL_S), '--max-body', '256K',
  '--request-timeout', String(REQUEST_TIMEOUT_S), '--drain-timeout', '5', '--keepalive', '2', '--step-delay-ms', '10'];
// Generous: two shared cores, and a job may wait behind a full queue.
const ANSWER_TIMEOUT_MS = 180000;
const WHOLE_TEST_S = SHORT ? 240 : 900;

// ---------------------------------------------------------------- plan

// mulberry32: a small seeded generator, so that --seed replays a plan.
function prng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const rnd = prng(SEED);
const pick = (a) => a[Math.floor(rnd() * a.length)];

const KINDS = ['native/generation', 'native/transform', 'native/inpaint', 'a1111/txt2img', 'a1111/img2img',
  'openai/b64_json', 'openai/url', 'openai/edit'];

// `jobs` jobs cycling through the kinds (every kind in every form), native
// ones with a fault every other time (a hang-up after 0-2 events, or a cancel
// right after submitting), plus the oversized and invalid bodies; shuffled.
function plan(jobs, oversized, invalid) {
  const tasks = [];
  let native = 0;
  for (let i = 0; i < jobs; i++) {
    const kind = KINDS[i % KINDS.length];
    const t = { kind, steps: 2 + Math.floor(rnd() * 3), seed: Math.floor(rnd() * 1e9), mask: i % 2 === 0 };
    if (kind.startsWith('native/')) {
      const f = native++ % 4;
      t.fault = f === 1 ? 'disconnect' : f === 3 ? 'cancel' : null;
      t.hangUpAfter = Math.floor(rnd() * 3);
      t.previewEvery = pick([0, 1, 2]);
    }
    tasks.push(t);
  }
  for (let i = 0; i < oversized; i++) tasks.push({ kind: 'oversized', variant: i % 4 });
  for (let i = 0; i < invalid; i++) tasks.push({ kind: 'invalid', variant: i % 3 });
  for (let i = tasks.length - 1; i > 0; i--) {
    const j = Math.floor(rnd() * (i + 1));
    [tasks[i], tasks[j]] = [tasks[j], tasks[i]];
  }
  return tasks;
}

// ---------------------------------------------------------------- HTTP

let srv;       // the server (lib.mjs startServer)
let port;
let stopping = false;   // the test itself stops the server

// One request on its own connection (no keep-alive, so that the server's fd
// count says what is still open). body: an object (sent as JSON), a string
// or a Buffer; chunked sends it without a Content-Length.
function request(method, path, { body, headers = {}, chunked = false } = {}) {
  return new Promise((resolve, reject) => {
    const h = { ...headers };
    let data = body;
    if (data !== undefined && typeof data !== 'string' && !Buffer.isBuffer(data)) {
      data = JSON.stringify(data);
      h['Content-Type'] ??= 'application/json';
    }
    if (data !== undefined && !chunked) h['Content-Length'] = Buffer.byteLength(data);
    const req = http.request({ host: '127.0.0.1', port, method, path, headers: h, agent: false }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('error', reject);
      res.on('end', () => {
        const bytes = Buffer.concat(chunks), text = bytes.toString();
        let json = null;
        try { json = JSON.parse(text); } catch { /* not JSON: text says what it was */ }
        resolve({ status: res.statusCode, headers: res.headers, bytes, text, data: json });
      });
    });
    req.setTimeout(ANSWER_TIMEOUT_MS, () => req.destroy(new Error(`${method} ${path}: no answer within ${ANSWER_TIMEOUT_MS / 1000} s`)));
    req.on('error', (e) => reject(new Error(`${method} ${path}: ${e.message}`)));
    if (data !== undefined) {
      const buf = Buffer.from(data);
      if (chunked) for (let i = 0; i < buf.length; i += 65536) req.write(buf.subarray(i, i + 65536));
      else req.write(buf);
    }
    req.end();
  });
}

const describe = (r) => `HTTP ${r.status}: ${r.text.slice(0, 300)}`;

// Reads a job's SSE stream into [{id, event, data}]. hangUpAfter = n closes
// the connection after n events (0: as soon as the answer's headers are in);
// hungUp says whether that happened before the final `done`.
function stream(id, { hangUpAfter = Infinity } = {}) {
  return new Promise((resolve, reject) => {
    const events = [];
    let buf = '', settled = false;
    const finish = (hungUp) => {
      if (settled) return;
      settled = true;
      if (hungUp) req.destroy();
      resolve({ events, hungUp });
    };
    const req = http.get({ host: '127.0.0.1', port, path: `/v1/jobs/${id}/stream`, agent: false }, (res) => {
      if (res.statusCode !== 200) {
        settled = true;
        res.resume();
        return reject(new Error(`stream of job ${id}: HTTP ${res.statusCode}`));
      }
      if (hangUpAfter === 0) return finish(true);
      res.setEncoding('utf8');
      res.on('data', (d) => {
        buf += d;
        let i;
        while (!settled && (i = buf.indexOf('\n\n')) >= 0) {
          const frame = buf.slice(0, i);
          buf = buf.slice(i + 2);
          const ev = { id: null, event: 'message', data: '' };
          let comment = true;
          for (const line of frame.split('\n')) {
            if (line.startsWith(':') || line.startsWith('retry:')) continue;
            comment = false;
            if (line.startsWith('id: ')) ev.id = Number(line.slice(4));
            else if (line.startsWith('event: ')) ev.event = line.slice(7);
            else if (line.startsWith('data: ')) ev.data += line.slice(6);
          }
          if (comment) continue;
          ev.data = JSON.parse(ev.data);
          events.push(ev);
          if (events.length >= hangUpAfter && ev.event !== 'done') finish(true);
        }
      });
      res.on('end', () => finish(false));
      res.on('error', (e) => { if (!settled) { settled = true; reject(e); } });
    });
    req.setTimeout(ANSWER_TIMEOUT_MS, () => req.destroy(new Error(`stream of job ${id}: silent for ${ANSWER_TIMEOUT_MS / 1000} s`)));
    req.on('error', (e) => { if (!settled) { settled = true; reject(e); } });
  });
}

// A complete stream holds exactly one final event (complete or error) and
// one `done`, last, with increasing ids; returns the final state.
function checkStream(id, events) {
  const names = events.map((e) => e.event);
  const ctx = `job ${id} stream [${names.join(' ')}]`;
  for (let i = 1; i < events.length; i++) assert.ok(events[i].id > events[i - 1].id, `${ctx}: event ids do not increase`);
  assert.equal(names.filter((n) => n === 'done').length, 1, `${ctx}: not exactly one done event`);
  assert.equal(names.at(-1), 'done', `${ctx}: done is not last`);
  assert.equal(names.filter((n) => n === 'complete' || n === 'error').length, 1, `${ctx}: not exactly one complete/error`);
  const status = events.at(-1).data.status;
  if (status === 'completed') {
    assert.equal(names.at(-2), 'complete', ctx);
    const img = decodePNG(Buffer.from(events.at(-2).data.image, 'base64'));
    assert.deepEqual([img.width, img.height], [64, 64], `${ctx}: image size`);
  } else {
    assert.ok(['cancelled', 'failed'].includes(status), `${ctx}: done says ${status}`);
    assert.equal(names.at(-2), 'error', ctx);
  }
  return status;
}

const FINAL = ['completed', 'cancelled', 'failed'];

async function jobStatus(id) {
  const r = await request('GET', `/v1/jobs/${id}`);
  assert.equal(r.status, 200, `GET /v1/jobs/${id} (a record must outlive its final state by --result-ttl): ${describe(r)}`);
  return r.data;
}

// Polls GET /v1/jobs/{id} until the job is in one of the states.
async function waitState(id, states, ms = ANSWER_TIMEOUT_MS) {
  const t0 = Date.now();
  for (;;) {
    const st = await jobStatus(id);
    if (states.includes(st.status)) return st;
    assert.ok(Date.now() - t0 < ms, `job ${id} still ${st.status} after ${ms / 1000} s`);
    await sleep(50);
  }
}

// /metrics as { 'name{labels}': value }.
async function metrics() {
  const r = await request('GET', '/metrics');
  assert.equal(r.status, 200, `/metrics: ${describe(r)}`);
  const m = {};
  for (const line of r.text.split('\n')) {
    const x = line.match(/^([a-z_]+(?:\{[^}]*\})?) ([0-9.eE+-]+)$/);
    if (x) m[x[1]] = Number(x[2]);
  }
  return m;
}

// ---------------------------------------------------------------- the process

const procStatus = () => readFileSync(`/proc/${srv.proc.pid}/status`, 'utf8');
const rssKiB = () => Number(procStatus().match(/^VmRSS:\s+(\d+) kB$/m)[1]);
function fds() {
  const dir = `/proc/${srv.proc.pid}/fd`;
  return readdirSync(dir).map((f) => { try { return readlinkSync(`${dir}/${f}`); } catch { return '(closed)'; } });
}
const mib = (kib) => (kib / 1024).toFixed(1);

// Waits until no job is queued, running or kept (their --result-ttl ran out)
// and the fd count has held still for a second; returns that count.
async function quiet() {
  const t0 = Date.now();
  for (;;) {
    const m = await metrics();
    if (m.sdw_queue_depth === 0 && m.sdw_jobs_in_flight === 0 && m.sdw_jobs_kept === 0) break;
    assert.ok(Date.now() - t0 < (RESULT_TTL_S + 60) * 1000,
      `job records not dropped ${RESULT_TTL_S + 60} s after the load (--result-ttl ${RESULT_TTL_S}): ` +
      `queue ${m.sdw_queue_depth}, in flight ${m.sdw_jobs_in_flight}, kept ${m.sdw_jobs_kept}`);
    await sleep(250);
  }
  let last = -1, same = 0;
  for (;;) {
    const n = fds().length;
    same = n === last ? same + 1 : 0;
    last = n;
    if (same >= 4) return n;
    await sleep(250);
  }
}

// ---------------------------------------------------------------- the jobs

const PICTURE = encodePNG(64, 64, 3, (x, y) => [x * 4, y * 4, 128]);
const MASK = encodePNG(64, 64, 4, (x, y) => [0, 0, 0, x >= 16 && x < 48 && y >= 16 && y < 48 ? 0 : 255]);
const I2I = input('i2i_sd1_euler_s0.5_init.png').toString('base64');
const INP = input('inp4_sd1_euler_s1.0_init.png').toString('base64');
const INP_MASK = input('inp4_sd1_euler_s1.0_mask.png').toString('base64');

function multipart(fields, files) {
  const boundary = `----sdwload${Math.random().toString(16).slice(2)}`;
  const parts = [];
  for (const [k, v] of Object.entries(fields))
    parts.push(Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="${k}"\r\n\r\n${v}\r\n`));
  for (const [k, v] of Object.entries(files)) {
    parts.push(Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="${k}"; filename="${k}.png"\r\n` +
      'Content-Type: image/png\r\n\r\n'), v, Buffer.from('\r\n'));
  }
  parts.push(Buffer.from(`--${boundary}--\r\n`));
  return { body: Buffer.concat(parts), type: `multipart/form-data; boundary=${boundary}` };
}

// What the clients saw, per phase.
function tally() {
  return {
    submitted: Object.fromEntries(KINDS.map((k) => [k, 0])),
    final: Object.fromEntries(KINDS.map((k) => [k, { completed: 0, cancelled: 0, failed: 0 }])),
    accepted: 0, r429: 0, r413: 0, r400: 0,
    hungUp: 0, cancelQueued: 0, cancelRunning: 0, cancelLate: 0,
    failures: [],
  };
}
const finalOf = (T, kind, state, why) => {
  T.final[kind][state]++;
  if (state === 'failed') T.failures.push(`${kind}: ${why}`);
};

// POSTs until the queue takes it: a 429 must carry Retry-After and the
// queue_full code; the client waits a part of Retry-After and tries again.
async function post(T, path, opts) {
  for (;;) {
    const r = await request('POST', path, opts);
    if (r.status !== 429) return r;
    T.r429++;
    const after = Number(r.headers['retry-after']);
    assert.ok(after > 0, `429 without a Retry-After: ${JSON.stringify(r.headers)}`);
    assert.equal(r.data?.error?.code, 'queue_full', describe(r));
    await sleep(after * 1000 * (0.1 + 0.3 * Math.random()));
  }
}

async function nativeJob(T, t) {
  const op = t.kind.split('/')[1];
  const body = { operation: `image_${op}`, prompt: `load ${t.seed}`, steps: t.steps, seed: t.seed, preview_every: t.previewEvery };
  if (op === 'generation') Object.assign(body, { width: 64, height: 64 });
  if (op === 'transform') Object.assign(body, { init_image: I2I, strength: 0.6 });
  if (op === 'inpaint') Object.assign(body, { init_image: INP, mask_image: INP_MASK, strength: 1 });
  const r = await post(T, '/v1/jobs', { body });
  assert.equal(r.status, 202, `${t.kind}: ${describe(r)}`);
  const id = r.data.job_id;
  T.accepted++;
  T.submitted[t.kind]++;
  let said = null;
  if (t.fault === 'cancel') {
    const d = await request('DELETE', `/v1/jobs/${id}`);
    assert.equal(d.status, 200, `DELETE ${id}: ${describe(d)}`);
    said = d.data.status;
  }
  const s = await stream(id, { hangUpAfter: t.fault === 'disconnect' ? t.hangUpAfter : Infinity });
  let state;
  if (s.hungUp) {
    T.hungUp++;
    state = (await waitState(id, FINAL)).status;
    // A client coming back gets the whole story, once.
    const again = await stream(id);
    assert.equal(checkStream(id, again.events), state, `job ${id}: the replayed stream disagrees with GET`);
  } else {
    state = checkStream(id, s.events);
    const st = await jobStatus(id);
    assert.equal(st.status, state, `job ${id}: GET says ${st.status}, the stream ${state}`);
  }
  if (said === 'cancelled') {
    assert.equal(state, 'cancelled', `job ${id} was cancelled while queued but ended ${state}`);
    T.cancelQueued++;
  } else if (said === 'cancelling') {
    if (state === 'cancelled') T.cancelRunning++;
    else T.cancelLate++;   // its last step was already under way
  } else if (said) {
    T.cancelLate++;        // DELETE came after the end: says the final state
    assert.equal(said, state, `DELETE ${id} said ${said}, the job ended ${state}`);
  }
  const err = s.events.find((e) => e.event === 'error')?.data?.message;
  finalOf(T, t.kind, state, err);
}

async function a1111Job(T, t) {
  const img2img = t.kind === 'a1111/img2img';
  const body = { prompt: `load ${t.seed}`, steps: t.steps, seed: t.seed, width: 64, height: 64 };
  if (img2img) {
    Object.assign(body, { init_images: [t.mask ? INP : I2I], denoising_strength: 0.7 });
    if (t.mask) body.mask = INP_MASK;
  }
  const r = await post(T, `/sdapi/v1/${img2img ? 'img2img' : 'txt2img'}`, { body });
  T.submitted[t.kind]++;
  if (r.status === 200) {
    T.accepted++;
    assert.equal(r.data.images.length, 1, `${t.kind}: ${describe(r)}`);
    const img = decodePNG(Buffer.from(r.data.images[0], 'base64'));
    assert.deepEqual([img.width, img.height], [64, 64]);
    assert.equal(JSON.parse(r.data.info).interrupted, false);
    finalOf(T, t.kind, 'completed');
  } else {
    assert.equal(r.status, 500, `${t.kind}: ${describe(r)}`);   // a job that was accepted and failed
    T.accepted++;
    finalOf(T, t.kind, 'failed', describe(r));
  }
}

async function openaiJob(T, t) {
  let r;
  if (t.kind === 'openai/edit') {
    const form = multipart({ prompt: `load ${t.seed}`, size: '64x64', response_format: 'b64_json', steps: t.steps, seed: t.seed },
      { image: PICTURE, mask: MASK });
    r = await post(T, '/v1/images/edits', { body: form.body, headers: { 'Content-Type': form.type } });
  } else {
    r = await post(T, '/v1/images/generations', { body: {
      prompt: `load ${t.seed}`, size: '64x64', n: 1, steps: t.steps, seed: t.seed,
      response_format: t.kind === 'openai/url' ? 'url' : 'b64_json',
    } });
  }
  T.submitted[t.kind]++;
  T.accepted++;
  if (r.status !== 200) {
    assert.equal(r.status, 500, `${t.kind}: ${describe(r)}`);
    return finalOf(T, t.kind, 'failed', describe(r));
  }
  assert.equal(r.data.data.length, 1, `${t.kind}: ${describe(r)}`);
  let png;
  if (t.kind === 'openai/url') {
    const f = await request('GET', new URL(r.data.data[0].url).pathname);
    assert.equal(f.status, 200, `${r.data.data[0].url}: HTTP ${f.status}`);
    assert.equal(f.headers['content-type'], 'image/png');
    png = f.bytes;
  } else {
    png = Buffer.from(r.data.data[0].b64_json, 'base64');
  }
  const img = decodePNG(png);
  assert.deepEqual([img.width, img.height], [64, 64]);
  finalOf(T, t.kind, 'completed');
}

// Bodies over --max-body: JSON with and without a Content-Length, an A1111
// img2img with a huge image, an OpenAI edit with a huge file.
async function oversized(T, t) {
  const pad = 'x'.repeat(MAX_BODY + 40000 + Math.floor(Math.random() * 300000));
  let r;
  if (t.variant === 0) r = await request('POST', '/v1/jobs', { body: { prompt: 'big', padding: pad } });
  if (t.variant === 1) r = await request('POST', '/v1/jobs', { body: { prompt: 'big', padding: pad }, chunked: true });
  if (t.variant === 2) r = await request('POST', '/sdapi/v1/img2img', { body: { prompt: 'big', init_images: [pad] } });
  if (t.variant === 3) {
    const form = multipart({ prompt: 'big' }, { image: Buffer.from(pad) });
    r = await request('POST', '/v1/images/edits', { body: form.body, headers: { 'Content-Type': form.type } });
  }
  assert.equal(r.status, 413, `oversized body ${t.variant}: ${describe(r)}`);
  assert.equal(r.data?.error?.code, 'too_large', describe(r));
  T.r413++;
}

async function invalid(T, t) {
  const [path, body] = [['/v1/jobs', { prompt: 'x', steps: 0 }], ['/sdapi/v1/txt2img', { sampler_name: 'Nope' }],
    ['/v1/images/generations', { prompt: 'x', size: '7x7' }]][t.variant];
  const r = await request('POST', path, { body });
  assert.equal(r.status, 400, `invalid body to ${path}: ${describe(r)}`);
  assert.equal(r.data?.error?.code, 'invalid_request', describe(r));
  T.r400++;
}

function runTask(T, t) {
  if (t.kind === 'oversized') return oversized(T, t);
  if (t.kind === 'invalid') return invalid(T, t);
  if (t.kind.startsWith('native/')) return nativeJob(T, t);
  if (t.kind.startsWith('a1111/')) return a1111Job(T, t);
  return openaiJob(T, t);
}

// `clients` clients take the tasks in turn until none is left.
async function clients(n, T, tasks) {
  let next = 0;
  await Promise.all(Array.from({ length: n }, async () => {
    while (next < tasks.length) await runTask(T, tasks[next++]);
  }));
}

// ---------------------------------------------------------------- slow clients

// A raw connection that sends `head`, then one byte a second (none when
// silent); resolves with the seconds until the server cut it, and what it
// answered. Given up (cut: false) after ten times --request-timeout.
function slowClient(what) {
  const heads = {
    body: 'POST /v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{',
    headers: 'POST /v1/jobs HTTP/1.1\r\nHost: x\r\nX-Slow: ',
    silent: '',
  };
  const limit = REQUEST_TIMEOUT_S * 10;
  return new Promise((resolve) => {
    const t0 = Date.now();
    let answer = '', timer = null;
    const sock = net.connect(port, '127.0.0.1', () => {
      if (heads[what]) sock.write(heads[what]);
      if (what !== 'silent') timer = setInterval(() => sock.write('x'), 1000);
    });
    const giveUp = setTimeout(() => { sock.destroy(); done(false); }, limit * 1000);
    const done = (cut) => {
      clearInterval(timer);
      clearTimeout(giveUp);
      resolve({ what, cut, seconds: (Date.now() - t0) / 1000, answer: answer.split('\r\n')[0] });
    };
    sock.on('data', (d) => { answer += d; });
    sock.on('error', () => {});
    sock.on('close', () => done(true));
  });
}

const slowClients = () => Promise.all([
  ...Array.from({ length: P.slowBody }, () => slowClient('body')), slowClient('headers'), slowClient('silent')]);

// ---------------------------------------------------------------- phases

// A 150-step job runs while 16 clients submit 2-step jobs without pause: the
// queue fills and answers 429. Once the queue is seen full, a queued job and
// then the running one are cancelled, and the clients go on until
// P.queueJobs were accepted.
async function queuePhase(T) {
  const blocker = await post(T, '/v1/jobs', { body: { prompt: 'blocker', width: 64, height: 64, steps: 150, seed: 1 } });
  assert.equal(blocker.status, 202, describe(blocker));
  const bid = blocker.data.job_id;
  T.accepted++;
  T.submitted['native/generation']++;
  const blockerStream = stream(bid);
  await waitState(bid, ['running']);
  let accepted = 0, seen429 = 0, queuedCancel = null, queuedCancelled = false, released = null, fullDepth = null;
  const release = async () => {
    // The queue is full (only 429s come back): the gauge says so too.
    const t0 = Date.now();
    for (;;) {
      const m = await metrics();
      if (m.sdw_queue_depth === QUEUE_MAX) { fullDepth = m.sdw_queue_depth; break; }
      assert.ok(Date.now() - t0 < 60000, `the queue never reached --queue-max ${QUEUE_MAX} (depth ${m.sdw_queue_depth})`);
      await sleep(50);
    }
    const d = await request('DELETE', `/v1/jobs/${bid}`);
    assert.equal(d.data?.status, 'cancelling', `DELETE of the running job ${bid}: ${describe(d)}`);
  };
  await Promise.all(Array.from({ length: CLIENTS }, async () => {
    while (accepted < P.queueJobs) {
      const r = await request('POST', '/v1/jobs', { body: { prompt: 'q', width: 64, height: 64, steps: 2, preview_every: 0 } });
      if (r.status === 429) {
        T.r429++;
        seen429++;
        assert.ok(Number(r.headers['retry-after']) > 0, `429 without a Retry-After: ${JSON.stringify(r.headers)}`);
        assert.equal(r.data?.error?.code, 'queue_full', describe(r));
        if (seen429 >= P.queue429 && queuedCancelled && !released) released = release();
        await sleep(10 + Math.random() * 40);
        continue;
      }
      assert.equal(r.status, 202, describe(r));
      accepted++;
      T.accepted++;
      T.submitted['native/generation']++;
      const id = r.data.job_id;
      let said = null;
      if (!queuedCancel) {
        // The blocker runs until released, which waits for this: the job is queued.
        queuedCancel = id;
        const d = await request('DELETE', `/v1/jobs/${id}`);
        said = d.data?.status;
        assert.equal(said, 'cancelled', `DELETE of the queued job ${id}: ${describe(d)}`);
        queuedCancelled = true;
        T.cancelQueued++;
      }
      const state = checkStream(id, (await stream(id)).events);
      assert.equal((await jobStatus(id)).status, state);
      if (said) assert.equal(state, 'cancelled');
      finalOf(T, 'native/generation', state, id);
    }
  }));
  assert.ok(released, `only ${seen429} answers 429 while the queue was held full (wanted ${P.queue429})`);
  await released;
  const bs = await blockerStream;
  const bstate = checkStream(bid, bs.events);
  assert.equal(bstate, 'cancelled', `the running job ${bid} was cancelled but ended ${bstate}`);
  const steps = bs.events.filter((e) => e.event === 'progress').length;
  assert.ok(steps >= 1 && steps < 150, `the cancelled job ran ${steps} steps`);
  T.cancelRunning++;
  finalOf(T, 'native/generation', 'cancelled');
  return { seen429, fullDepth };
}

// ---------------------------------------------------------------- the test

function sum(T, state) {
  return Object.values(T.final).reduce((a, f) => a + f[state], 0);
}

function merge(a, b) {
  const T = tally();
  for (const k of KINDS) {
    T.submitted[k] = a.submitted[k] + b.submitted[k];
    for (const s of FINAL) T.final[k][s] = a.final[k][s] + b.final[k][s];
  }
  for (const k of ['accepted', 'r429', 'r413', 'r400', 'hungUp', 'cancelQueued', 'cancelRunning', 'cancelLate'])
    T[k] = a[k] + b[k];
  T.failures = [...a.failures, ...b.failures];
  return T;
}

async function main() {
  const tStart = Date.now();
  console.log(`load test (${SHORT ? 'short' : 'full'}), seed ${SEED}: ${P.jobs} mixed jobs from ${CLIENTS} clients; ` +
    `server ${SERVER_ARGS.join(' ')} --threads 1`);
  srv = await startServer(SERVER_ARGS, { noWait: true });
  port = srv.port;
  srv.exit.then((e) => {
    if (stopping) return;
    console.log(`FAIL: the server exited during the test (code ${e.code}, signal ${e.signal})`);
    fail();
  });
  for (let i = 0; ; i++) {
    const r = await request('GET', '/ready').catch(() => null);
    if (r?.status === 200) break;
    assert.ok(i < 600, `the server did not get ready:\n${srv.stderr}`);
    await sleep(50);
  }

  // Warm-up: a short mix of every job and fault, with the slow clients, long
  // enough (at full speed, more than --result-ttl) that as many threads (one
  // per connection), job records and buffers were alive at once as under the
  // load: the allocator keeps some of that high-water mark, which is no leak.
  const W = tally();
  const warmSlow = Promise.all(Array.from({ length: P.slowBody + 2 }, () => slowClient('body')));
  await clients(CLIENTS, W, plan(WARM_JOBS, 2, 1));
  await warmSlow;
  const fdsBefore = await quiet();
  await sleep(1000);
  const rssBefore = rssKiB();
  const m0 = await metrics();
  console.log(`warm-up: ${W.accepted} jobs; RSS ${mib(rssBefore)} MiB, ${fdsBefore} fds open`);

  // Queue full, then the mix with the slow clients alongside.
  const tLoad = Date.now();
  const Q = tally();
  const qp = await queuePhase(Q);
  console.log(`queue full: ${Q.accepted} jobs accepted, ${qp.seen429} answers 429 (queue depth ${qp.fullDepth} = --queue-max)`);
  const M = tally();
  const slow = slowClients();
  await clients(CLIENTS, M, plan(P.jobs, P.oversized, P.invalid));
  const slowResults = await slow;
  const loadSeconds = (Date.now() - tLoad) / 1000;
  const T = merge(Q, M);

  // Every accepted job ended once, and /metrics counted what the clients saw.
  const m1 = await metrics();
  const d = (k) => (m1[k] ?? 0) - (m0[k] ?? 0);
  const rows = [
    ['sdw_jobs_accepted_total', T.accepted],
    ['sdw_jobs_total{state="completed"}', sum(T, 'completed')],
    ['sdw_jobs_total{state="cancelled"}', sum(T, 'cancelled')],
    ['sdw_jobs_total{state="failed"}', sum(T, 'failed')],
    ['sdw_jobs_rejected_total{reason="queue_full"}', T.r429],
    ['sdw_jobs_rejected_total{reason="invalid"}', T.r400],
    ['sdw_jobs_rejected_total{reason="unavailable"}', 0],
    ['sdw_http_responses_total{code="429"}', T.r429],
    ['sdw_http_responses_total{code="413"}', T.r413],
  ];

  const fdsAfterLoad = fds().length;
  const fdsAfter = await quiet();
  let rssAfter;
  for (let i = 0; ; i++) {   // the allocator may give pages back a moment later
    await sleep(500);
    rssAfter = rssKiB();
    if (rssAfter <= rssBefore * 1.1 || i >= 20) break;
  }
  const health = await request('GET', '/health');
  const lastJob = await request('POST', '/v1/jobs', { body: { prompt: 'last', width: 64, height: 64, steps: 2 } });
  const lastState = lastJob.status === 202 ? checkStream(lastJob.data.job_id, (await stream(lastJob.data.job_id)).events) : null;

  // ---- the summary
  const pad = (s, n) => String(s).padStart(n);
  console.log(`\n${'jobs'.padEnd(22)}${pad('submitted', 10)}${pad('completed', 10)}${pad('cancelled', 10)}${pad('failed', 8)}`);
  for (const k of KINDS)
    console.log(`${k.padEnd(22)}${pad(T.submitted[k], 10)}${pad(T.final[k].completed, 10)}${pad(T.final[k].cancelled, 10)}${pad(T.final[k].failed, 8)}`);
  console.log(`${'total'.padEnd(22)}${pad(T.accepted, 10)}${pad(sum(T, 'completed'), 10)}${pad(sum(T, 'cancelled'), 10)}${pad(sum(T, 'failed'), 8)}`);
  console.log(`\nfaults`);
  console.log(`  429 queue full         ${T.r429} (${qp.seen429} while held full, ${T.r429 - qp.seen429} in the mix), each with Retry-After`);
  console.log(`  413 body too large     ${T.r413} (--max-body 256K)`);
  console.log(`  400 invalid body       ${T.r400}`);
  console.log(`  hang-ups mid-stream    ${T.hungUp}`);
  console.log(`  cancels                ${T.cancelQueued} queued, ${T.cancelRunning} running, ${T.cancelLate} too late to stop`);
  for (const s of slowResults)
    console.log(`  slow client (${s.what.padEnd(7)}) ${s.cut ? `cut after ${s.seconds.toFixed(1)} s` : `NOT cut after ${s.seconds.toFixed(1)} s`}` +
      `${s.answer ? `, answered "${s.answer}"` : ''}`);
  console.log(`\n/metrics (change over the load)      metric  clients`);
  for (const [k, v] of rows) console.log(`  ${k.padEnd(44)}${pad(d(k), 6)}${pad(v, 9)}`);
  console.log(`\nRSS   before ${mib(rssBefore)} MiB, after ${mib(rssAfter)} MiB (${((rssAfter / rssBefore - 1) * 100).toFixed(1)}%)`);
  console.log(`fds   before ${fdsBefore}, after ${fdsAfter} (${fdsAfterLoad} right after the load)`);
  console.log(`time  load ${loadSeconds.toFixed(1)} s, whole test ${((Date.now() - tStart) / 1000).toFixed(1)} s\n`);

  // ---- the verdicts
  assert.deepEqual(T.failures, [], `jobs failed under load:\n${T.failures.join('\n')}`);
  for (const [k, v] of rows) assert.equal(d(k), v, `/metrics ${k} moved by ${d(k)}, the clients saw ${v}`);
  assert.equal(sum(T, 'completed') + sum(T, 'cancelled') + sum(T, 'failed'), T.accepted, 'accepted jobs without a final state');
  for (const k of KINDS) assert.ok(T.final[k].completed > 0, `no ${k} job completed`);
  assert.ok(T.hungUp > 0 && T.cancelQueued > 0 && T.cancelRunning > 0 && T.r429 > 0 && T.r413 > 0, 'a fault kind was not exercised');
  assert.ok(rssAfter <= rssBefore * 1.1, `RSS grew from ${mib(rssBefore)} to ${mib(rssAfter)} MiB (> 10%)`);
  const listing = fds();
  assert.ok(fdsAfter <= fdsBefore, `fds leaked: ${fdsBefore} before, ${fdsAfter} after: ${listing.join(' ')}`);
  assert.equal(health.status, 200, `/health after the load: ${describe(health)}`);
  assert.equal(lastJob.status, 202, `a job after the load: ${describe(lastJob)}`);
  assert.equal(lastState, 'completed', 'the job after the load did not complete');
  stopping = true;
  assert.deepEqual(await srv.stop('SIGTERM'), { code: 0, signal: null }, 'SIGTERM after the load');
  for (const s of slowResults) {
    assert.ok(s.cut, `a slow client (${s.what}, one byte a second) was not cut after ${s.seconds} s ` +
      `(--request-timeout ${REQUEST_TIMEOUT_S}): it holds a connection and its thread`);
    assert.ok(s.seconds >= REQUEST_TIMEOUT_S * 0.75, `a slow client (${s.what}) was cut after ${s.seconds} s, before --request-timeout`);
    assert.ok(!/^HTTP\/1\.[01] 2/.test(s.answer), `a slow client (${s.what}) got ${s.answer}`);
  }
}

const watchdog = setTimeout(() => {
  console.log(`FAIL: the load test did not finish within ${WHOLE_TEST_S} s (a hang?)`);
  fail();
}, WHOLE_TEST_S * 1000);

function fail() {
  if (srv) {
    console.log(`--- server stderr (last 40 lines):\n${srv.stderr.split('\n').slice(-41).join('\n')}`);
    if (!srv.exited) srv.proc.kill('SIGKILL');
  }
  process.exit(1);
}

try {
  await main();
  clearTimeout(watchdog);
  console.log('ok   load test');
  process.exit(0);
} catch (e) {
  console.log(`FAIL ${e.stack ?? e}`);
  fail();
}
