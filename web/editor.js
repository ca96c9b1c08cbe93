// editor.js: the input image of img2img and inpaint, and the mask painted
// over it. The image lives in one canvas at its own pixel size (scaled down
// first when it is over the server's limits) and the mask in a second canvas
// of the same size laid over it: paint is opaque colour in the mask canvas
// (shown half transparent), the eraser takes it away. What is sent is the
// image as PNG and the mask as a PNG of the same size, white where painted
// (the area to repaint) and black elsewhere, as the native API wants it.

const MASK_RGB = [255, 45, 111];

export function createEditor(el, { onLoad, onError }) {
  const img = el.image, mask = el.mask;
  const ictx = img.getContext('2d'), mctx = mask.getContext('2d', { willReadFrequently: true });
  let tool = 'brush', last = null, has = false;
  let limits = { maxPixels: 4194304, maxSide: 2048 };

  // Shows the canvases as large as the box allows (small images scaled up).
  function fit() {
    if (!has) return;
    const availW = Math.max(64, el.drop.clientWidth - 16);
    const availH = Math.max(160, Math.min(520, window.innerHeight * 0.6));
    const s = Math.min(availW / img.width, availH / img.height);
    img.style.width = Math.floor(img.width * s) + 'px';
    img.style.height = Math.floor(img.height * s) + 'px';
  }

  function draw(source, w, h) {
    let s = Math.min(1, limits.maxSide / Math.max(w, h), Math.sqrt(limits.maxPixels / (w * h)));
    const W = Math.max(1, Math.floor(w * s)), H = Math.max(1, Math.floor(h * s));
    img.width = mask.width = W;
    img.height = mask.height = H;
    ictx.drawImage(source, 0, 0, W, H);
    mctx.clearRect(0, 0, W, H);
    has = true;
    el.drop.dataset.empty = 'false';
    fit();
    onLoad(W, H, s < 1);
  }

  async function loadURL(url) {
    const im = new Image();
    im.src = url;
    await im.decode();
    draw(im, im.naturalWidth, im.naturalHeight);
  }

  async function loadFile(file) {
    if (!file.type.startsWith('image/')) throw new Error(`${file.name}: not an image`);
    const url = URL.createObjectURL(file);
    try { await loadURL(url); } finally { URL.revokeObjectURL(url); }
  }

  const report = (p) => p.catch((e) => onError(e.message || String(e)));

  el.file.addEventListener('change', () => {
    const f = el.file.files[0];
    if (f) report(loadFile(f));
  });

  // Drag and drop: a file from the desktop, or an image of the page itself
  // (a history entry) dragged by its URL.
  el.drop.addEventListener('dragover', (e) => { e.preventDefault(); el.drop.classList.add('over'); });
  el.drop.addEventListener('dragleave', () => el.drop.classList.remove('over'));
  el.drop.addEventListener('drop', (e) => {
    e.preventDefault();
    el.drop.classList.remove('over');
    const f = e.dataTransfer.files[0];
    const url = e.dataTransfer.getData('text/uri-list').split('\n')[0].trim();
    if (f) report(loadFile(f));
    else if (url.startsWith('data:image/') || url.startsWith('blob:')) report(loadURL(url));
    else onError('drop an image file');
  });

  // Pasting an image (when the editor is on screen) loads it too.
  window.addEventListener('paste', (e) => {
    if (!el.drop.offsetParent) return;
    const f = [...e.clipboardData.files].find((x) => x.type.startsWith('image/'));
    if (f) { e.preventDefault(); report(loadFile(f)); }
  });

  // ---- painting
  function pos(e) {
    const r = mask.getBoundingClientRect();
    return { x: (e.clientX - r.left) * mask.width / r.width, y: (e.clientY - r.top) * mask.height / r.height, k: mask.width / r.width };
  }

  function stroke(a, b) {
    const radius = (Number(el.brush.value) / 2) * b.k;
    mctx.globalCompositeOperation = tool === 'eraser' ? 'destination-out' : 'source-over';
    mctx.strokeStyle = mctx.fillStyle = `rgb(${MASK_RGB.join(',')})`;
    mctx.lineWidth = radius * 2;
    mctx.lineCap = mctx.lineJoin = 'round';
    mctx.beginPath();
    mctx.moveTo(a.x, a.y);
    mctx.lineTo(b.x, b.y);
    mctx.stroke();
    mctx.beginPath();
    mctx.arc(b.x, b.y, radius, 0, 2 * Math.PI);
    mctx.fill();
  }

  mask.addEventListener('pointerdown', (e) => {
    if (e.button !== 0 || !has) return;
    e.preventDefault();
    mask.setPointerCapture(e.pointerId);
    last = pos(e);
    stroke(last, last);
  });
  mask.addEventListener('pointermove', (e) => {
    if (!last) return;
    const p = pos(e);
    stroke(last, p);
    last = p;
  });
  const stop = () => { last = null; };
  mask.addEventListener('pointerup', stop);
  mask.addEventListener('pointercancel', stop);

  function setTool(t) {
    tool = t;
    el.toolBrush.setAttribute('aria-pressed', String(t === 'brush'));
    el.toolEraser.setAttribute('aria-pressed', String(t === 'eraser'));
  }
  el.toolBrush.addEventListener('click', () => setTool('brush'));
  el.toolEraser.addEventListener('click', () => setTool('eraser'));
  el.brush.addEventListener('input', () => { el.brushOut.value = el.brush.value; });

  function pixels() { return mctx.getImageData(0, 0, mask.width, mask.height); }

  el.clear.addEventListener('click', () => mctx.clearRect(0, 0, mask.width, mask.height));
  el.invert.addEventListener('click', () => {
    if (!has) return;
    const d = pixels(), p = d.data;
    for (let i = 0; i < p.length; i += 4) {
      p[i] = MASK_RGB[0]; p[i + 1] = MASK_RGB[1]; p[i + 2] = MASK_RGB[2];
      p[i + 3] = 255 - p[i + 3];
    }
    mctx.globalCompositeOperation = 'source-over';
    mctx.putImageData(d, 0, 0);
  });

  window.addEventListener('resize', fit);

  const b64 = (canvas) => canvas.toDataURL('image/png').split(',')[1];

  return {
    loadURL: (url) => report(loadURL(url)),
    hasImage: () => has,
    size: () => ({ width: img.width, height: img.height }),
    setLimits(l) { limits = l; },
    fit,
    clearMask() { mctx.clearRect(0, 0, mask.width, mask.height); },
    maskEmpty() {
      if (!has) return true;
      const p = pixels().data;
      for (let i = 3; i < p.length; i += 4) if (p[i]) return false;
      return true;
    },
    imageB64: () => b64(img),
    // White = repaint: the paint's coverage (alpha) as grey.
    maskB64() {
      const out = document.createElement('canvas');
      out.width = mask.width;
      out.height = mask.height;
      const d = pixels(), p = d.data;
      for (let i = 0; i < p.length; i += 4) {
        p[i] = p[i + 1] = p[i + 2] = p[i + 3];
        p[i + 3] = 255;
      }
      out.getContext('2d').putImageData(d, 0, 0);
      return b64(out);
    },
  };
}
