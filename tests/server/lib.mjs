// lib.mjs: what the server tests share: starting `sd-worker serve` on a free
// port with the tiny model, reading SSE streams, decoding PNGs (zlib only),
// writing small PNGs, and a minimal test runner that times each case.
//
// Every test script is run by ctest as: node test_x.mjs SD_WORKER DATA_DIR BUILD_DIR
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import zlib from 'node:zlib';
import assert from 'node:assert/strict';

export { assert };
export const [BIN, DATA, BUILD] = process.argv.slice(2);
if (!BIN || !DATA || !BUILD) {
  console.error('usage: node test.mjs SD_WORKER DATA_DIR BUILD_DIR');
  process.exit(2);
}
export const MODEL = `${DATA}/models/sd1-tiny/sd1-tiny.safetensors`;
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
export const input = (name) => readFileSync(`${DATA}/inputs/${name}`);
export const inputB64 = (name) => input(name).toString('base64');

// ---------------------------------------------------------------- the server

// Starts the server; resolves once it listens and /ready (asked with
// opts.headers) says 200, unless opts.noWait. Its stderr is kept (srv.stderr) and shown when a test fails.
export async function startServer(args = [], opts = {}) {
  // One compute thread: test servers run side by side on small machines.
  const argv = ['serve', '-m', opts.model ?? MODEL, '--port', '0', '--threads', String(opts.threads ?? 1), ...args];
  const proc = spawn(BIN, argv, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...(opts.env ?? {}) } });
  const srv = { proc, stderr: '', exited: null };
  proc.stderr.on('data', (d) => { srv.stderr += d; });
  srv.exit = new Promise((resolve) => proc.on('exit', (code, signal) => { srv.exited = { code, signal }; resolve(srv.exited); }));
  srv.url = await new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`server did not start:\n${srv.stderr}`)), 20000);
    proc.stdout.on('data', (d) => {
      out += d;
      const m = out.match(/listening on (http:\/\/[^\s]+)/);
      if (m) { clearTimeout(timer); resolve(m[1]); }
    });
    srv.exit.then((e) => { clearTimeout(timer); reject(new Error(`server exited (${e.code}, ${e.signal}):\n${srv.stderr}`)); });
  });
  srv.port = Number(new URL(srv.url).port);
  srv.stop = async (signal = 'SIGTERM') => {
    if (!srv.exited) proc.kill(signal);
    return srv.exit;
  };
  servers.push(srv);
  if (!opts.noWait) {
    for (let i = 0; ; i++) {
      const r = await fetch(srv.url + '/ready', { headers: opts.headers ?? {} }).catch(() => null);
      if (r && r.status === 200) break;
      if (i > 400) throw new Error(`server not ready:\n${srv.stderr}`);
      await sleep(25);
    }
  }
  return srv;
}
const servers = [];
// A script that dies early (a server that did not start) leaves none behind.
process.on('exit', () => { for (const s of servers) if (!s.exited) s.proc.kill('SIGKILL'); });

export async function json(srv, method, path, body, headers = {}) {
  const init = { method, headers: { ...headers } };
  if (body !== undefined) {
    init.body = typeof body === 'string' || body instanceof Uint8Array ? body : JSON.stringify(body);
    if (!init.headers['Content-Type']) init.headers['Content-Type'] = 'application/json';
  }
  const res = await fetch(srv.url + path, init);
  const text = await res.text();
  let data = null;
  try { data = JSON.parse(text); } catch { data = text; }
  return { status: res.status, headers: res.headers, data };
}

// Asserts an error answer: status and {"error":{"message","code"}}, the
// message mentioning `mentions` when given.
export function assertError(res, status, mentions) {
  assert.equal(res.status, status, `expected ${status}, got ${res.status}: ${JSON.stringify(res.data)}`);
  assert.equal(typeof res.data?.error?.message, 'string', `no error.message in ${JSON.stringify(res.data)}`);
  assert.equal(typeof res.data?.error?.code, 'string', `no error.code in ${JSON.stringify(res.data)}`);
  if (mentions) assert.match(res.data.error.message, mentions);
}

export async function submit(srv, body, headers) {
  const r = await json(srv, 'POST', '/v1/jobs', body, headers);
  assert.equal(r.status, 202, JSON.stringify(r.data));
  assert.match(r.data.job_id, /^[0-9a-f-]{36}$/);
  assert.equal(r.data.sse_url, `/v1/jobs/${r.data.job_id}/stream`);
  return r.data;
}

// ---------------------------------------------------------------- SSE

// Reads an SSE stream into [{id, event, data}] until the server ends it.
// onEvent(ev, events) may return 'stop' to hang up early.
export async function sse(url, { headers = {}, onEvent } = {}) {
  const ac = new AbortController();
  const res = await fetch(url, { headers, signal: ac.signal });
  assert.equal(res.status, 200, `stream ${url}: HTTP ${res.status}`);
  assert.match(res.headers.get('content-type'), /^text\/event-stream/);
  const reader = res.body.getReader();
  const dec = new TextDecoder();
  const events = [];
  let buf = '';
  events.comments = 0;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return events;
    buf += dec.decode(value, { stream: true });
    let i;
    while ((i = buf.indexOf('\n\n')) >= 0) {
      const frame = buf.slice(0, i);
      buf = buf.slice(i + 2);
      const ev = { id: null, event: 'message', data: '' };
      let isComment = true;
      for (const line of frame.split('\n')) {
        if (line.startsWith(':')) continue;
        if (line.startsWith('retry:')) continue;
        isComment = false;
        if (line.startsWith('id: ')) ev.id = Number(line.slice(4));
        else if (line.startsWith('event: ')) ev.event = line.slice(7);
        else if (line.startsWith('data: ')) ev.data += line.slice(6);
      }
      if (isComment) { events.comments++; continue; }
      ev.data = JSON.parse(ev.data);
      events.push(ev);
      if (onEvent && onEvent(ev, events) === 'stop') {
        ac.abort();
        return events;
      }
    }
  }
}

// ---------------------------------------------------------------- PNG

function paeth(a, b, c) {
  const p = a + b - c, pa = Math.abs(p - a), pb = Math.abs(p - b), pc = Math.abs(p - c);
  return pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
}

// Decodes an 8-bit, non-interlaced PNG (gray, RGB, gray+alpha, RGBA): checks
// every chunk's CRC, inflates and unfilters the pixels; returns
// {width, height, channels, pixels, text: {key: value}}.
export function decodePNG(buf) {
  buf = Buffer.from(buf);
  assert.equal(buf.subarray(0, 8).toString('hex'), '89504e470d0a1a0a', 'not a PNG');
  let off = 8, ihdr = null;
  const idat = [], text = {};
  while (off < buf.length) {
    const len = buf.readUInt32BE(off), type = buf.toString('latin1', off + 4, off + 8);
    const data = buf.subarray(off + 8, off + 8 + len);
    assert.equal(buf.readUInt32BE(off + 8 + len), zlib.crc32(buf.subarray(off + 4, off + 8 + len)), `bad CRC in ${type}`);
    if (type === 'IHDR') ihdr = { w: data.readUInt32BE(0), h: data.readUInt32BE(4), depth: data[8], color: data[9], interlace: data[12] };
    else if (type === 'IDAT') idat.push(data);
    else if (type === 'tEXt') {
      const z = data.indexOf(0);
      text[data.toString('latin1', 0, z)] = data.toString('latin1', z + 1);
    } else if (type === 'iTXt') {
      const z = data.indexOf(0);
      let p = z + 3;
      p = data.indexOf(0, p) + 1;
      p = data.indexOf(0, p) + 1;
      text[data.toString('latin1', 0, z)] = data.toString('utf8', p);
    }
    off += 12 + len;
    if (type === 'IEND') break;
  }
  assert.ok(ihdr, 'no IHDR');
  assert.equal(ihdr.depth, 8);
  assert.equal(ihdr.interlace, 0);
  const channels = { 0: 1, 2: 3, 4: 2, 6: 4 }[ihdr.color];
  assert.ok(channels, `colour type ${ihdr.color}`);
  const raw = zlib.inflateSync(Buffer.concat(idat));
  const stride = ihdr.w * channels;
  assert.equal(raw.length, ihdr.h * (stride + 1), 'IDAT size');
  const px = Buffer.alloc(ihdr.h * stride);
  for (let y = 0; y < ihdr.h; y++) {
    const f = raw[y * (stride + 1)], src = raw.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1));
    for (let x = 0; x < stride; x++) {
      const a = x >= channels ? px[y * stride + x - channels] : 0;
      const b = y > 0 ? px[(y - 1) * stride + x] : 0;
      const c = x >= channels && y > 0 ? px[(y - 1) * stride + x - channels] : 0;
      const pred = [0, a, b, (a + b) >> 1, paeth(a, b, c)][f];
      assert.ok(pred !== undefined, `filter ${f}`);
      px[y * stride + x] = (src[x] + pred) & 255;
    }
  }
  return { width: ihdr.w, height: ihdr.h, channels, pixels: px, text };
}

function chunk(type, data) {
  const head = Buffer.alloc(8);
  head.writeUInt32BE(data.length, 0);
  head.write(type, 4, 'latin1');
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(zlib.crc32(Buffer.concat([head.subarray(4), data])));
  return Buffer.concat([head, data, crc]);
}

// An 8-bit PNG from pixel(x, y) -> [v] | [r, g, b] | [r, g, b, a].
export function encodePNG(width, height, channels, pixel) {
  const raw = Buffer.alloc(height * (width * channels + 1));
  for (let y = 0; y < height; y++)
    for (let x = 0; x < width; x++) {
      const v = pixel(x, y);
      for (let c = 0; c < channels; c++) raw[y * (width * channels + 1) + 1 + x * channels + c] = v[c];
    }
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8;
  ihdr[9] = { 1: 0, 3: 2, 4: 6 }[channels];
  return Buffer.concat([Buffer.from('89504e470d0a1a0a', 'hex'), chunk('IHDR', ihdr),
    chunk('IDAT', zlib.deflateSync(raw)), chunk('IEND', Buffer.alloc(0))]);
}

// The image is not flat (a random-weight model still draws something).
export function assertNotFlat(img) {
  const p = img.pixels;
  let min = 255, max = 0;
  for (const v of p) { if (v < min) min = v; if (v > max) max = v; }
  assert.ok(max > min, 'the image is a single colour');
}

// ---------------------------------------------------------------- running

// Runs the cases in order, printing each with its time; exits non-zero on
// the first failure (with the servers' logs), stopping every server.
export async function run(cases) {
  let failed = false;
  for (const [name, fn] of cases) {
    const t0 = performance.now();
    try {
      await fn();
      console.log(`ok   ${name} (${((performance.now() - t0) / 1000).toFixed(2)} s)`);
    } catch (e) {
      failed = true;
      console.log(`FAIL ${name}: ${e.stack ?? e}`);
      for (const s of servers) console.log(`--- server ${s.url} stderr:\n${s.stderr.split('\n').slice(-40).join('\n')}`);
      break;
    }
  }
  for (const s of servers) if (!s.exited) { s.proc.kill('SIGKILL'); await s.exit; }
  process.exit(failed ? 1 : 0);
}
