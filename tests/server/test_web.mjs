// test_web.mjs: the page at GET / (web/*) in headless Chromium (Debian
// `chromium`, driven over WebDriver by Debian's `chromium-driver`, plain
// HTTP from node): its files and their headers; an inpaint job with an
// uploaded image and a mask painted with the pointer (previews arrive, two
// history entries appear, the painted area changed and the rest did not
// depend on the seed); "send to img2img" and an img2img job; txt2img with
// a LoRA and a ControlNet unit picked from the server's lists; cancelling
// from the queue (another client's job from the server's list, then the
// page's own); another checkpoint from the model picker; a narrow window
// with an image dropped in and the mask tools; and a server with an API
// key typed into the page. Screenshots go to
// BUILD/web-*.png (paths printed).
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import net from 'node:net';
import { assert, run, startServer, decodePNG, sleep, json, BUILD, DATA } from './lib.mjs';

const chromiumPath = process.env.CHROMIUM ?? '/usr/bin/chromium';
const driverPath = process.env.CHROMEDRIVER ?? '/usr/bin/chromedriver';
for (const [what, path, pkg] of [['Chromium', chromiumPath, 'chromium'], ['ChromeDriver', driverPath, 'chromium-driver']]) {
  if (!existsSync(path)) {
    console.error(`FAIL: no ${what} at ${path} (install Debian's ${pkg})`);
    process.exit(1);
  }
}

const freePort = () => new Promise((res, reject) => {
  const s = net.createServer();
  s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => res(port)); });
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

const shots = [];

async function newSession(width = 1280, height = 900) {
  const v = await wd('POST', '/session', {
    capabilities: { alwaysMatch: { browserName: 'chrome', 'goog:chromeOptions': {
      binary: chromiumPath, args: ['--headless=new', '--no-sandbox', '--disable-gpu', `--window-size=${width},${height}`],
    } } },
  });
  const s = `/session/${v.sessionId}`;
  const find = async (css) => (await wd('POST', `${s}/element`, { using: 'css selector', value: css }))[ELEMENT];
  const page = {
    go: (url) => wd('POST', `${s}/url`, { url }),
    title: () => wd('GET', `${s}/title`),
    js: (script, args = []) => wd('POST', `${s}/execute/sync`, { script, args }),
    find,
    async fill(css, text) {
      const e = await find(css);
      await wd('POST', `${s}/element/${e}/clear`, {});
      await wd('POST', `${s}/element/${e}/value`, { text: String(text) });
    },
    // A file input takes the file's path as typed text.
    async upload(css, path) { await wd('POST', `${s}/element/${await find(css)}/value`, { text: resolve(path) }); },
    async click(css) { await wd('POST', `${s}/element/${await find(css)}/click`, {}); },
    async select(css, value) {
      await page.js('const e = document.querySelector(arguments[0]); e.value = arguments[1]; ' +
        'e.dispatchEvent(new Event("change", { bubbles: true }));', [css, value]);
    },
    async rect(css) { return wd('GET', `${s}/element/${await find(css)}/rect`); },
    actions: (actions) => wd('POST', `${s}/actions`, { actions }),
    setWindow: (w, h) => wd('POST', `${s}/window/rect`, { width: w, height: h }),
    async screenshot(name, css) {
      const b64 = css ? await wd('GET', `${s}/element/${await find(css)}/screenshot`) : await wd('GET', `${s}/screenshot`);
      const shot = Buffer.from(b64, 'base64'), path = `${BUILD}/${name}`;
      writeFileSync(path, shot);
      shots.push(path);
      return shot;
    },
    close: () => wd('DELETE', s),
  };
  // The window's frame takes some of its size: grow it until the page
  // itself (the viewport) has the size asked for.
  const inner = await page.js('return [window.outerWidth - window.innerWidth, window.outerHeight - window.innerHeight]');
  if (inner[0] || inner[1]) await page.setWindow(width + inner[0], height + inner[1]);
  return page;
}

// Opens the page once the server's lists are in, watching for script
// errors and for every change of the preview and result images.
async function openPage(srv, size) {
  const page = await newSession(...(size ?? []));
  await page.go(srv.url + '/');
  assert.equal(await page.title(), 'sd-worker');
  await page.js(`window.__errors = []; window.addEventListener('error', (e) => window.__errors.push(String(e.message)));
    window.__changes = [];
    new MutationObserver((ms) => { for (const m of ms) window.__changes.push(m.target.id); })
      .observe(document.querySelector('.images'), { subtree: true, attributes: true, attributeFilter: ['src'] });`);
  return page;
}

async function waitFor(page, what, script, ms = 60000) {
  for (let t0 = Date.now(); ;) {
    const v = await page.js(script);
    if (v) return v;
    if (Date.now() - t0 > ms) throw new Error(`the page did not get there: ${what}; status: ` +
      await page.js(`return document.getElementById('status').textContent + '; its jobs: ' +
        [...document.querySelectorAll('#queue li')].map((li) => li.textContent).join(' | ')`));
    await sleep(100);
  }
}

// Runs the form and waits until the page is done (or failed).
async function generate(page) {
  await page.js('window.__changes.length = 0;');
  await page.click('#go');
  await waitFor(page, 'a final state', `return ['done', 'error', 'cancelled'].includes(document.body.dataset.state)`, 120000);
  const st = await page.js(`const r = document.getElementById('result');
    return { state: document.body.dataset.state, title: document.title, status: document.getElementById('status').textContent,
             result: [r.naturalWidth, r.naturalHeight], info: document.getElementById('info').textContent,
             changes: window.__changes, errors: window.__errors,
             history: [...document.querySelectorAll('#history li')].map((li) => ({
               src: li.querySelector('img').src, params: li.querySelector('pre').textContent })) };`);
  assert.equal(st.state, 'done', `the page says: ${st.status}`);
  assert.equal(st.title, 'sd-worker: done');
  assert.deepEqual(st.errors, []);
  return st;
}

const pngOf = (dataUrl) => decodePNG(Buffer.from(dataUrl.split(',')[1], 'base64'));

// The screenshot shows an image where css is: more than a few colours.
function showsImage(shot, box, what) {
  const png = decodePNG(shot);
  const colours = new Set();
  for (let y = Math.ceil(box.y) + 2; y < box.y + box.height - 2; y += 3)
    for (let x = Math.ceil(box.x) + 2; x < box.x + box.width - 2; x += 3) {
      const i = (y * png.width + x) * png.channels;
      colours.add(png.pixels.subarray(i, i + 3).join(','));
    }
  assert.ok(colours.size > 20, `only ${colours.size} colours where ${what} should be`);
}

// ---------------------------------------------------------------- the server

const srv = await startServer(['--models-dir', `${DATA}/models`, '--lora-dir', `${DATA}/models/sd1-tiny-lora`,
  '--controlnet-dir', `${DATA}/controlnet/models`, '--step-delay-ms', '20', '--precision', 'f32']);
const INIT = `${DATA}/inputs/inp9_sd1_euler_init.png`;
let page;

await run([
  ['the page\'s files: types, ETag and 304, and the page\'s CSP', async () => {
    for (const [path, type] of [['/', /^text\/html/], ['/app.js', /^text\/javascript/], ['/api.js', /^text\/javascript/],
      ['/editor.js', /^text\/javascript/], ['/lists.js', /^text\/javascript/], ['/app.css', /^text\/css/]]) {
      const r = await fetch(srv.url + path);
      assert.equal(r.status, 200, path);
      assert.match(r.headers.get('content-type'), type, path);
      assert.equal(r.headers.get('cache-control'), 'no-cache');
      const etag = r.headers.get('etag');
      assert.match(etag, /^"[0-9a-f]{16}"$/);
      assert.ok((await r.text()).length > 100);
      const again = await fetch(srv.url + path, { headers: { 'If-None-Match': etag } });
      assert.equal(again.status, 304, path);
    }
    const html = await fetch(srv.url + '/');
    assert.match(html.headers.get('content-security-policy'), /default-src 'self'/);
    assert.equal((await fetch(srv.url + '/nope.js')).status, 404);
  }],

  ['the page lists the server\'s models, samplers, LoRAs and ControlNets', async () => {
    page = await openPage(srv);
    const lists = await waitFor(page, 'the lists', `const n = (id) => document.getElementById(id).options.length;
      return n('model') && n('sampler') && n('lora-pick') && !document.getElementById('cn-add').disabled &&
        { model: document.getElementById('model').value, models: n('model'), samplers: n('sampler'), schedulers: n('scheduler'),
          lora: document.getElementById('lora-pick').value, family: document.getElementById('family').textContent,
          presets: [...document.querySelectorAll('#presets button')].map((b) => b.textContent) };`);
    assert.match(lists.model, /sd1-tiny/);
    assert.ok(lists.models >= 3, `${lists.models} models`);
    assert.ok(lists.samplers > 3 && lists.schedulers > 1);
    assert.match(lists.lora, /sd1-tiny-lora-kohya/);
    assert.match(lists.family, /sd1/);
    assert.ok(lists.presets.includes('1:1 512×512') && lists.presets.some((p) => /^2:3 /.test(p)), lists.presets.join(' '));
  }],

  ['inpaint: upload, paint a mask, previews, two history entries; the mask decided what changed', async () => {
    await page.click('#tab-inpaint');
    assert.equal(await page.js('return document.body.dataset.mode'), 'inpaint');
    await page.upload('#image-file', INIT);
    await waitFor(page, 'the image in the editor', `return document.getElementById('drop').dataset.empty === 'false'`);
    assert.deepEqual(await page.js(`const c = document.getElementById('image-canvas'); return [c.width, c.height,
      document.getElementById('width').value, document.getElementById('height').value]`), [64, 64, '64', '64']);
    // A brush of 60 screen pixels, three strokes across the upper left.
    await page.js(`const b = document.getElementById('brush-size'); b.value = 60; b.dispatchEvent(new Event('input'));
      document.getElementById('mask-canvas').scrollIntoView({ block: 'center' });`);
    const box = await page.rect('#mask-canvas');
    const mask = await page.find('#mask-canvas');
    const at = (fx, fy) => ({ type: 'pointerMove', duration: 30, origin: { [ELEMENT]: mask },
      x: Math.round((fx - 0.5) * box.width), y: Math.round((fy - 0.5) * box.height) });
    const moves = [at(0.1, 0.15), { type: 'pointerDown', button: 0 }];
    for (const fy of [0.15, 0.3, 0.45]) moves.push(at(0.1, fy), at(0.3, fy), at(0.55, fy));
    moves.push({ type: 'pointerUp', button: 0 });
    await page.actions([{ type: 'pointer', id: 'mouse', parameters: { pointerType: 'mouse' }, actions: moves }]);
    // The painted area, in image pixels (alpha of the mask canvas).
    const painted = await page.js(`const c = document.getElementById('mask-canvas');
      return [...c.getContext('2d').getImageData(0, 0, c.width, c.height).data].filter((_, i) => i % 4 === 3);`);
    const inside = painted.map((a) => a >= 250), edge = painted.map((a) => a > 0);
    const nIn = inside.filter(Boolean).length;
    assert.ok(nIn > 400 && nIn < 2500, `${nIn} of 4096 pixels painted`);
    assert.ok(inside[10 * 64 + 10] && !edge[60 * 64 + 60], 'painted where the pointer went, not elsewhere');

    await page.fill('#prompt', 'a red fox in the snow');
    await page.fill('#steps', 10);
    await page.fill('#seed', 42);
    await page.fill('#batch', 2);
    await page.click('#more-box summary');
    await page.fill('#preview-every', 2);
    await page.js(`const s = document.getElementById('strength'); s.value = 1; s.dispatchEvent(new Event('input'));`);
    await page.screenshot('web-mask.png');
    const st = await generate(page);
    // Previews came before the result.
    const firstResult = st.changes.indexOf('result');
    assert.ok(st.changes.indexOf('preview') >= 0 && st.changes.indexOf('preview') < firstResult, st.changes.join(','));
    assert.deepEqual(st.result, [64, 64]);
    assert.equal(st.history.length, 2);
    assert.match(st.info, /Seed: 43, Size: 64x64/);
    assert.match(st.info, /Denoising strength: 1/);
    // The server ran inpaint jobs (the request carried the mask).
    assert.equal(srv.stderr.match(/running \(image_inpaint/g)?.length, 2);

    const [b, a] = st.history.map((e) => pngOf(e.src));   // newest first: seed 43, then 42
    assert.match(a.text.parameters, /Seed: 42,/);
    assert.match(b.text.parameters, /Seed: 43,/);
    const init = decodePNG(readFileSync(INIT));
    // Inside the painted area the seeds made different images; outside it
    // (away from the brush's soft edge) both kept what the input's latent
    // gave, whatever the seed.
    const diff = (p, q, keep) => {
      let s = 0, n = 0;
      for (let i = 0; i < 4096; i++) {
        if (!keep(i)) continue;
        for (let c = 0; c < 3; c++) s += Math.abs(p.pixels[i * p.channels + c] - q.pixels[i * q.channels + c]);
        n += 3;
      }
      return s / n;
    };
    const far = (i) => {
      const x = i % 64, y = Math.floor(i / 64);
      for (let dy = -12; dy <= 12; dy++)
        for (let dx = -12; dx <= 12; dx++) {
          const u = x + dx, v = y + dy;
          if (u >= 0 && v >= 0 && u < 64 && v < 64 && edge[v * 64 + u]) return false;
        }
      return true;
    };
    const seedsIn = diff(a, b, (i) => inside[i]), seedsOut = diff(a, b, far);
    const inputIn = diff(a, init, (i) => inside[i]);
    console.log(`  ${nIn} pixels painted; mean |seed 42 - seed 43|: ${seedsIn.toFixed(2)} in the mask, ${seedsOut.toFixed(2)} far outside; ` +
      `|result - input| in the mask ${inputIn.toFixed(2)}`);
    assert.ok(seedsIn > 4 * seedsOut + 1, 'the painted area depends on the seed, the rest much less');
    await page.js(`document.getElementById('result').scrollIntoView({ block: 'center' })`);
    showsImage(await page.screenshot('web-inpaint.png'), await page.rect('#result'), 'the result');
  }],

  ['send to img2img fills the form and the input; the img2img job runs', async () => {
    await page.click('#history li .send-img2img');   // the newest: seed 43
    await waitFor(page, 'the img2img tab', `return document.body.dataset.mode === 'img2img' &&
      /sent to img2img/.test(document.getElementById('status').textContent)`);
    const form = await page.js(`const v = (id) => document.getElementById(id).value;
      const c = document.getElementById('image-canvas');
      return { prompt: v('prompt'), seed: v('seed'), steps: v('steps'), size: [c.width, c.height],
               mask: document.getElementById('mask-canvas').getContext('2d').getImageData(0, 0, 64, 64).data.some((x) => x) };`);
    assert.deepEqual(form, { prompt: 'a red fox in the snow', seed: '43', steps: '10', size: [64, 64], mask: false });
    await page.fill('#batch', 1);
    await page.js(`const s = document.getElementById('strength'); s.value = 0.5; s.dispatchEvent(new Event('input'));`);
    const st = await generate(page);
    assert.equal(st.history.length, 3);
    assert.match(st.info, /Seed: 43, Size: 64x64/);
    assert.match(st.info, /Denoising strength: 0.5/);
    assert.match(srv.stderr, /running \(image_transform/);
    await page.screenshot('web-img2img.png');
  }],

  ['txt2img with a LoRA and a ControlNet unit from the lists', async () => {
    await page.click('#tab-txt2img');
    await page.js(`for (const d of document.querySelectorAll('details')) d.open = true;`);
    await page.click('#lora-add');
    await page.fill('#loras li input', 0.8);
    await page.click('#cn-add');
    await page.upload('#controlnets li input[type=file]', `${DATA}/controlnet/inputs/cn_t2i_sd1_euler_control.png`);
    await waitFor(page, 'the control image read', `return !document.querySelector('#controlnets li img').hidden`);
    await page.fill('#width', 64);
    await page.fill('#height', 64);
    await page.fill('#seed', 7);
    const st = await generate(page);
    assert.equal(st.history.length, 4);
    assert.match(st.info, /Seed: 7, Size: 64x64/);
    assert.match(st.info, /Lora hashes: "sd1-tiny-lora-kohya: /);
    assert.match(st.info, /ControlNet 0: "Module: none, Model: cn-sd1-tiny/);
    assert.doesNotMatch(st.info, /Denoising strength/);
    await page.js(`document.getElementById('history').scrollIntoView()`);
    await page.screenshot('web-history.png', '.history');
    await page.screenshot('web-txt2img.png');
  }],

  ["the queue: another client's job cancelled from the server's list, then this page's two", async () => {
    await page.click('#loras li button');
    await page.click('#controlnets li button');
    // Another client's long job runs first; the page's two wait behind it.
    const other = (await json(srv, 'POST', '/v1/jobs', { prompt: 'x', width: 128, height: 128, steps: 150 })).data.job_id;
    await page.fill('#steps', 150);
    await page.fill('#batch', 2);
    await page.click('#go');
    const list = await waitFor(page, 'the server\'s queue listed', `const t = document.getElementById('server-queue').textContent;
      return /Server: 1 running, 2 waiting|Server: 3 job/.test(t) && { text: t,
        items: [...document.querySelectorAll('#server-jobs li')].map((li) => li.textContent) }`);
    if (list.items.length) {   // GET /queue (ComfyUI's) lists every job
      assert.match(list.items[0], new RegExp(`^running · image_generation · ${other.slice(0, 8)}Cancel$`));
      assert.match(list.items[1], /^waiting · image_generation · .*\(this page's #\d+\)$/);
      await page.click('#server-jobs li button');
    } else {
      await json(srv, 'DELETE', `/v1/jobs/${other}`);
    }
    await waitFor(page, "the page's first job running", `return document.querySelector('#queue li[data-state="running"]')`);
    assert.equal((await json(srv, 'GET', `/v1/jobs/${other}`)).data.status, 'cancelled');
    // The second waits; cancel it, then the running one.
    await page.click('#queue li[data-state="queued"] button');
    await waitFor(page, 'the second cancelled', `return document.querySelector('#queue li[data-state="cancelled"]')`);
    // The answer to DELETE held back until the job's stream has told its
    // end (as a loaded machine may have it): the page keeps "cancelled".
    await page.js(`const f = window.__fetch = window.fetch;
      window.fetch = (url, o) => o?.method === 'DELETE' ? f(url, o).then((r) => new Promise((res) => setTimeout(res, 1500, r))) : f(url, o);`);
    await page.click('#queue li[data-state="running"] button');
    await waitFor(page, 'the page cancelled', `return document.body.dataset.state === 'cancelled'`);
    await sleep(2000);
    await page.js('window.fetch = window.__fetch;');
    assert.equal(await page.js(`return document.body.dataset.state`), 'cancelled');
    const states = await page.js(`return [...document.querySelectorAll('#queue li')].slice(0, 2).map((li) => li.dataset.state)`);
    assert.deepEqual(states, ['cancelled', 'cancelled']);
    assert.deepEqual(await page.js('return window.__errors'), []);
    await page.screenshot('web-queue.png');
  }],

  ['the model picker: another checkpoint, its family\'s sizes, switched through the job', async () => {
    const sd2 = await page.js(`return [...document.getElementById('model').options].map((o) => o.value).find((v) => /sd2-tiny/.test(v))`);
    assert.ok(sd2, 'sd2-tiny is listed');
    await page.select('#model', sd2);
    const picked = await page.js(`return { family: document.getElementById('family').textContent,
      presets: [...document.querySelectorAll('#presets button')].map((b) => b.textContent) }`);
    assert.match(picked.family, /^sd2 · loads with the next job$/);
    assert.equal(picked.presets[0], '1:1 768×768');
    await page.fill('#width', 64);
    await page.fill('#height', 64);
    await page.fill('#steps', 4);
    await page.fill('#batch', 1);
    const st = await generate(page);
    assert.match(st.info, /Model: sd2-tiny/);
    assert.ok(srv.stderr.includes(`model loaded: ${sd2} (sd2)`), `the server loaded ${sd2}`);
    await waitFor(page, 'the badge of the loaded model', `return document.getElementById('family').textContent === 'sd2'`);
    assert.equal(await page.js(`return document.getElementById('model').value`), sd2);
    await page.close();
  }],

  ['a narrow window: one column; an image dropped in; invert, eraser and clear', async () => {
    const narrow = await openPage(srv, [420, 900]);
    await waitFor(narrow, 'the lists', `return document.getElementById('sampler').options.length > 0`);
    await narrow.click('#tab-inpaint');
    // A file dropped on the box (as a desktop's drag and drop delivers it).
    await narrow.js(`const bytes = Uint8Array.from(atob(arguments[0]), (c) => c.charCodeAt(0));
      const dt = new DataTransfer();
      dt.items.add(new File([bytes], 'init.png', { type: 'image/png' }));
      document.getElementById('drop').dispatchEvent(new DragEvent('drop', { dataTransfer: dt, bubbles: true, cancelable: true }));`,
    [readFileSync(INIT).toString('base64')]);
    await waitFor(narrow, 'the dropped image', `return document.getElementById('drop').dataset.empty === 'false'`);
    const m = await narrow.js(`return { scroll: document.documentElement.scrollWidth, inner: window.innerWidth, h: window.innerHeight,
      cols: getComputedStyle(document.querySelector('.layout')).gridTemplateColumns.split(' ').length }`);
    assert.ok(m.scroll <= m.inner, `the page is ${m.scroll} px wide in a ${m.inner} px window`);
    assert.equal(m.cols, 1);
    console.log(`  narrow window: ${m.inner}x${m.h}`);
    const alpha = `const c = document.getElementById('mask-canvas'), a = [];
      const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
      for (let i = 3; i < d.length; i += 4) a.push(d[i]);
      return [Math.min(...a), Math.max(...a)];`;
    assert.deepEqual(await narrow.js(alpha), [0, 0]);
    await narrow.click('#mask-invert');
    assert.deepEqual(await narrow.js(alpha), [255, 255]);
    await narrow.click('#tool-eraser');
    await narrow.js(`document.getElementById('mask-canvas').scrollIntoView({ block: 'center' })`);
    const mask = await narrow.find('#mask-canvas');
    await narrow.actions([{ type: 'pointer', id: 'mouse', parameters: { pointerType: 'mouse' }, actions: [
      { type: 'pointerMove', origin: { [ELEMENT]: mask }, x: -40, y: 0 }, { type: 'pointerDown', button: 0 },
      { type: 'pointerMove', origin: { [ELEMENT]: mask }, x: 40, y: 0, duration: 50 }, { type: 'pointerUp', button: 0 }] }]);
    assert.deepEqual(await narrow.js(alpha), [0, 255]);
    await narrow.screenshot('web-narrow.png');
    await narrow.click('#mask-clear');
    assert.deepEqual(await narrow.js(alpha), [0, 0]);
    assert.deepEqual(await narrow.js('return window.__errors'), []);
    await narrow.close();
    assert.deepEqual(await srv.stop(), { code: 0, signal: null });
  }],

  ['with an API key typed into the page (its files need none)', async () => {
    const keyed = await startServer(['--api-key', 'page-key', '--step-delay-ms', '20'], { headers: { Authorization: 'Bearer page-key' } });
    for (const path of ['/', '/app.js', '/app.css']) assert.equal((await fetch(keyed.url + path)).status, 200, path);
    assert.equal((await json(keyed, 'GET', '/v1/info')).status, 401);
    const p = await openPage(keyed);
    await waitFor(p, 'the note asking for the key', `return /API key/.test(document.getElementById('server-note').textContent)`);
    await p.fill('#key', 'page-key');
    await p.fill('#prompt', 'a watercolour of a fox');
    await p.fill('#width', 64);
    await p.fill('#height', 64);
    await p.fill('#steps', 10);
    await p.fill('#seed', 42);
    await p.click('#more-box summary');
    await p.fill('#preview-every', 2);
    const st = await generate(p);
    assert.deepEqual(st.result, [64, 64]);
    assert.ok(st.changes.includes('preview'), 'a preview was shown');
    assert.match(st.info, /Seed: 42, Size: 64x64/);
    // The lists came in once the key was typed.
    assert.ok(await p.js(`return document.getElementById('sampler').options.length > 3`));
    showsImage(await p.screenshot('web-key.png'), await p.rect('#result'), 'the result');
    await p.close();
    assert.deepEqual(await keyed.stop(), { code: 0, signal: null });
  }],

  ['stop the driver', async () => {
    driver.kill('SIGTERM');
    for (const s of shots) console.log(`screenshot: ${s}`);
  }],
]);
