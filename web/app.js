// app.js: sd-worker's page. It reads what the server offers (/v1/info: the
// model, its family, defaults, samplers, schedulers and limits; the
// checkpoints, LoRAs and ControlNets from the A1111 and ControlNet list
// routes), builds native job requests (POST /v1/jobs) from the form, and
// follows each job's SSE stream for progress, previews and the result.
//
// Jobs: a batch of N is N jobs (seed, seed + 1, ...). The page follows one
// stream at a time, the earliest of its unfinished jobs, since the server
// runs them in order anyway and a browser holds few connections per server;
// a stream replays what happened before it was opened, so nothing is lost.
// Results go to the history (kept in this page only) with their parameters
// text, from where "send to img2img" fills the form again.
//
// For tests: body[data-state] and document.title ("sd-worker: STATE") say
// where the page is: idle, queued, running, then done (the last result is
// shown), error or cancelled.
import { setKey, getJSON, postJSON, del, follow } from './api.js';
import { createEditor } from './editor.js';
import { createLoras, createControlNets, h } from './lists.js';

const $ = (id) => document.getElementById(id);

const OPERATION = { txt2img: 'image_generation', img2img: 'image_transform', inpaint: 'image_inpaint' };
// The side of a family's native square size; presets keep its pixel count.
const FAMILY_BASE = { sd1: 512, sd2: 768, sdxl: 1024, 'sdxl-refiner': 1024, 'flux-dev': 1024, 'flux-schnell': 1024,
                      sd3: 1024, 'sd3.5-medium': 1024, 'sd3.5-large': 1024 };
const RATIOS = [['1:1', 1, 1], ['4:3', 4, 3], ['3:4', 3, 4], ['3:2', 3, 2], ['2:3', 2, 3], ['16:9', 16, 9], ['9:16', 9, 16]];

const S = {
  mode: 'txt2img',
  info: null,           // /v1/info
  models: [],           // /sdapi/v1/sd-models
  family: null,         // of the model picked (presets follow it)
  jobs: [],             // this page's jobs, in order
  following: null,      // the job whose stream is open
  lastSeed: null,
  serial: 0,
};

// ---------------------------------------------------------------- status

function setState(state, message) {
  document.body.dataset.state = state;
  document.title = state === 'idle' ? 'sd-worker' : 'sd-worker: ' + state;
  $('status').textContent = message || '';
  $('status').className = state === 'error' ? 'error' : '';
}

// A message that leaves the state as it is.
function say(message) {
  $('status').textContent = message;
  $('status').className = '';
}

function serverNote(text, error = false) {
  $('server-note').textContent = text;
  $('server-note').className = 'note' + (error ? ' error' : '');
}

// ---------------------------------------------------------------- tabs

const tabs = [...document.querySelectorAll('[role="tab"]')];

function setMode(mode) {
  S.mode = mode;
  document.body.dataset.mode = mode;
  for (const t of tabs) {
    const on = t.dataset.mode === mode;
    t.setAttribute('aria-selected', String(on));
    t.tabIndex = on ? 0 : -1;
  }
  $('stage').setAttribute('aria-labelledby', 'tab-' + mode);
  editor.fit();
}

for (const t of tabs) {
  t.addEventListener('click', () => setMode(t.dataset.mode));
  // Arrow keys move along the tabs (the ARIA tabs pattern).
  t.addEventListener('keydown', (e) => {
    const d = e.key === 'ArrowRight' ? 1 : e.key === 'ArrowLeft' ? -1 : 0;
    if (!d) return;
    const next = tabs[(tabs.indexOf(t) + d + tabs.length) % tabs.length];
    setMode(next.dataset.mode);
    next.focus();
  });
}

// ---------------------------------------------------------------- the editor and lists

const editor = createEditor({
  drop: $('drop'), file: $('image-file'), image: $('image-canvas'), mask: $('mask-canvas'),
  brush: $('brush-size'), brushOut: $('brush-out'), toolBrush: $('tool-brush'), toolEraser: $('tool-eraser'),
  invert: $('mask-invert'), clear: $('mask-clear'),
}, {
  onLoad(w, h, scaled) {
    const m = S.info?.limits?.size_multiple || 8;
    $('width').value = Math.max(64, Math.round(w / m) * m);
    $('height').value = Math.max(64, Math.round(h / m) * m);
    markPreset();
    say(`input image ${w}x${h}${scaled ? ' (scaled down to the server\'s limits)' : ''}`);
  },
  onError: (msg) => setState('error', msg),
});

const loras = createLoras({ pick: $('lora-pick'), add: $('lora-add'), list: $('loras'), note: $('lora-note'), count: $('lora-count') });
const controlnets = createControlNets({ list: $('controlnets'), add: $('cn-add'), note: $('cn-note'), count: $('cn-count') },
  { onError: (msg) => setState('error', msg) });

$('strength').addEventListener('input', () => { $('strength-out').value = $('strength').value; });
$('seed-random').addEventListener('click', () => { $('seed').value = Math.floor(Math.random() * 2 ** 32); });
$('seed-reuse').addEventListener('click', () => { if (S.lastSeed != null) $('seed').value = S.lastSeed; });
$('swap').addEventListener('click', () => {
  [$('width').value, $('height').value] = [$('height').value, $('width').value];
  markPreset();
});
$('width').addEventListener('input', markPreset);
$('height').addEventListener('input', markPreset);

// ---------------------------------------------------------------- sizes

function presetSizes() {
  const loaded = S.info?.model;
  let base = FAMILY_BASE[S.family] ?? 512;
  if (loaded && S.family === loaded.family && S.info.defaults) base = Math.sqrt(S.info.defaults.width * S.info.defaults.height);
  const round = (v) => Math.max(64, Math.round(v / 64) * 64);
  return RATIOS.map(([name, a, b]) => {
    const r = Math.sqrt(a / b);
    return { name, width: round(base * r), height: round(base / r) };
  });
}

function renderPresets() {
  $('presets').replaceChildren(...presetSizes().map((p) => h('button', {
    type: 'button', textContent: `${p.name} ${p.width}×${p.height}`, 'aria-label': `${p.name}: ${p.width} by ${p.height}`,
    'aria-pressed': 'false', onclick: () => { $('width').value = p.width; $('height').value = p.height; markPreset(); },
  })));
  markPreset();
}

function markPreset() {
  const w = $('width').value, ht = $('height').value;
  for (const b of $('presets').children) {
    const m = b.textContent.match(/(\d+)×(\d+)/);
    b.setAttribute('aria-pressed', String(m && m[1] === w && m[2] === ht));
  }
}

// ---------------------------------------------------------------- what the server offers

function fillSelect(select, values, keep) {
  const before = keep ? select.value : null;
  select.replaceChildren(...values.map(([v, label]) => h('option', { value: v, textContent: label ?? v })));
  if (before && values.some(([v]) => v === before)) select.value = before;
}

// The fields the user changed or is in: the model's defaults, when they
// arrive (late, with an API key typed in), leave them alone.
const touched = new Set();
for (const ev of ['input', 'change', 'focusin']) $('form').addEventListener(ev, (e) => { if (e.target.id) touched.add(e.target.id); });

// first: also take the model's defaults into the form (where untouched).
async function loadInfo(first) {
  let info;
  try {
    info = await getJSON('/v1/info');
  } catch (e) {
    if (e.status === 401) serverNote('This server needs an API key: type it above.', true);
    else if (e.status === 503) { serverNote('The model is loading…'); setTimeout(() => loadInfo(first), 1000); }
    else serverNote(e.message, true);
    return false;
  }
  S.info = info;
  serverNote('');
  const d = info.defaults, l = info.limits;
  fillSelect($('sampler'), info.samplers.map((s) => [s]), !first);
  fillSelect($('scheduler'), info.schedulers.map((s) => [s]), !first);
  if (first) {
    const defaults = { sampler: d.sampler, scheduler: d.scheduler, steps: d.steps, cfg: d.guidance_scale, width: d.width,
                       height: d.height, 'preview-every': d.preview_every, strength: d.strength };
    for (const [id, v] of Object.entries(defaults)) if (!touched.has(id)) $(id).value = v;
    $('strength-out').value = $('strength').value;
  }
  for (const id of ['width', 'height']) Object.assign($(id), { min: l.min_size, max: l.max_size, step: l.size_multiple });
  $('steps').max = l.max_steps;
  $('cfg').max = l.max_guidance_scale;
  $('batch').max = l.max_batch;
  editor.setLimits({ maxPixels: l.max_pixels, maxSide: l.max_size });
  $('family').textContent = info.model.family + (info.model.inpaint ? ' · inpaint' : '');
  S.family = info.model.family;
  renderPresets();
  return true;
}

async function loadModels() {
  const current = S.info?.model;
  try { S.models = await getJSON('/sdapi/v1/sd-models'); } catch { S.models = []; }
  if (current && !S.models.some((m) => m.title === current.title))
    S.models.unshift({ title: current.title, family: current.family });
  fillSelect($('model'), S.models.map((m) => [m.title, m.family ? `${m.title} (${m.family})` : m.title]), false);
  if (current) $('model').value = current.title;
}

async function loadLists() {
  const [l, cn, mods, settings] = await Promise.all([
    getJSON('/sdapi/v1/loras').catch(() => []),
    getJSON('/controlnet/model_list').catch(() => ({ model_list: [] })),
    getJSON('/controlnet/module_list').catch(() => ({ module_list: [] })),
    getJSON('/controlnet/settings').catch(() => ({})),
  ]);
  loras.setChoices(Array.isArray(l) ? l : []);
  controlnets.setChoices(cn.model_list ?? [], mods.module_list ?? [], settings.control_net_unit_count ?? 0);
}

async function loadServer(first) {
  if (await loadInfo(first)) await Promise.all([loadModels(), loadLists()]);
}

$('model').addEventListener('change', () => {
  const m = S.models.find((x) => x.title === $('model').value);
  const loaded = S.info?.model?.title === $('model').value;
  if (m?.family && m.family !== S.family) {
    S.family = m.family;
    renderPresets();
    const square = presetSizes()[0];
    $('width').value = square.width;
    $('height').value = square.height;
    markPreset();
  }
  $('family').textContent = (m?.family ?? '') + (loaded ? '' : ' · loads with the next job');
});

// The key is kept for this tab only (sessionStorage), never in the page's URL.
$('key').value = sessionStorage.getItem('sdw-key') ?? '';
setKey($('key').value);
$('key').addEventListener('input', () => setKey($('key').value));
$('key').addEventListener('change', () => {
  setKey($('key').value);
  sessionStorage.setItem('sdw-key', $('key').value.trim());
  loadServer(!S.info);
});

// ---------------------------------------------------------------- requests

function numberOf(id) {
  const v = $(id).value.trim();
  return v === '' ? null : Number(v);
}

// The form as a native job request; throws with what is missing.
function buildRequest() {
  const b = {
    operation: OPERATION[S.mode], prompt: $('prompt').value,
    steps: numberOf('steps'), guidance_scale: numberOf('cfg'),
    width: numberOf('width'), height: numberOf('height'), seed: numberOf('seed') ?? -1,
    preview_every: numberOf('preview-every') ?? 5,
  };
  if ($('negative').value.trim()) b.negative_prompt = $('negative').value;
  if ($('sampler').value) b.sampler = $('sampler').value;
  if ($('scheduler').value) b.scheduler = $('scheduler').value;
  const clip = numberOf('clip-skip');
  if (clip) b.clip_skip = clip;
  for (const k of ['steps', 'guidance_scale', 'width', 'height']) if (b[k] === null) delete b[k];
  const model = $('model').value;
  if (model && S.info && model !== S.info.model.title) b.model = model;
  const l = loras.values();
  if (l.length) b.loras = l;
  const cn = controlnets.values();
  if (cn.length) b.controlnets = cn;
  if (S.mode !== 'txt2img') {
    if (!editor.hasImage()) throw new Error(`${S.mode}: load an input image first (file or drop)`);
    b.init_image = editor.imageB64();
    b.strength = Number($('strength').value);
  }
  if (S.mode === 'inpaint') {
    if (editor.maskEmpty()) throw new Error('inpaint: paint the area to repaint over the image first');
    b.mask_image = editor.maskB64();
  }
  return b;
}

// ---------------------------------------------------------------- jobs and the queue

const FINAL = new Set(['completed', 'failed', 'cancelled']);
const active = () => S.jobs.filter((j) => !FINAL.has(j.state));

function renderJob(j) {
  if (!j.li) {
    j.bar = h('progress', { max: 100, value: 0, 'aria-label': `Progress of job ${j.n}` });
    j.stateEl = h('span', { className: 'state' });
    j.li = h('li', {},
      j.whatEl = h('span', { className: 'what' }),
      j.stateEl, j.bar,
      h('button', { type: 'button', className: 'small', textContent: 'Cancel', 'aria-label': `Cancel job ${j.n}`,
        onclick: () => cancel(j) }));
    $('queue').prepend(j.li);
  }
  j.whatEl.textContent = `#${j.n} ${j.mode} · ${j.body.width ?? '?'}×${j.body.height ?? '?'} · ` +
    `seed ${j.seed ?? j.body.seed} · ${j.body.prompt.slice(0, 60)}`;
  j.li.dataset.state = j.state;
  j.bar.value = j.state === 'completed' ? 100 : j.percent ?? 0;
  const what = j.state === 'running' && j.total ? `running: step ${j.step} / ${j.total}`
    : j.state === 'failed' ? `failed: ${j.error}` : j.state;
  j.stateEl.textContent = what;
}

async function cancel(j) {
  if (!j.id || FINAL.has(j.state)) return;
  try {
    const r = await del('/v1/jobs/' + j.id);
    // The job's stream may have told its end before this answer came (it
    // often does on a loaded machine): a final state stays, or the job
    // would wait as "cancelling" for a stream that has already ended.
    if (!FINAL.has(j.state) && (r.status === 'cancelled' || r.status === 'cancelling')) j.state = r.status;
  } catch (e) {
    setState('error', e.message);
  }
  renderJob(j);
  overall();
  refreshServer();
}

// The page's state from its jobs: busy while any runs or waits, else what
// happened to the last one (done once its result is shown).
function overall() {
  const act = active();
  if (act.length) {
    // A running job asked to stop still runs until its next step.
    const run = act.find((j) => j.state === 'running' || j.state === 'cancelling');
    const waiting = act.length - (run ? 1 : 0);
    setState(run ? 'running' : 'queued', run
      ? `job #${run.n}: ` + (run.state === 'cancelling' ? 'cancelling' : `step ${run.step} / ${run.total}`) +
        (waiting ? ` · ${waiting} more waiting` : '')
      : `${act.length} job(s) waiting`);
    return;
  }
  const last = S.jobs[S.jobs.length - 1];
  if (!last) return;
  if (last.state === 'completed') { if (last.shown) setState('done', `done, seed ${last.seed}`); }
  else if (last.state === 'cancelled') setState('cancelled', `job #${last.n} was cancelled`);
  else setState('error', last.error || 'the job failed');
}

// Opens the stream of the earliest unfinished job, unless one is open.
function pump() {
  if (S.following) return;
  const j = S.jobs.find((x) => x.id && !FINAL.has(x.state));
  if (!j) return;
  S.following = j;
  const handlers = {
    progress(d) {
      if (j.state !== 'cancelling') j.state = 'running';
      Object.assign(j, { step: d.step, total: d.total, percent: d.percent });
      $('bar').value = d.percent;
    },
    preview(d) {
      if (j.state !== 'cancelling') j.state = 'running';
      $('preview').src = 'data:image/png;base64,' + d.image;
    },
    complete(d) { finishJob(j, d); },
    error(d) {
      j.state = d.code === 'cancelled' || d.code === 'shutting_down' ? 'cancelled' : 'failed';
      j.error = d.message;
    },
    done(d) { if (!FINAL.has(j.state) && FINAL.has(d.status)) j.state = d.status; },
  };
  follow(j.sse, (name, d) => {
    handlers[name]?.(d);
    renderJob(j);
    overall();
  }, (err) => {
    S.following = null;
    // A cut stream is opened again (it replays the job from its start),
    // a few times, before the job counts as lost.
    if (!FINAL.has(j.state) && (j.retries = (j.retries ?? 0) + 1) <= 3) {
      setTimeout(pump, 1000);
      return;
    }
    if (!FINAL.has(j.state)) {
      j.state = 'failed';
      j.error = err ? err.message : 'the stream ended without a result';
    }
    renderJob(j);
    overall();
    refreshServer();
    pump();
    // A job that named another checkpoint loaded it: the model, its
    // family and defaults changed.
    if (j.body.model && j.state === 'completed') loadInfo(false).then((ok) => ok && loadModels());
  });
}

async function submit(ev) {
  ev.preventDefault();
  setKey($('key').value);
  let body;
  try {
    body = buildRequest();
  } catch (e) {
    setState('error', e.message);
    return;
  }
  const n = Math.min(Math.max(1, numberOf('batch') ?? 1), Number($('batch').max) || 8);
  $('bar').value = 0;
  $('preview').removeAttribute('src');
  setState('queued', 'submitting…');
  const form = formSnapshot();
  for (let i = 0; i < n; i++) {
    const b = { ...body, seed: body.seed >= 0 ? body.seed + i : -1 };
    const j = { n: ++S.serial, mode: S.mode, body: b, form, state: 'queued', step: 0, total: b.steps };
    S.jobs.push(j);
    renderJob(j);
    try {
      const r = await postJSON('/v1/jobs', b);
      j.id = r.job_id;
      j.sse = r.sse_url;
    } catch (e) {
      j.state = 'failed';
      j.error = e.message;
    }
    renderJob(j);
    if (j.state === 'failed') break;   // a full queue or a bad field: the rest would fail alike
  }
  overall();
  refreshServer();
  pump();
}

$('form').addEventListener('submit', submit);
$('prompt').addEventListener('keydown', (e) => {
  if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) $('form').requestSubmit();
});

$('queue-clear').addEventListener('click', () => {
  for (const j of S.jobs) if (FINAL.has(j.state)) j.li.remove();
  S.jobs = S.jobs.filter((j) => !FINAL.has(j.state));
});

// The server's own queue, every client's jobs: ComfyUI's GET /queue lists
// them (running, then pending, each [number, id, prompt, extra]); a server
// without it says through A1111's progress route how many there are.
let queueRoute = true;

function renderServerJobs(items) {
  const running = items.filter((x) => x.state === 'running').length;
  $('server-queue').textContent = items.length ? `Server: ${running} running, ${items.length - running} waiting` : 'Server: idle';
  $('server-jobs').replaceChildren(...items.map(({ id, state, what }) => {
    const mine = S.jobs.find((j) => j.id === id);
    return h('li', { className: 'state-' + state },
      h('span', { textContent: `${state} · ${what} · ${id.slice(0, 8)}` + (mine ? ` (this page's #${mine.n})` : '') }),
      mine ? null : h('button', { type: 'button', className: 'small', textContent: 'Cancel', 'aria-label': `Cancel job ${id}`,
        onclick: () => del('/v1/jobs/' + id).then(refreshServer, (e) => setState('error', e.message)) }));
  }));
}

let pollTimer = null, polling = false;

// Asks now (after a job ended or was cancelled), then on the usual beat.
function refreshServer() {
  clearTimeout(pollTimer);
  if (!polling) pollServer();
}

async function pollServer() {
  polling = true;
  try {
    if (document.hidden) throw null;
    let items = null;
    if (queueRoute) {
      try {
        const q = await getJSON('/queue');
        const item = (state) => (x) => ({ id: String(x[1]), state, what: x[3]?.sdw_operation ?? 'workflow' });
        items = [...q.queue_running.map(item('running')), ...q.queue_pending.map(item('waiting'))];
      } catch (e) {
        if (e.status === 404) queueRoute = false;
        else throw e;
      }
    }
    if (items) renderServerJobs(items);
    else {
      const st = (await getJSON('/sdapi/v1/progress?skip_current_image=true')).state ?? {};
      $('server-queue').textContent = st.job_count ? `Server: ${st.job_count} job(s)` +
        (st.job ? ` (running step ${st.sampling_step} / ${st.sampling_steps})` : '') : 'Server: idle';
    }
  } catch {
    // A hidden tab, or the key is missing: asked again later.
  }
  polling = false;
  pollTimer = setTimeout(pollServer, active().length ? 1500 : 5000);
}

// ---------------------------------------------------------------- history

// The form's values, to fill it again from a history entry.
function formSnapshot() {
  const v = {};
  for (const id of ['prompt', 'negative', 'sampler', 'scheduler', 'steps', 'cfg', 'width', 'height', 'strength', 'clip-skip'])
    v[id] = $(id).value;
  v.loras = loras.values();
  return v;
}

function finishJob(j, d) {
  j.state = 'completed';
  j.seed = d.seed;
  S.lastSeed = d.seed;
  const url = `data:image/${d.format};base64,${d.image}`;
  const entry = { n: j.n, mode: j.mode, url, info: d.info, seed: d.seed, form: j.form, format: d.format };
  addHistory(entry);
  $('info').textContent = d.info;
  $('bar').value = 100;
  const img = $('result');
  img.onload = () => {
    $('result-note').textContent = `${img.naturalWidth}×${img.naturalHeight}, seed ${d.seed}`;
    j.shown = true;
    overall();
  };
  img.src = url;
}

function show(entry) {
  $('result').onload = null;
  $('result').src = entry.url;
  $('info').textContent = entry.info;
}

// Fills the form from an entry (its parameters, the image as input).
function sendTo(entry, mode) {
  for (const [id, v] of Object.entries(entry.form)) if (id !== 'loras' && $(id)) $(id).value = v;
  $('strength-out').value = $('strength').value;
  $('seed').value = entry.seed;
  loras.clear();
  for (const l of entry.form.loras) loras.add(l.name, l.strength);
  setMode(mode);
  editor.loadURL(entry.url).then(() => {
    editor.clearMask();
    say(`#${entry.n} sent to ${mode}`);
  });
  $('tab-' + mode).focus();
}

function addHistory(e) {
  const img = h('img', { src: e.url, alt: `Result #${e.n} (${e.mode}, seed ${e.seed})`, draggable: true });
  const li = h('li', { className: 'entry' },
    h('button', { type: 'button', className: 'thumb', title: 'Show it above', onclick: () => show(e) }, img),
    h('span', { className: 'note', textContent: `#${e.n} ${e.mode} · seed ${e.seed}` }),
    h('div', { className: 'actions' },
      h('button', { type: 'button', className: 'small send-img2img', textContent: 'Send to img2img', onclick: () => sendTo(e, 'img2img') }),
      h('button', { type: 'button', className: 'small send-inpaint', textContent: 'Send to inpaint', onclick: () => sendTo(e, 'inpaint') }),
      h('a', { href: e.url, download: `sd-worker-${e.n}-${e.seed}.${e.format}`, textContent: 'Download' })),
    h('details', {}, h('summary', { textContent: 'Parameters' }), h('pre', { className: 'params', textContent: e.info })));
  img.addEventListener('load', () => {
    li.querySelector('.note').textContent = `#${e.n} ${e.mode} · ${img.naturalWidth}×${img.naturalHeight} · seed ${e.seed}`;
  }, { once: true });
  $('history').prepend(li);
}

// ---------------------------------------------------------------- start

setMode('txt2img');
renderPresets();
loadServer(true);
pollServer();
