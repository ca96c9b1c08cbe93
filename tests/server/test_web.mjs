// test_web.mjs: the page at GET / in headless Chromium (Debian `chromium`,
// driven by the playwright-core npm package installed into BUILD/npm by the
// server_npm_setup test): submit a prompt, wait until the page says the
// result image loaded, check it, and take a screenshot
// (BUILD/server-web.png) in which the result is visible. Then once more
// against a server with an API key, typed into the page.
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { assert, run, startServer, decodePNG, BUILD } from './lib.mjs';

const chromiumPath = process.env.CHROMIUM ?? '/usr/bin/chromium';
const entry = `${BUILD}/npm/node_modules/playwright-core/index.mjs`;
if (!existsSync(chromiumPath)) {
  console.error(`FAIL: no Chromium at ${chromiumPath} (install Debian's chromium, or set CHROMIUM)`);
  process.exit(1);
}
if (!existsSync(entry)) {
  console.error(`FAIL: the playwright-core npm package is missing (${entry}); ` +
    `run: npm install --prefix ${BUILD}/npm playwright-core (the server_npm_setup test does this)`);
  process.exit(1);
}
const { chromium } = await import(pathToFileURL(resolve(entry)).href);

const browser = await chromium.launch({ executablePath: chromiumPath, args: ['--no-sandbox'] });

async function generate(srv, key) {
  const page = await browser.newPage({ viewport: { width: 900, height: 700 } });
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  await page.goto(srv.url + '/');
  assert.equal(await page.title(), 'sd-worker');
  if (key) await page.fill('#key', key);
  await page.fill('#prompt', 'a watercolour of a fox');
  await page.fill('#width', '64');
  await page.fill('#height', '64');
  await page.fill('#steps', '10');
  await page.fill('#seed', '42');
  await page.click('#go');
  await page.waitForFunction(() => ['done', 'error'].includes(document.body.dataset.state), null, { timeout: 180000 });
  const state = await page.evaluate(() => ({
    state: document.body.dataset.state, title: document.title, status: document.getElementById('status').textContent,
    result: [document.getElementById('result').naturalWidth, document.getElementById('result').naturalHeight],
    preview: document.getElementById('preview').naturalWidth, info: document.getElementById('info').textContent,
  }));
  assert.equal(state.state, 'done', `the page says: ${state.status}`);
  assert.equal(state.title, 'sd-worker: done');
  assert.deepEqual(state.result, [64, 64]);
  assert.ok(state.preview > 0, 'a preview was shown');
  assert.match(state.info, /Seed: 42, Size: 64x64/);
  assert.deepEqual(errors, []);
  return page;
}

// The screenshot shows the result: its box is not the page's empty grey.
async function screenshotShowsResult(page, path) {
  const png = decodePNG(await page.screenshot({ path }));
  const box = await page.locator('#result').boundingBox();
  const colours = new Set();
  for (let y = Math.ceil(box.y) + 2; y < box.y + box.height - 2; y += 3)
    for (let x = Math.ceil(box.x) + 2; x < box.x + box.width - 2; x += 3) {
      const i = (y * png.width + x) * png.channels;
      colours.add(png.pixels.subarray(i, i + 3).join(','));
    }
  assert.ok(colours.size > 20, `only ${colours.size} colours where the result should be`);
}

await run([
  ['the page generates with EventSource; the screenshot shows the result', async () => {
    const srv = await startServer();
    const page = await generate(srv);
    await screenshotShowsResult(page, `${BUILD}/server-web.png`);
    console.log(`screenshot: ${BUILD}/server-web.png`);
    await page.close();
    assert.deepEqual(await srv.stop(), { code: 0, signal: null });
  }],

  ['with an API key typed into the page', async () => {
    const srv = await startServer(['--api-key', 'page-key'], { headers: { Authorization: 'Bearer page-key' } });
    const page = await generate(srv, 'page-key');
    await screenshotShowsResult(page, `${BUILD}/server-web-key.png`);
    await page.close();
    assert.deepEqual(await srv.stop(), { code: 0, signal: null });
  }],

  ['close the browser', async () => {
    await browser.close();
  }],
]);
