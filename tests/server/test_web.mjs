// test_web.mjs: the page at GET / in headless Chromium (Debian `chromium`,
// driven over WebDriver by Debian's `chromium-driver`, plain HTTP from node):
// submit a prompt, wait until the page says the result image loaded, check
// it, and take a screenshot (BUILD/server-web.png) in which the result is
// visible. Then once more against a server with an API key typed into the page.
import { spawn } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { assert, run, startServer, decodePNG, sleep, BUILD } from './lib.mjs';

const chromiumPath = process.env.CHROMIUM ?? '/usr/bin/chromium';
const driverPath = process.env.CHROMEDRIVER ?? '/usr/bin/chromedriver';
for (const [what, path, pkg] of [['Chromium', chromiumPath, 'chromium'], ['ChromeDriver', driverPath, 'chromium-driver']]) {
  if (!existsSync(path)) {
    console.error(`FAIL: no ${what} at ${path} (install Debian's ${pkg})`);
    process.exit(1);
  }
}

const freePort = () => new Promise((resolve, reject) => {
  const s = net.createServer();
  s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)); });
  s.on('error', reject);
});

// ---------------------------------------------------------------- WebDriver

const ELEMENT = 'element-6066-11e4-a52e-4f735466cecf';
const driverPort = await freePort();
const driver = spawn(driverPath, [`--port=${driverPort}`], { stdio: ['ignore', 'pipe', 'pipe'] });
let driverLog = '';
driver.stdout.on('data', (d) => { driverLog += d; });
driver.stderr.on('data', (d) => { driverLog += d; });
process.on('exit', () => driver.kill('SIGKILL'));
const base = `http://127.0.0.1:${driverPort}`;

async function wd(method, path, body) {
  const res = await fetch(base + path, {
    method, headers: { 'Content-Type': 'application/json' }, body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = await res.json();
  if (!res.ok) throw new Error(`WebDriver ${method} ${path}: ${res.status} ${JSON.stringify(data.value)}`);
  return data.value;
}

for (let i = 0; ; i++) {
  const ok = await fetch(`${base}/status`).then((r) => r.ok).catch(() => false);
  if (ok) break;
  if (i > 200) throw new Error(`chromedriver did not start:\n${driverLog}`);
  await sleep(50);
}

async function newSession() {
  const v = await wd('POST', '/session', {
    capabilities: { alwaysMatch: { browserName: 'chrome', 'goog:chromeOptions': {
      binary: chromiumPath, args: ['--headless=new', '--no-sandbox', '--disable-gpu', '--window-size=900,700'],
    } } },
  });
  const s = `/session/${v.sessionId}`;
  const find = async (css) => (await wd('POST', `${s}/element`, { using: 'css selector', value: css }))[ELEMENT];
  return {
    go: (url) => wd('POST', `${s}/url`, { url }),
    title: () => wd('GET', `${s}/title`),
    js: (script, args = []) => wd('POST', `${s}/execute/sync`, { script, args }),
    async fill(css, text) {
      const e = await find(css);
      await wd('POST', `${s}/element/${e}/clear`, {});
      await wd('POST', `${s}/element/${e}/value`, { text });
    },
    async click(css) { await wd('POST', `${s}/element/${await find(css)}/click`, {}); },
    async rect(css) { return wd('GET', `${s}/element/${await find(css)}/rect`); },
    async screenshot() { return Buffer.from(await wd('GET', `${s}/screenshot`), 'base64'); },
    close: () => wd('DELETE', s),
  };
}

// ---------------------------------------------------------------- the page

async function generate(srv, key) {
  const page = await newSession();
  await page.go(srv.url + '/');
  assert.equal(await page.title(), 'sd-worker');
  // Script errors from here on are collected and must stay empty.
  await page.js('window.__errors = []; window.addEventListener("error", (e) => window.__errors.push(String(e.message)));');
  if (key) await page.fill('#key', key);
  await page.fill('#prompt', 'a watercolour of a fox');
  await page.fill('#width', '64');
  await page.fill('#height', '64');
  await page.fill('#steps', '10');
  await page.fill('#seed', '42');
  await page.click('#go');
  let state;
  for (let i = 0; ; i++) {
    state = await page.js(`const r = document.getElementById('result');
      return { state: document.body.dataset.state, title: document.title,
               status: document.getElementById('status').textContent,
               result: [r.naturalWidth, r.naturalHeight],
               preview: document.getElementById('preview').naturalWidth,
               info: document.getElementById('info').textContent, errors: window.__errors };`);
    if (['done', 'error'].includes(state.state)) break;
    if (i > 1800) throw new Error(`the page did not finish: ${JSON.stringify(state)}`);
    await sleep(100);
  }
  assert.equal(state.state, 'done', `the page says: ${state.status}`);
  assert.equal(state.title, 'sd-worker: done');
  assert.deepEqual(state.result, [64, 64]);
  assert.ok(state.preview > 0, 'a preview was shown');
  assert.match(state.info, /Seed: 42, Size: 64x64/);
  assert.deepEqual(state.errors, []);
  return page;
}

// The screenshot shows the result: its box is not the page's empty grey.
async function screenshotShowsResult(page, path) {
  const shot = await page.screenshot();
  writeFileSync(path, shot);
  const png = decodePNG(shot);
  const box = await page.rect('#result');
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

  ['stop the driver', async () => {
    driver.kill('SIGTERM');
  }],
]);
