// test_lifecycle.mjs: stopping and timing out (issue 8, items 3 and 5, the
// server's part): SIGTERM drains (queued jobs cancelled, the running one
// finishes, streams get their final events, exit 0), --drain-timeout
// cancels a job that runs too long, a second SIGINT exits at once,
// --request-timeout cuts a client that sends its body slowly or nothing at
// all, but never a slow answer (a long txt2img, a long stream with
// keep-alive comments).
import net from 'node:net';
import { assert, run, startServer, json, submit, sse, sleep } from './lib.mjs';

// Resolves when `events` holds a progress event at step >= n.
function untilStep(url, n) {
  let reached;
  const at = new Promise((r) => { reached = r; });
  const all = sse(url, { onEvent: (ev) => { if (ev.event === 'progress' && ev.data.step >= n) reached(); } });
  return { at, all };
}

// Sends `head`, then one byte of body every `every` ms; resolves with the
// seconds until the server closed the connection.
function slowClient(port, head, every) {
  return new Promise((resolve, reject) => {
    const t0 = Date.now();
    const sock = net.connect(port, '127.0.0.1', () => sock.write(head));
    const timer = every ? setInterval(() => sock.write('x'), every) : null;
    sock.on('data', () => {});
    sock.on('error', () => {});
    sock.on('close', () => { clearInterval(timer); resolve((Date.now() - t0) / 1000); });
    setTimeout(() => { clearInterval(timer); sock.destroy(); reject(new Error('the connection was not cut')); }, 15000);
  });
}

await run([
  ['SIGTERM: queued jobs cancelled, the running one finishes, streams end, exit 0', async () => {
    const srv = await startServer(['--step-delay-ms', '30', '--drain-timeout', '20']);
    const a = await submit(srv, { prompt: 'a', width: 64, height: 64, steps: 25, seed: 1 });
    const b = await submit(srv, { prompt: 'b', width: 64, height: 64, steps: 5 });
    const sa = untilStep(srv.url + a.sse_url, 2);
    const sb = sse(srv.url + b.sse_url);
    await sa.at;
    const t0 = Date.now();
    srv.proc.kill('SIGTERM');
    const eb = await sb;
    assert.deepEqual(eb.map((e) => e.event), ['error', 'done']);
    assert.equal(eb[0].data.code, 'shutting_down');
    // No new connections while draining.
    await assert.rejects(new Promise((resolve, reject) => {
      const sock = net.connect(srv.port, '127.0.0.1', () => { sock.destroy(); resolve(); });
      sock.on('error', reject);
    }), /ECONNREFUSED/);
    const ea = await sa.all;
    assert.deepEqual(ea.slice(-2).map((e) => e.event), ['complete', 'done']);
    assert.equal(ea.filter((e) => e.event === 'progress').length, 25);
    assert.deepEqual(await srv.exit, { code: 0, signal: null });
    assert.ok(Date.now() - t0 < 60000);
    assert.match(srv.stderr, /SIGTERM: stopping gracefully/);
  }],

  ['SIGTERM: --drain-timeout cancels a job that runs longer', async () => {
    const srv = await startServer(['--step-delay-ms', '30', '--drain-timeout', '0.5']);
    const a = await submit(srv, { prompt: 'a', width: 64, height: 64, steps: 150 });
    const sa = untilStep(srv.url + a.sse_url, 2);
    await sa.at;
    const t0 = Date.now();
    srv.proc.kill('SIGTERM');
    const ea = await sa.all;
    assert.deepEqual(ea.slice(-2).map((e) => e.event), ['error', 'done']);
    assert.equal(ea.at(-2).data.code, 'shutting_down');
    assert.equal(ea.at(-1).data.status, 'cancelled');
    assert.deepEqual(await srv.exit, { code: 0, signal: null });
    assert.ok(Date.now() - t0 < 8000, `took ${Date.now() - t0} ms`);
  }],

  ['a second SIGINT exits at once', async () => {
    const srv = await startServer(['--step-delay-ms', '50', '--drain-timeout', '60']);
    const a = await submit(srv, { prompt: 'a', width: 64, height: 64, steps: 150 });
    const sa = untilStep(srv.url + a.sse_url, 1);
    sa.all.catch(() => {}); // the stream is cut when the process exits
    await sa.at;
    srv.proc.kill('SIGINT');
    await sleep(300);
    assert.equal(srv.exited, null, 'the first SIGINT drains');
    const t0 = Date.now();
    srv.proc.kill('SIGINT');
    const exit = await srv.exit;
    assert.equal(exit.code, 130);
    assert.ok(Date.now() - t0 < 2000);
  }],

  ['--request-timeout cuts slow and silent clients, not slow answers', async () => {
    const srv = await startServer(['--request-timeout', '1', '--step-delay-ms', '50', '--keepalive', '1']);
    const head = 'POST /v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n';
    const trickle = await slowClient(srv.port, head, 300);
    assert.ok(trickle >= 0.9 && trickle < 5, `a body at 3 bytes/s was cut after ${trickle} s`);
    const silent = await slowClient(srv.port, '', 0);
    assert.ok(silent >= 0.9 && silent < 5, `a silent connection was cut after ${silent} s`);
    // A synchronous job longer than the timeout is answered.
    const res = await json(srv, 'POST', '/sdapi/v1/txt2img', { prompt: 'x', steps: 30, width: 64, height: 64 });
    assert.equal(res.status, 200);
    assert.equal(res.data.images.length, 1);
    // So is a stream, with keep-alive comments while a long step runs.
    await srv.stop('SIGTERM');
    const quiet = await startServer(['--request-timeout', '1', '--step-delay-ms', '1300', '--keepalive', '1']);
    const job = await submit(quiet, { prompt: 'q', width: 64, height: 64, steps: 2 });
    const events = await sse(quiet.url + job.sse_url);
    assert.deepEqual(events.slice(-2).map((e) => e.event), ['complete', 'done']);
    assert.ok(events.comments >= 2, `${events.comments} comments`);
    assert.deepEqual(await quiet.stop('SIGTERM'), { code: 0, signal: null });
  }],
]);
