// fleet_lib.mjs: what the fleet tests share: a real redis-server on a free
// port in a temp dir (append-only file on, restartable, killable), real
// `sd-worker serve --redis` processes in each role, redis-cli to look inside
// Redis, and an SSE reader that goes on at another front with Last-Event-ID
// when its front goes away, as a browser's EventSource behind a load
// balancer would.
//
// Every test script is run by ctest as: node test_x.mjs SD_WORKER DATA_DIR BUILD_DIR
import { spawn, execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { BIN, MODEL, assert, sleep } from '../server/lib.mjs';

export { BIN, MODEL, assert, sleep };

export function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => { const p = s.address().port; s.close(() => resolve(p)); });
  });
}

const children = [];
// A script that dies early leaves no process behind.
process.on('exit', () => { for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL'); });

// ---------------------------------------------------------------- Redis

export class Redis {
  // A redis-server of our own: port chosen free, data in a temp dir, AOF
  // with appendfsync always (every accepted write on disk before the reply).
  static async start({ port } = {}) {
    const r = new Redis();
    r.dir = mkdtempSync(path.join(os.tmpdir(), 'sdw-fleet-redis-'));
    r.port = port ?? await freePort();
    writeFileSync(path.join(r.dir, 'redis.conf'), [
      `port ${r.port}`, 'bind 127.0.0.1', `dir ${r.dir}`, 'appendonly yes', 'appendfsync always',
      'save ""', 'daemonize no', `logfile ${path.join(r.dir, 'redis.log')}`, 'protected-mode no',
    ].join('\n') + '\n');
    await r.launch();
    return r;
  }

  async launch() {
    this.proc = spawn('redis-server', [path.join(this.dir, 'redis.conf')], { stdio: 'ignore' });
    children.push(this.proc);
    this.exit = new Promise((resolve) => this.proc.on('exit', resolve));
    for (let i = 0; ; i++) {
      if ((await this.cli('PING').catch(() => '')).trim() === 'PONG') return;
      if (i > 200) throw new Error(`redis-server on ${this.port} did not start`);
      await sleep(25);
    }
  }

  get url() { return `redis://127.0.0.1:${this.port}`; }

  // Stops it (SIGKILL: as a crash; SIGTERM: a clean shutdown) and starts it
  // again on the same port and files after `downMs`.
  async restart(signal = 'SIGKILL', downMs = 1000) {
    this.proc.kill(signal);
    await this.exit;
    await sleep(downMs);
    await this.launch();
  }

  cli(...args) {
    return new Promise((resolve, reject) => {
      execFile('redis-cli', ['-p', String(this.port), '--raw', ...args], { maxBuffer: 64 << 20 }, (err, out) =>
        err ? reject(err) : resolve(out));
    });
  }

  async stop() {
    if (this.proc.exitCode === null && this.proc.signalCode === null) {
      this.proc.kill('SIGTERM');
      await this.exit;
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------- workers

// Starts `sd-worker serve` in a role; resolves once it says where it is
// (the URL of its HTTP, its worker id) and, with HTTP, /ready says 200
// (opts.noWait: not waiting for that). Its stderr is kept (w.log).
export async function startWorker(name, redisUrl, { role = 'both', args = [], model = MODEL, noWait = false, env = {} } = {}) {
  const argv = ['serve', '--port', '0', '--threads', '1', ...args];
  if (redisUrl) argv.push('--redis', redisUrl, '--role', role);
  if (role !== 'front') argv.push('-m', model);
  const proc = spawn(BIN, argv, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
  children.push(proc);
  const w = { name, role, proc, log: '', out: '', exited: null, url: null, id: null };
  proc.stderr.on('data', (d) => { w.log += d; });
  proc.stdout.on('data', (d) => { w.out += d; });
  w.exit = new Promise((resolve) => proc.on('exit', (code, signal) => { w.exited = { code, signal }; resolve(w.exited); }));
  for (let i = 0; ; i++) {
    const url = w.out.match(/listening on (http:\/\/\S+)/)?.[1];
    const id = w.out.match(/fleet worker (\S+)/)?.[1];
    if ((role === 'worker' && id) || (role === 'front' && url) || (role === 'both' && url && (id || !redisUrl))) {
      w.url = url ?? null;
      w.id = id ?? null;
      break;
    }
    if (w.exited) throw new Error(`${name} exited (${JSON.stringify(w.exited)}):\n${w.log}`);
    if (i > 800) throw new Error(`${name} did not start:\n${w.log}`);
    await sleep(25);
  }
  if (w.url && !noWait) {
    for (let i = 0; ; i++) {
      const r = await fetch(w.url + '/ready').catch(() => null);
      if (r?.status === 200) break;
      if (i > 800) throw new Error(`${name} not ready:\n${w.log}`);
      await sleep(25);
    }
  }
  w.kill = (signal) => { if (!w.exited) proc.kill(signal); };
  w.stop = async (signal = 'SIGTERM') => { w.kill(signal); return w.exit; };
  return w;
}

// Fails when a process reported a sanitizer error (an ASan build, `make
// test-asan`): the processes' logs, once they have exited.
export function checkSanitizers(procs) {
  for (const w of procs)
    if (/ERROR: (Address|Leak)Sanitizer|runtime error:/.test(w.log))
      throw new Error(`${w.name}: a sanitizer report:\n${w.log.split('\n').filter((l) => /Sanitizer|runtime error|#\d+ /.test(l)).slice(0, 40).join('\n')}`);
}

export async function json(url, method = 'GET', body, headers = {}) {
  const init = { method, headers: { ...headers } };
  if (body !== undefined) {
    init.body = typeof body === 'string' || body instanceof Uint8Array ? body : JSON.stringify(body);
    if (!init.headers['Content-Type']) init.headers['Content-Type'] = 'application/json';
  }
  const res = await fetch(url, init);
  const text = await res.text();
  let data = null;
  try { data = JSON.parse(text); } catch { data = text; }
  return { status: res.status, headers: res.headers, data };
}

// ---------------------------------------------------------------- SSE

// Reads a job's SSE stream to its `done`, starting at fronts[0]; when a
// front goes away (or after `hangUpAfter` events, on purpose) it goes on at
// the next front with Last-Event-ID. Returns the events and the fronts
// that served them ({front, from} for each connection).
export async function streamJob(fronts, id, { hangUpAfter = null, lastEventId = 0 } = {}) {
  const events = [];
  const legs = [];
  let last = lastEventId, k = 0, hungUp = false;
  for (let attempt = 0; attempt < 40; attempt++) {
    const front = fronts[k % fronts.length];
    const ac = new AbortController();
    const leg = { front, from: last, events: 0 };
    legs.push(leg);
    try {
      const headers = last ? { 'Last-Event-ID': String(last) } : {};
      const res = await fetch(`${front}/v1/jobs/${id}/stream`, { headers, signal: ac.signal });
      assert.equal(res.status, 200, `stream ${id} on ${front}: HTTP ${res.status}`);
      const reader = res.body.getReader();
      const dec = new TextDecoder();
      let buf = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += dec.decode(value, { stream: true });
        let i;
        while ((i = buf.indexOf('\n\n')) >= 0) {
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
          leg.events++;
          last = ev.id;
          if (ev.event === 'done') { ac.abort(); return { events, legs }; }
          if (hangUpAfter !== null && !hungUp && events.length >= hangUpAfter) {
            hungUp = true;
            ac.abort();
            throw new Error('hung up on purpose');
          }
        }
      }
    } catch { /* the front went away, or we left it: go on at the next one */ }
    k++;
    await sleep(50);
  }
  throw new Error(`stream ${id}: no done after 40 connections`);
}

// The checks every stream passes: ids 1, 2, 3, ... with no gap and no
// repeat, whichever fronts served them; exactly one complete or error, just
// before the one done, which ends it.
export function checkStream(events, id) {
  events.forEach((e, i) => assert.equal(e.id, i + 1, `job ${id}: event ${i} has id ${e.id}`));
  const finals = events.filter((e) => e.event === 'complete' || e.event === 'error');
  assert.equal(finals.length, 1, `job ${id}: ${finals.length} complete/error events`);
  assert.equal(events.filter((e) => e.event === 'done').length, 1);
  assert.deepEqual(events.slice(-2).map((e) => e.event), [finals[0].event, 'done'], `job ${id} ends with its final event, then done`);
  return { final: finals[0], done: events.at(-1).data };
}
