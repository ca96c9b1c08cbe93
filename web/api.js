// api.js: the page's calls to the worker. Every call carries the API key
// (Authorization: Bearer) when one is typed in. A job's SSE stream is read
// with EventSource when there is no key; with a key it is read with fetch,
// since EventSource cannot send headers. Errors become Error objects whose
// message is the server's ({"error": {"message"}}) and whose status is the
// HTTP status.

let apiKey = '';

export function setKey(key) { apiKey = key.trim(); }
export function hasKey() { return apiKey !== ''; }

function headers(extra = {}) {
  return apiKey ? { ...extra, Authorization: 'Bearer ' + apiKey } : extra;
}

async function answer(res, what) {
  const text = await res.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = null; }
  if (!res.ok) {
    const msg = data?.error?.message ?? data?.detail ?? (text.slice(0, 200) || res.statusText);
    const e = new Error(`${what}: ${msg} (HTTP ${res.status})`);
    e.status = res.status;
    throw e;
  }
  return data;
}

export async function getJSON(path) {
  return answer(await fetch(path, { headers: headers() }), 'GET ' + path);
}

export async function postJSON(path, body) {
  const res = await fetch(path, { method: 'POST', headers: headers({ 'Content-Type': 'application/json' }), body: JSON.stringify(body) });
  return answer(res, 'POST ' + path);
}

export async function del(path) {
  return answer(await fetch(path, { method: 'DELETE', headers: headers() }), 'DELETE ' + path);
}

// Reads the frames of an SSE body: "event: NAME" and "data: JSON" lines,
// frames split by a blank line; comments (keep-alives) are skipped.
async function readFrames(body, onEvent) {
  const reader = body.getReader(), dec = new TextDecoder();
  let buf = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buf += dec.decode(value, { stream: true });
    let i;
    while ((i = buf.indexOf('\n\n')) >= 0) {
      const frame = buf.slice(0, i);
      buf = buf.slice(i + 2);
      let name = 'message', data = '';
      for (const line of frame.split('\n')) {
        if (line.startsWith('event: ')) name = line.slice(7);
        else if (line.startsWith('data: ')) data += line.slice(6);
      }
      if (data) onEvent(name, JSON.parse(data));
    }
  }
}

// Follows a job's stream: onEvent(name, data) for progress, preview,
// complete, error and done; onEnd(error | null) once, when the stream ends
// (after done, or cut). Returns a function that stops following.
export function follow(url, onEvent, onEnd) {
  let ended = false, gotDone = false;
  const end = (err) => { if (!ended) { ended = true; onEnd(err); } };
  const deliver = (name, data) => {
    if (name === 'done') gotDone = true;
    onEvent(name, data);
  };
  if (!apiKey) {
    const es = new EventSource(url);
    // The server's "error" event shares its name with EventSource's own
    // (a connection error, which carries no data): only the first is read.
    for (const name of ['progress', 'preview', 'complete', 'error'])
      es.addEventListener(name, (e) => { if (typeof e.data === 'string') deliver(name, JSON.parse(e.data)); });
    es.addEventListener('done', (e) => { deliver('done', JSON.parse(e.data)); es.close(); end(null); });
    es.onerror = () => { es.close(); end(gotDone ? null : new Error('the stream was interrupted')); };
    return () => { es.close(); end(null); };
  }
  const ac = new AbortController();
  fetch(url, { headers: headers(), signal: ac.signal }).then(async (res) => {
    if (!res.ok) await answer(res, 'stream');
    await readFrames(res.body, deliver);
    end(gotDone ? null : new Error('the stream ended early'));
  }).catch((e) => end(ac.signal.aborted ? null : e));
  return () => { ac.abort(); end(null); };
}
