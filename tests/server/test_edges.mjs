// test_edges.mjs: the HTTP edge (issue 5, item 6): every bad request of the
// issue's list rejected with its status and a JSON error naming the field,
// the size limits (body, pixels, prompt), API keys, and CORS.
import { assert, run, startServer, json, assertError, inputB64, encodePNG, sleep } from './lib.mjs';

const srv = await startServer(['--max-body', '1M', '--max-pixels', '262144', '--max-prompt', '200',
  '--cors-origin', 'https://app.example, https://other.example']);
const keyed = await startServer(['--api-key', 'k3y'], { headers: { Authorization: 'Bearer k3y' } });
const envKeyed = await startServer([], { env: { SDW_API_KEY: 'from-env' }, headers: { Authorization: 'Bearer from-env' } });

const ok = { prompt: 'x', width: 64, height: 64, steps: 1 };
const post = (body, path = '/v1/jobs', s = srv, headers) => json(s, 'POST', path, body, headers);

await run([
  ['malformed JSON, wrong types, a missing prompt', async () => {
    assertError(await post('{"prompt": '), 400, /^body: malformed JSON/);
    assertError(await post('{"prompt": "x"} trailing'), 400, /^body: malformed JSON/);
    assertError(await post('[1, 2]'), 400, /^body: expected a JSON object/);
    assertError(await post(''), 400, /^body: empty/);
    assertError(await post({ prompt: 5 }), 400, /^prompt: must be a string, not a number/);
    assertError(await post({ ...ok, steps: '20' }), 400, /^steps: must be an integer, not a string/);
    assertError(await post({ ...ok, steps: 2.5 }), 400, /^steps: must be an integer/);
    assertError(await post({ ...ok, seed: 'abc' }), 400, /^seed/);
    assertError(await post({ ...ok, loras: 'x' }), 400, /^loras/);
    assertError(await post({ width: 64 }), 400, /^prompt: required/);
    assertError(await post({ ...ok, prompt: 'bad \udc00 surrogate' }), 400);
  }],

  ['ranges: steps, width, height, guidance, strength', async () => {
    for (const steps of [0, 151, 100000]) assertError(await post({ ...ok, steps }), 400, /^steps: must be in 1\.\.150/);
    for (const width of [7, -8, 100000, 0, 2056]) assertError(await post({ ...ok, width }), 400, /^width: must be a multiple of 8 in 64\.\.2048/);
    assertError(await post({ ...ok, height: 12 }), 400, /^height/);
    assertError(await post({ ...ok, guidance_scale: 31 }), 400, /^guidance_scale/);
    assertError(await post({ ...ok, guidance_scale: -1 }), 400, /^guidance_scale/);
    for (const strength of [0, 1.5, -0.1]) assertError(await post({ ...ok, strength }), 400, /^strength/);
    // The tiny model's UNet takes multiples of 16.
    assertError(await post({ ...ok, width: 72 }), 400, /multiples of 16/);
    assertError(await post({ ...ok, width: 1024, height: 512 }), 400, /max-pixels/);
  }],

  ['images: invalid base64, not an image, a mask of another size, too many pixels', async () => {
    const op = { ...ok, operation: 'image_transform' };
    assertError(await post({ ...op, init_image: '###' }), 400, /^init_image: invalid base64/);
    assertError(await post({ ...op, init_image: Buffer.from('hello world').toString('base64') }), 400,
      /^init_image: not a PNG, JPEG or WebP image/);
    const png = Buffer.from(inputB64('i2i_sd1_euler_s0.5_init.png'), 'base64');
    assertError(await post({ ...op, init_image: png.subarray(0, 60).toString('base64') }), 400, /^init_image/);
    assertError(await post({ ...op, init_image: 42 }), 400, /^init_image: must be a base64 string/);
    assertError(await post({
      ...ok, operation: 'image_inpaint', init_image: inputB64('inp4_sd1_euler_s1.0_init.png'),
      mask_image: inputB64('inp4_sd1_eulera_s0.8_mask.png'),
    }), 400, /^mask_image: 96x64 does not match the init image's 64x64/);
    const big = encodePNG(1024, 512, 1, () => [7]).toString('base64');
    assertError(await post({ ...op, width: undefined, height: undefined, init_image: big }), 413, /^init_image: larger than --max-pixels/);
    assertError(await post({ ...ok, operation: 'image_transform' }), 400, /^init_image: required/);
    assertError(await post({ ...ok, operation: 'image_inpaint', init_image: inputB64('inp4_sd1_euler_s1.0_init.png') }),
      400, /^mask_image: required/);
    assertError(await post({ ...ok, operation: 'image_generation', init_image: inputB64('inp4_sd1_euler_s1.0_init.png') }),
      400, /^init_image: not used by image_generation/);
  }],

  ['unknown operation, sampler, scheduler; LoRA names', async () => {
    assertError(await post({ ...ok, operation: 'image_upscale' }), 400, /^operation: unknown 'image_upscale'/);
    assertError(await post({ ...ok, sampler: 'warp_drive' }), 400, /^sampler: unknown sampler 'warp_drive'; valid: euler/);
    assertError(await post({ ...ok, scheduler: 'sometimes' }), 400, /^scheduler: unknown scheduler/);
    assertError(await post({ ...ok, rng: 'quantum' }), 400, /^rng/);
    assertError(await post({ ...ok, loras: [{ name: 'style', strength: 1 }] }), 400, /lora-dir/);
    assertError(await post({ ...ok, prompt: 'x <lora:style:0.5>' }), 400, /lora-dir/);
    assertError(await post({ ...ok, loras: [{ path: '../../etc/passwd' }] }), 400, /^loras\[0\]: LoRA '..\/..\/etc\/passwd' must be a name inside --lora-dir/);
    assertError(await post({ ...ok, loras: [{ path: '/etc/passwd' }] }), 400, /no absolute path/);
    assertError(await post({ ...ok, prompt: 'x <lora:../up:1>' }), 400, /^prompt: LoRA/);
  }],

  ['prompt and body size limits', async () => {
    assertError(await post({ ...ok, prompt: 'p'.repeat(201) }), 400, /^prompt: longer than 200 bytes/);
    assertError(await post({ ...ok, negative_prompt: 'n'.repeat(201) }), 400, /^negative_prompt: longer than 200/);
    const huge = JSON.stringify({ ...ok, padding: 'x'.repeat(2 << 20) });
    const r = await post(huge);
    assertError(r, 413, /max-body/);
    assert.equal(r.data.error.code, 'too_large');
    // Without a Content-Length (chunked), the limit holds as the body arrives.
    const stream = new ReadableStream({
      start(c) { for (let i = 0; i < 24; i++) c.enqueue(new TextEncoder().encode('x'.repeat(100000))); c.close(); },
    });
    const res = await fetch(srv.url + '/v1/jobs', { method: 'POST', body: stream, duplex: 'half' });
    assert.equal(res.status, 413);
    assert.equal((await res.json()).error.code, 'too_large');
    assert.equal((await json(srv, 'GET', '/health')).status, 200);
  }],

  ['API key: every route but /health needs it; compared whole', async () => {
    assert.equal((await json(keyed, 'GET', '/health')).status, 200);
    for (const [m, p] of [['GET', '/ready'], ['GET', '/v1/info'], ['POST', '/v1/jobs'], ['GET', '/metrics'],
      ['GET', '/sdapi/v1/progress'], ['POST', '/sdapi/v1/txt2img'], ['GET', '/v1/models'], ['GET', '/v1/jobs/x']]) {
      const r = await json(keyed, m, p, m === 'POST' ? ok : undefined);
      assertError(r, 401, /API key/);
      assert.equal(r.data.error.code, 'unauthorized');
    }
    for (const auth of ['Bearer k3', 'Bearer k3y4', 'Basic k3y', 'k3y', 'Bearer ']) {
      assertError(await json(keyed, 'GET', '/v1/info', undefined, { Authorization: auth }), 401);
    }
    assert.equal((await json(keyed, 'GET', '/v1/info', undefined, { Authorization: 'Bearer k3y' })).status, 200);
    assert.equal((await json(keyed, 'GET', '/v1/info', undefined, { Authorization: 'bearer k3y' })).status, 200);
    // A large upload without the key is refused before it is read.
    const r = await post(JSON.stringify({ ...ok, padding: 'x'.repeat(4 << 20) }), '/v1/jobs', keyed);
    assertError(r, 401);
    // The key can come from the environment.
    assertError(await json(envKeyed, 'GET', '/v1/info'), 401);
    assert.equal((await json(envKeyed, 'GET', '/v1/info', undefined, { Authorization: 'Bearer from-env' })).status, 200);
  }],

  ['CORS: listed origins only; preflight', async () => {
    let r = await json(srv, 'GET', '/health', undefined, { Origin: 'https://app.example' });
    assert.equal(r.headers.get('access-control-allow-origin'), 'https://app.example');
    r = await json(srv, 'GET', '/health', undefined, { Origin: 'https://other.example' });
    assert.equal(r.headers.get('access-control-allow-origin'), 'https://other.example');
    r = await json(srv, 'GET', '/health', undefined, { Origin: 'https://evil.example' });
    assert.equal(r.headers.get('access-control-allow-origin'), null);
    const pre = await fetch(srv.url + '/v1/jobs', {
      method: 'OPTIONS',
      headers: { Origin: 'https://app.example', 'Access-Control-Request-Method': 'POST',
        'Access-Control-Request-Headers': 'authorization, content-type' },
    });
    assert.equal(pre.status, 204);
    assert.match(pre.headers.get('access-control-allow-methods'), /POST/);
    assert.match(pre.headers.get('access-control-allow-headers'), /Authorization/);
    // Without --cors-origin there are no CORS headers.
    r = await json(keyed, 'GET', '/health', undefined, { Origin: 'https://app.example' });
    assert.equal(r.headers.get('access-control-allow-origin'), null);
    // Preflights need no key.
    assert.equal((await fetch(keyed.url + '/v1/jobs', { method: 'OPTIONS' })).status, 204);
  }],

  ['after all that the server still generates', async () => {
    const r = await post({ ...ok, steps: 2 });
    assert.equal(r.status, 202);
    for (let i = 0; i < 2400; i++) {
      const st = await json(srv, 'GET', `/v1/jobs/${r.data.job_id}`);
      if (st.data.status === 'completed') return;
      await sleep(50);
    }
    throw new Error('job did not complete');
  }],

  ['SIGTERM exits 0', async () => {
    for (const s of [srv, keyed, envKeyed]) assert.deepEqual(await s.stop('SIGTERM'), { code: 0, signal: null });
  }],
]);
