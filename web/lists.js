// lists.js: the LoRA picker and the ControlNet units of the settings form.
// Each is a list of rows the user adds and removes; values() gives what the
// native job request takes: "loras": [{name, strength}] and "controlnets":
// [{model, module, image, weight, start, end}] (image: base64 PNG, or left
// out so that img2img and inpaint use their input image).

// A small element builder: h('label', {className: 'x'}, 'text', child, ...).
export function h(tag, props = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else if (k in e && k !== 'list') e[k] = v;
    else e.setAttribute(k, v);
  }
  for (const c of children) if (c != null) e.append(c);
  return e;
}

function fillSelect(select, items) {
  select.replaceChildren(...items.map(([value, label]) => h('option', { value, textContent: label })));
}

function numberInput(value, min, max, step) {
  return h('input', { type: 'number', value: String(value), min: String(min), max: String(max), step: String(step) });
}

export function createLoras(el) {
  const update = () => {
    const n = el.list.children.length;
    el.count.textContent = n ? `(${n})` : '';
  };

  function add(name, strength = 1) {
    const weight = numberInput(strength, -10, 10, 0.05);
    const li = h('li', { className: 'lora' },
      h('span', { className: 'name', textContent: name }),
      h('label', { 'aria-label': `Weight of ${name}` }, weight),
      h('button', { type: 'button', className: 'small', textContent: 'Remove', 'aria-label': `Remove ${name}`,
        onclick: () => { li.remove(); update(); } }));
    li.dataset.name = name;
    el.list.append(li);
    update();
    return li;
  }

  el.add.addEventListener('click', () => {
    if (el.pick.value) add(el.pick.value);
  });

  return {
    setChoices(loras) {
      fillSelect(el.pick, loras.map((l) => [l.name, l.alias && l.alias !== l.name ? `${l.name} (${l.alias})` : l.name]));
      el.pick.disabled = el.add.disabled = loras.length === 0;
      el.note.textContent = loras.length ? '' : 'No LoRAs: the server lists those in its --lora-dir.';
    },
    add,
    clear() { el.list.replaceChildren(); update(); },
    values() {
      return [...el.list.children].map((li) => ({ name: li.dataset.name, strength: Number(li.querySelector('input').value) }));
    },
  };
}

export function createControlNets(el, { onError }) {
  let models = [], modules = ['none'], maxUnits = 3, serial = 0;
  const units = [];

  const update = () => {
    el.count.textContent = units.length ? `(${units.length})` : '';
    el.add.disabled = models.length === 0 || units.length >= maxUnits;
  };

  function add() {
    const n = ++serial;
    const model = h('select'), module = h('select');
    fillSelect(model, models.map((m) => [m, m]));
    fillSelect(module, modules.map((m) => [m, m]));
    const file = h('input', { type: 'file', accept: 'image/*' });
    const thumb = h('img', { alt: '', width: 48, height: 48, hidden: true });
    const weight = numberInput(1, 0, 2, 0.05), start = numberInput(0, 0, 1, 0.05), end = numberInput(1, 0, 1, 0.05);
    const unit = { image: null };
    file.addEventListener('change', () => {
      const f = file.files[0];
      if (!f) return;
      const reader = new FileReader();
      reader.onload = () => {
        unit.image = String(reader.result).split(',')[1];
        thumb.src = reader.result;
        thumb.hidden = false;
      };
      reader.onerror = () => onError(`ControlNet unit ${n}: could not read ${f.name}`);
      reader.readAsDataURL(f);
    });
    const li = h('li', {},
      h('div', { className: 'head' }, h('strong', { textContent: `Unit ${n}` }),
        h('button', { type: 'button', className: 'small', textContent: 'Remove', 'aria-label': `Remove ControlNet unit ${n}`,
          onclick: () => { li.remove(); units.splice(units.indexOf(unit), 1); update(); } })),
      h('label', {}, 'Model', model),
      h('label', {}, 'Preprocessor', module),
      h('label', {}, 'Control image (img2img / inpaint: the input image when none)', file),
      thumb,
      h('div', { className: 'row' }, h('label', {}, 'Weight', weight), h('label', {}, 'Start', start), h('label', {}, 'End', end)));
    Object.assign(unit, { li, model, module, weight, start, end });
    units.push(unit);
    el.list.append(li);
    update();
  }

  el.add.addEventListener('click', add);

  return {
    setChoices(m, mods, max) {
      models = m;
      modules = mods.length ? mods : ['none'];
      if (max > 0) maxUnits = max;
      el.note.textContent = models.length ? '' : 'No ControlNets: the server lists those in its --controlnet-dir.';
      update();
    },
    // Units without an image are sent without one; the server says if the
    // mode needs one (txt2img does).
    values() {
      return units.map((u) => {
        const v = { model: u.model.value, module: u.module.value, weight: Number(u.weight.value),
                    start: Number(u.start.value), end: Number(u.end.value) };
        if (u.image) v.image = u.image;
        return v;
      });
    },
  };
}
