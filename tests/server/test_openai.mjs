// test_openai.mjs: the OpenAI Images dialect through the real `openai` npm
// client (installed into BUILD/npm by the server_npm_setup test) with its
// baseURL pointed at the server, which runs with --api-key: images.generate
// with b64_json and url (the url fetched back), images.edit with a multipart
// image and alpha mask, models.list, and the client's error classes.
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { assert, run, startServer, decodePNG, encodePNG, assertNotFlat, BUILD } from './lib.mjs';

const entry = `${BUILD}/npm/node_modules/openai/index.mjs`;
if (!existsSync(entry)) {
  console.error(`FAIL: the openai npm package is missing (${entry}); ` +
    `run: npm install --prefix ${BUILD}/npm openai (the server_npm_setup test does this)`);
  process.exit(1);
}
const { default: OpenAI, toFile, AuthenticationError, BadRequestError } = await import(pathToFileURL(resolve(entry)).href);

const srv = await startServer(['--api-key', 'sk-test-key'], { headers: { Authorization: 'Bearer sk-test-key' } });
const client = new OpenAI({ apiKey: 'sk-test-key', baseURL: `${srv.url}/v1`, maxRetries: 0 });

// A 64x64 picture, and a mask whose centre is transparent (= the area to edit).
const picture = encodePNG(64, 64, 3, (x, y) => [x * 4, y * 4, 128]);
const mask = encodePNG(64, 64, 4, (x, y) => [0, 0, 0, x >= 16 && x < 48 && y >= 16 && y < 48 ? 0 : 255]);
const holed = encodePNG(64, 64, 4, (x, y) => [x * 4, y * 4, 128, x < 32 ? 0 : 255]);

await run([
  ['images.generate with b64_json', async () => {
    const res = await client.images.generate({
      model: 'sd1-tiny', prompt: 'a lighthouse', n: 2, size: '64x64', response_format: 'b64_json',
      negative_prompt: 'fog', steps: 3, seed: 21,
    });
    assert.ok(Number.isInteger(res.created));
    assert.equal(res.data.length, 2);
    for (const d of res.data) {
      const img = decodePNG(Buffer.from(d.b64_json, 'base64'));
      assert.equal(img.width, 64);
      assert.equal(img.height, 64);
      assertNotFlat(img);
      assert.match(img.text.parameters, /^a lighthouse\nNegative prompt: fog\nSteps: 3, .*Seed: 21, Size: 64x64/);
    }
  }],

  ['images.generate with url, PNG and JPEG', async () => {
    let res = await client.images.generate({ prompt: 'a boat', size: '64x64', response_format: 'url', steps: 2 });
    assert.equal(res.data.length, 1);
    assert.match(res.data[0].url, new RegExp(`^${srv.url}/v1/files/[0-9a-f-]{36}-0\\.png$`));
    let file = await fetch(res.data[0].url);
    assert.equal(file.status, 200);
    assert.equal(file.headers.get('content-type'), 'image/png');
    const img = decodePNG(Buffer.from(await file.arrayBuffer()));
    assert.equal(img.width, 64);
    res = await client.images.generate({
      prompt: 'a boat', size: '64x64', response_format: 'url', output_format: 'jpeg', steps: 2,
    });
    assert.match(res.data[0].url, /\.jpeg$/);
    file = await fetch(res.data[0].url);
    assert.equal(file.headers.get('content-type'), 'image/jpeg');
    const bytes = Buffer.from(await file.arrayBuffer());
    assert.equal(bytes.subarray(0, 3).toString('hex'), 'ffd8ff');
  }],

  ['images.edit with an image and an alpha mask (multipart)', async () => {
    const res = await client.images.edit({
      model: 'sd1-tiny', prompt: 'a window', n: 1, size: '64x64', response_format: 'b64_json', steps: 3, seed: 4,
      image: await toFile(picture, 'image.png', { type: 'image/png' }),
      mask: await toFile(mask, 'mask.png', { type: 'image/png' }),
    });
    assert.equal(res.data.length, 1);
    const img = decodePNG(Buffer.from(res.data[0].b64_json, 'base64'));
    assert.equal(img.width, 64);
    assert.equal(img.height, 64);
    assert.ok(img.text.parameters.includes('Denoising strength: 1'));
    // Without a mask the image's own transparency is the mask.
    const res2 = await client.images.edit({
      prompt: 'a wall', response_format: 'b64_json', steps: 2,
      image: await toFile(holed, 'holed.png', { type: 'image/png' }),
    });
    assert.equal(decodePNG(Buffer.from(res2.data[0].b64_json, 'base64')).width, 64);
  }],

  ['models.list', async () => {
    const ids = [];
    for await (const m of client.models.list()) ids.push(m.id);
    assert.equal(ids.length, 1);
    assert.match(ids[0], /^sd1-tiny\.safetensors \[[0-9a-f]{10}\]$/);
  }],

  ['errors arrive as the client\'s error classes', async () => {
    const bad = new OpenAI({ apiKey: 'wrong', baseURL: `${srv.url}/v1`, maxRetries: 0 });
    await assert.rejects(bad.images.generate({ prompt: 'x', size: '64x64' }),
      (e) => e instanceof AuthenticationError && e.status === 401);
    await assert.rejects(client.images.generate({ prompt: 'x', size: '7x7' }),
      (e) => e instanceof BadRequestError && e.status === 400 && /size/.test(e.message));
    await assert.rejects(client.images.edit({
      prompt: 'x', image: await toFile(picture, 'image.png', { type: 'image/png' }),
    }), (e) => e instanceof BadRequestError && /mask/.test(e.message));
    await assert.rejects(client.images.edit({
      prompt: 'x', image: await toFile(Buffer.from('not an image'), 'image.png', { type: 'image/png' }),
      mask: await toFile(mask, 'mask.png', { type: 'image/png' }),
    }), (e) => e instanceof BadRequestError && /image: not a PNG/.test(e.message));
  }],

  ['SIGTERM exits 0', async () => {
    assert.deepEqual(await srv.stop('SIGTERM'), { code: 0, signal: null });
  }],
]);
