// test_fleet_faults.mjs: a fleet's bad inputs and hard cases, one at a
// time, each on its own key prefix of one real redis-server:
//   - a malformed --redis URL, --role without --redis, a front given a
//     model: exit 2 with a clear message;
//   - Redis unreachable at start: the worker stays up, says so in its log,
//     /ready is 503 and POSTs are 503 until Redis comes; then it works;
//   - --redis pointing at something that is not Redis (an HTTP server), and
//     at a server that answers every command with an error (no scripts, no
//     streams): a clear line in the log, /ready 503, the process stays up;
//   - corrupted records in Redis (a queue entry without an id, or naming no
//     record; a record with a body that does not parse, an unknown
//     dialect, no seed) and a key of the wrong type: each job ends failed
//     with a message naming what is wrong (or the entry is dropped), POSTs
//     answer 503 with Redis's error, and the worker goes on with the next;
//   - --max-attempts 1: the job of a kill -9'd worker ends failed
//     (worker_lost) instead of running again;
//   - a worker whose take's answer was lost (Redis says it runs a job it
//     never heard of): it resumes that job (attempt 2, "resumed" in its
//     log, no claim);
//   - SIGTERM while a job runs past --drain-timeout: the job is handed back
//     and another worker completes it (`requeued`, reason: stopping);
//   - a job queued while no worker runs survives a Redis crash (AOF) and
//     completes once a worker comes.
import net from 'node:net';
import { Redis, startWorker, json, streamJob, checkStream, checkSanitizers, freePort, assert, sleep, BIN, MODEL } from './fleet_lib.mjs';
import { spawnSync } from 'node:child_process';

const procs = [];
const redis = await Redis.start();
async function start(name, prefix, role, extra = [], opts = {}) {
  const w = await startWorker(name, opts.url ?? redis.url, { role, args: ['--redis-prefix', prefix, '--claim-after', '1', ...extra], ...opts });
  procs.push(w);
  return w;
}
const UUID = (k) => `00000000-0000-4000-8000-${String(k).padStart(12, '0')}`;

async function untilTrue(cond, what, ms = 20000) {
  const t = Date.now();
  while (!(await cond())) {
    if (Date.now() - t > ms) throw new Error(`timed out waiting for ${what}`);
    await sleep(25);
  }
}

const cases = [
  ['bad command lines exit 2 with a clear message', async () => {
    const run = (...args) => spawnSync(BIN, ['serve', ...args], { encoding: 'utf8' });
    let r = run('-m', MODEL, '--redis', 'http://127.0.0.1:6379');
    assert.equal(r.status, 2);
    assert.match(r.stderr, /--redis: the URL must look like redis:\/\/\[user:pass@\]host:port\[\/db\]/);
    r = run('-m', MODEL, '--redis', 'redis://127.0.0.1:99999');
    assert.equal(r.status, 2);
    assert.match(r.stderr, /--redis: the port must be a number in 1\.\.65535/);
    r = run('-m', MODEL, '--role', 'worker');
    assert.equal(r.status, 2);
    assert.match(r.stderr, /--role needs --redis/);
    r = run('-m', MODEL, '--role', 'front', '--redis', redis.url);
    assert.equal(r.status, 2);
    assert.match(r.stderr, /--role front loads no model/);
  }],

  ['Redis unreachable at start: up, 503, retrying; then it comes and all works', async () => {
    const r2 = { port: await freePort() };
    const w = await start('unreachable', 'u:', 'both', [], { url: `redis://127.0.0.1:${r2.port}`, noWait: true });
    await untilTrue(async () => /cannot connect/.test(w.log) && /ready: /.test(w.log), 'the log line, the model');
    assert.match(w.log, new RegExp(`redis 127\\.0\\.0\\.1:${r2.port}/0: cannot connect: .*retrying with backoff`));
    assert.equal((await json(w.url + '/health')).status, 200);
    const ready = await json(w.url + '/ready');
    assert.equal(ready.status, 503);
    assert.equal(ready.data.state, 'redis_unreachable');
    assert.match(ready.data.error, /cannot connect/);
    const post = await json(w.url + '/v1/jobs', 'POST', { prompt: 'x', width: 64, height: 64, steps: 2 });
    assert.equal(post.status, 503);
    assert.equal(post.data.error.code, 'redis_unavailable');
    // Redis comes: the worker connects by itself.
    const late = await Redis.start({ port: r2.port });
    await untilTrue(async () => (await json(w.url + '/ready')).status === 200, '/ready 200');
    assert.match(w.log, /connected again after/);
    const job = await json(w.url + '/v1/jobs', 'POST', { prompt: 'x', width: 64, height: 64, steps: 2, seed: 1 });
    assert.equal(job.status, 202);
    const { events } = await streamJob([w.url], job.data.job_id);
    assert.equal(checkStream(events, 'late').final.event, 'complete');
    await w.stop();
    await late.stop();
  }],

  ['--redis at an HTTP server, and at a server that answers only errors', async () => {
    const http = procs.find((p) => p.url && !p.exited) ?? await start('http', 'h:', 'front');
    const port = new URL(http.url).port;
    const notRedis = await start('not-redis', 'n:', 'both', [], { url: `redis://127.0.0.1:${port}`, noWait: true });
    // A server that knows INFO (a recent version) and PING, and nothing else.
    const fake = net.createServer((sock) => {
      let buf = Buffer.alloc(0);
      sock.on('error', () => {});
      sock.on('data', (d) => {
        buf = Buffer.concat([buf, d]);
        for (let cmd; (cmd = parseResp());) {
          const name = cmd[0].toUpperCase();
          if (name === 'INFO') {
            const info = '# Server\r\nredis_version:7.0.0\r\n';
            sock.write(`$${info.length}\r\n${info}\r\n`);
          } else if (name === 'PING') sock.write('+PONG\r\n');
          else sock.write(`-ERR unknown command '${cmd[0]}', with args beginning with: \r\n`);
        }
      });
      function parseResp() {
        const s = buf.toString('latin1');
        const m = s.match(/^\*(\d+)\r\n/);
        if (!m) return null;
        let off = m[0].length;
        const out = [];
        for (let i = 0; i < Number(m[1]); i++) {
          const h = s.slice(off).match(/^\$(\d+)\r\n/);
          if (!h || off + h[0].length + Number(h[1]) + 2 > s.length) return null;
          out.push(s.slice(off + h[0].length, off + h[0].length + Number(h[1])));
          off += h[0].length + Number(h[1]) + 2;
        }
        buf = buf.subarray(off);
        return out;
      }
    });
    const fakePort = await new Promise((resolve) => fake.listen(0, '127.0.0.1', () => resolve(fake.address().port)));
    const errors = await start('errors', 'e:', 'both', [], { url: `redis://127.0.0.1:${fakePort}`, noWait: true });
    for (const w of [notRedis, errors]) await untilTrue(async () => /ready: /.test(w.log), `${w.name}'s model`);
    await untilTrue(async () => /not a Redis server/.test(notRedis.log), 'the not-Redis log line');
    await untilTrue(async () => /cannot run sd-worker's scripts/.test(errors.log), 'the errors log line');
    assert.match(errors.log, /cannot run sd-worker's scripts \(Lua with streams\): ERR unknown command 'EVAL'/);
    await sleep(1500);   // retrying meanwhile, and still up
    for (const w of [notRedis, errors]) {
      assert.equal(w.exited, null, `${w.name} stays up`);
      assert.equal((await json(w.url + '/health')).status, 200);
      const ready = await json(w.url + '/ready');
      assert.equal(ready.status, 503);
      assert.equal(ready.data.state, 'redis_unreachable');
    }
    await notRedis.stop();
    await errors.stop();
    fake.close();
  }],

  ['corrupted records and a wrong-typed key: clear errors, nothing lost', async () => {
    const w = await start('corrupt', 'c:', 'both');
    const cli = (...a) => redis.cli(...a);
    await cli('XGROUP', 'CREATE', 'c:queue', 'workers', '0', 'MKSTREAM');
    await cli('XADD', 'c:queue', '*', 'foo', 'bar');                   // no id
    await cli('XADD', 'c:queue', '*', 'id', UUID(4));                  // names no record
    const records = [
      [UUID(1), ['dialect', 'native', 'body', '{not json', 'seed', '5'], /invalid JSON|JSON/i, 'invalid_request'],
      [UUID(2), ['dialect', 'bogus', 'body', '{}', 'seed', '5'], /unknown dialect/, 'bad_record'],
      [UUID(3), ['dialect', 'native', 'body', '{"prompt":"x"}'], /no seed/, 'bad_record'],
    ];
    for (const [id, fields] of records) {
      const entry = (await cli('XADD', 'c:queue', '*', 'id', id)).trim();
      await cli('HSET', `c:job:${id}`, 'id', id, 'state', 'queued', 'queue', 'c:queue', 'entry', entry, ...fields);
      await cli('ZADD', 'c:queued', '1', id);
      await cli('XADD', 'c:wake', '*', 'queue', 'c:queue');
    }
    for (const [id, , message, code] of records) {
      await untilTrue(async () => ['failed'].includes((await json(w.url + `/v1/jobs/${id}`)).data.status), `${id} failed`);
      const st = (await json(w.url + `/v1/jobs/${id}`)).data;
      assert.equal(st.error.code, code);
      assert.match(st.error.message, message);
    }
    assert.match(w.log, /queue c:queue: entry \S+ names no job record \(id ''\): dropped/);
    assert.match(w.log, new RegExp(`names no job record \\(id '${UUID(4)}'\\): dropped`));
    // A key of the wrong type: Redis's error, 503; the worker goes on.
    await cli('SET', 'c:queued', 'garbage');
    const post = await json(w.url + '/v1/jobs', 'POST', { prompt: 'x', width: 64, height: 64, steps: 2 });
    assert.equal(post.status, 503);
    assert.match(post.data.error.message, /WRONGTYPE/);
    await cli('DEL', 'c:queued');
    const job = await json(w.url + '/v1/jobs', 'POST', { prompt: 'x', width: 64, height: 64, steps: 2, seed: 1 });
    assert.equal(job.status, 202);
    const { events } = await streamJob([w.url], job.data.job_id);
    assert.equal(checkStream(events, 'after').final.event, 'complete');
    assert.equal(w.exited, null);
    await w.stop();
  }],

  ['--max-attempts 1: a kill -9\'d worker\'s job fails as worker_lost', async () => {
    const args = ['--max-attempts', '1', '--step-delay-ms', '50'];
    const front = await start('front-m', 'm:', 'front', args);
    const a = await start('a-m', 'm:', 'worker', args);
    const b = await start('b-m', 'm:', 'worker', args);
    const job = await json(front.url + '/v1/jobs', 'POST', { prompt: 'x', width: 64, height: 64, steps: 100, seed: 2 });
    const id = job.data.job_id;
    const stream = streamJob([front.url], id);
    let runner;
    await untilTrue(async () => (runner = [a, b].find((w) => w.log.includes(`job ${id} running`))), 'the job to run');
    runner.kill('SIGKILL');
    const { events } = await stream;
    const { final } = checkStream(events, id);
    assert.equal(final.event, 'error');
    assert.equal(final.data.code, 'worker_lost');
    assert.match(final.data.message, /stopped heartbeating.*--max-attempts is 1/);
    assert.equal(events.filter((e) => e.event === 'requeued').length, 0);
    for (const w of [front, a, b]) await w.stop('SIGKILL');
  }],

  ['a take whose answer was lost: the worker resumes the job Redis gave it', async () => {
    const front = await start('front-r', 'r:', 'front');
    const w = await start('w-r', 'r:', 'worker');
    // (after its first heartbeat, which clears the job of a worker that reuses an id)
    await untilTrue(async () => (await redis.cli('HGET', `r:worker:${w.id}`, 'beat')).trim() !== '', 'a heartbeat');
    w.kill('SIGSTOP');
    const job = await json(front.url + '/v1/jobs', 'POST', { prompt: 'x', width: 64, height: 64, steps: 2, seed: 5 });
    const id = job.data.job_id;
    // What the take script does, as if its answer then went down with the
    // connection: the entry read into w's pending list, the job started on w.
    const q = (await redis.cli('HGET', `r:job:${id}`, 'queue')).trim();
    const read = (await redis.cli('XREADGROUP', 'GROUP', 'workers', w.id, 'COUNT', '1', 'STREAMS', q, '>')).trim().split('\n');
    const entry = read.find((x) => /^\d+-\d+$/.test(x));
    assert.ok(entry, `an entry read from ${q}: ${read}`);
    await redis.cli('HINCRBY', `r:job:${id}`, 'attempt', '1');
    await redis.cli('HSET', `r:job:${id}`, 'state', 'running', 'worker', w.id, 'queue', q, 'entry', entry,
      'started', String(Date.now()), 'step', '0', 'total', '0', 'cancel', '', 'published', '0');
    await redis.cli('ZREM', 'r:queued', id);
    await redis.cli('HSET', `r:worker:${w.id}`, 'job', id, 'state', 'busy');
    const stream = streamJob([front.url], id);
    w.kill('SIGCONT');
    const { events } = await stream;
    const { final } = checkStream(events, id);
    assert.equal(final.event, 'complete');
    assert.match(w.log, new RegExp(`job ${id} resumed: Redis had given it to this worker`));
    assert.match(w.log, new RegExp(`job ${id} running \\(attempt 2,`));
    assert.doesNotMatch(w.log, /claimed from a lost worker/);
    assert.equal(events.filter((e) => e.event === 'requeued').length, 0);
    for (const p of [front, w]) await p.stop();
  }],

  ['SIGTERM past --drain-timeout: the running job is handed back and completed elsewhere', async () => {
    const args = ['--step-delay-ms', '30', '--drain-timeout', '0.3'];
    const front = await start('front-s', 's:', 'front', args);
    const a = await start('a-s', 's:', 'worker', args);
    const job = await json(front.url + '/v1/jobs', 'POST', { prompt: 'x', width: 64, height: 64, steps: 60, seed: 3 });
    const id = job.data.job_id;
    const stream = streamJob([front.url], id);
    await untilTrue(async () => a.log.includes(`job ${id} running`), 'the job to run');
    const b = await start('b-s', 's:', 'worker', args);
    a.kill('SIGTERM');
    assert.deepEqual(await a.exit, { code: 0, signal: null });
    assert.match(a.log, new RegExp(`job ${id} handed back to the queue`));
    const { events } = await stream;
    const { final } = checkStream(events, id);
    assert.equal(final.event, 'complete');
    const rq = events.filter((e) => e.event === 'requeued');
    assert.equal(rq.length, 1);
    assert.equal(rq[0].data.reason, 'the worker is stopping');
    await untilTrue(async () => new RegExp(`job ${id} completed \\(attempt 2\\)`).test(b.log), 'b to log it');
    for (const w of [front, b]) assert.deepEqual(await w.stop(), { code: 0, signal: null });
  }],

  ['the fleet\'s --queue-max (429), a queue that survives a Redis crash (AOF), --result-ttl', async () => {
    const args = ['--queue-max', '2', '--result-ttl', '20'];
    const front = await start('front-q', 'q:', 'front', args);
    const other = await start('other-q', 'q:', 'front', args);
    const ids = [];
    for (const f of [front, other]) {
      const job = await json(f.url + '/v1/jobs', 'POST', { prompt: 'kept', width: 64, height: 64, steps: 3, seed: 4 });
      assert.equal(job.status, 202);
      ids.push(job.data.job_id);
    }
    // Two queued on two fronts fill the fleet's queue of 2.
    const full = await json(front.url + '/v1/jobs', 'POST', { prompt: 'no room', width: 64, height: 64, steps: 3 });
    assert.equal(full.status, 429);
    assert.equal(full.data.error.code, 'queue_full');
    assert.ok(Number(full.headers.get('retry-after')) > 0);
    assert.equal((await json(other.url + `/v1/jobs/${ids[0]}`)).data.queue_position, 0);
    await redis.restart('SIGKILL', 300);
    const w = await start('w-q', 'q:', 'worker', args);
    for (const id of ids) {
      const { events } = await streamJob([front.url], id);
      assert.equal(checkStream(events, 'kept').final.event, 'complete');
      const ttl = Number(await redis.cli('PTTL', `q:job:${id}`));
      assert.ok(ttl > 15000 && ttl <= 20000, `the result expires after --result-ttl (PTTL ${ttl})`);
    }
    for (const p of [front, other, w]) await p.stop();
  }],
];

let failed = false;
for (const [name, fn] of cases) {
  const t0 = Date.now();
  try {
    await fn();
    console.log(`ok   ${name} (${((Date.now() - t0) / 1000).toFixed(2)} s)`);
  } catch (e) {
    failed = true;
    console.log(`FAIL ${name}: ${e.stack ?? e}`);
    for (const w of procs) console.log(`--- ${w.name} stderr:\n${w.log.split('\n').slice(-25).join('\n')}`);
    break;
  }
}
for (const w of procs) if (!w.exited) { w.kill('SIGKILL'); await w.exit; }
try {
  checkSanitizers(procs);
} catch (e) {
  failed = true;
  console.log(`FAIL: ${e.message}`);
}
await redis.stop();
process.exit(failed ? 1 : 0);
