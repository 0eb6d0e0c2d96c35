// The kiln dashboard: draws the app from /api/topology and keeps it live
// from /api/stats, /api/logs and /api/builds. It asks only while the page
// is visible, so nobody looking means no work for the app.
'use strict';

const STATS_EVERY = 1000;
const LOGS_EVERY = 2000;
const TOPOLOGY_EVERY = 5000;
const RESTART_FLASH = 5000;

const $ = (sel, root = document) => root.querySelector(sel);

function h(tag, attrs = {}, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k === 'text') e.textContent = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? '' : v);
  }
  for (const k of kids.flat()) if (k !== null && k !== undefined) e.append(k);
  return e;
}

async function getJSON(url) {
  const r = await fetch(url, { cache: 'no-store' });
  const body = await r.json();
  if (!r.ok) throw new Error(body.error || r.statusText);
  return body;
}

const view = {
  topology: null,
  topologyText: '',
  edgesKey: '',
  calls: [],
  selected: '', // process whose logs are shown, from a click on its node
  lastOK: 0,
};

// ---- formatting

function rate(v) {
  if (v === null || v === undefined) return '–';
  return v < 10 ? v.toFixed(1) : Math.round(v).toString();
}
function ms(v) {
  if (v === null || v === undefined) return '–';
  if (v >= 1000) return (v / 1000).toFixed(1) + ' s';
  return (v < 10 ? v.toFixed(2) : Math.round(v).toString()) + ' ms';
}
function pct(v) {
  if (v === null || v === undefined) return '–';
  return v === 0 ? '0%' : (v * 100 < 1 ? '<1%' : Math.round(v * 100) + '%');
}
function clock(t) {
  const d = new Date(t);
  return d.toTimeString().slice(0, 8) + '.' + String(d.getMilliseconds()).padStart(3, '0');
}
function ago(t) {
  const s = Math.max(0, Math.round((Date.now() - new Date(t)) / 1000));
  return s < 60 ? s + ' s ago' : Math.round(s / 60) + ' min ago';
}

// ---- the diagram

function node(n, cls) {
  return h('button', { type: 'button', class: 'node ' + cls, 'data-process': n.process, 'data-state': 'starting',
    'aria-label': n.process, onclick: () => selectProcess(n.process) },
  h('span', { class: 'name', text: n.name }),
  h('span', { class: 'state', text: 'starting' }),
  h('span', { class: 'nums', text: '' }));
}

function serviceCard(s) {
  const backends = h('ol', { class: 'backends' + (s.backends.length > 8 ? ' many' : ''), 'aria-label': s.name + ' backends' },
    s.backends.map((b) => {
      const n = node(b, 'backend');
      if (s.sidecars && s.sidecars.length) {
        n.append(h('span', { class: 'sidecars' }, s.sidecars.map((c) =>
          h('span', { class: 'sidecar', title: 'sidecar ' + c.name + ' (' + c.image + '): runs on the docker and kubernetes targets', text: c.name }))));
      }
      return h('li', {}, n);
    }));
  const card = h('article', { class: 'service' + (s.backends.length > 8 ? ' wide' : ''), id: 'svc-' + s.name, 'data-service': s.name,
    'aria-labelledby': 'svc-title-' + s.name },
  h('header', {},
    h('h2', { id: 'svc-title-' + s.name, text: s.name }),
    h('span', { class: 'pattern', text: s.pattern + ' ×' + s.backends.length })),
  s.entry ? h('a', { class: 'entry', href: s.entry, text: s.entry.replace(/^http:\/\//, '') }) : null,
  node(s.front, 'front'),
  s.detail ? h('p', { class: 'detail', text: s.detail }) : null,
  s.key ? h('p', { class: 'detail', text: 'key: ' + s.key }) : null,
  s.pattern === 'shard' ? lookupForm(s) : null,
  backends);
  return card;
}

function lookupForm(s) {
  const id = 'lookup-' + s.name;
  const input = h('input', { id, name: 'key', autocomplete: 'off', spellcheck: 'false', placeholder: 'a key, or a request path' });
  const out = h('output', { for: id, 'aria-live': 'polite' });
  const form = h('form', { class: 'lookup', 'data-service': s.name },
    h('label', { for: id, text: 'Key' }), input, h('button', { type: 'submit', text: 'Find shard' }), out);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    document.querySelectorAll('#svc-' + CSS.escape(s.name) + ' .node.hit').forEach((n) => n.classList.remove('hit'));
    out.classList.remove('error');
    if (!input.value) { out.textContent = ''; return; }
    try {
      const r = await getJSON('api/lookup?service=' + encodeURIComponent(s.name) + '&key=' + encodeURIComponent(input.value));
      out.textContent = JSON.stringify(r.key) + ' → ' + r.backend;
      out.dataset.backend = r.backend;
      const n = document.querySelector('.node[data-process="' + CSS.escape(r.process) + '"]');
      if (n) n.classList.add('hit');
    } catch (e) {
      out.textContent = e.message;
      out.dataset.backend = '';
      out.classList.add('error');
    }
  });
  return form;
}

// ranks place each service one column right of the services that call
// it, so calls read left to right; none when nothing calls anything yet.
function ranks(services, calls) {
  const names = services.map((s) => s.name);
  const edges = calls.filter((c) => c.from !== c.to && names.includes(c.from) && names.includes(c.to));
  if (!edges.length) return null;
  const rank = Object.fromEntries(names.map((n) => [n, 0]));
  for (let i = 0; i < names.length; i++) { // longest path, bounded for cycles
    for (const e of edges) rank[e.to] = Math.max(rank[e.to], Math.min(rank[e.from] + 1, names.length - 1));
  }
  return rank;
}

function layout() {
  const t = view.topology;
  if (!t) return;
  const box = $('#services');
  const cards = Object.fromEntries(t.services.map((s) => [s.name, document.getElementById('svc-' + s.name)]));
  const rank = ranks(t.services, view.calls);
  const key = rank ? JSON.stringify(rank) : '';
  if (key === view.edgesKey && box.childElementCount) return;
  view.edgesKey = key;
  const focused = document.activeElement;
  box.replaceChildren();
  if (!rank) {
    box.classList.remove('ranked');
    t.services.forEach((s) => box.append(cards[s.name]));
  } else {
    box.classList.add('ranked');
    const columns = [];
    t.services.forEach((s) => {
      const r = rank[s.name];
      columns[r] = columns[r] || h('div', { class: 'column' });
      columns[r].append(cards[s.name]);
    });
    columns.filter(Boolean).forEach((c) => box.append(c));
  }
  if (focused && focused.isConnected) focused.focus();
}

function drawEdges() {
  const svg = $('#edges');
  const base = $('#diagram').getBoundingClientRect();
  svg.replaceChildren();
  const ns = 'http://www.w3.org/2000/svg';
  const defs = document.createElementNS(ns, 'defs');
  defs.innerHTML = '<marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" style="fill:var(--accent);stroke:none"/></marker>';
  svg.append(defs);
  for (const c of view.calls) {
    const from = document.getElementById('svc-' + c.from);
    const to = document.getElementById('svc-' + c.to);
    if (!from || !to || from === to) continue;
    const a = from.getBoundingClientRect();
    const b = to.getBoundingClientRect();
    let x1, y1, x2, y2;
    if (b.left >= a.right) { // callee to the right
      x1 = a.right; y1 = a.top + 28; x2 = b.left; y2 = b.top + 28;
    } else if (b.right <= a.left) {
      x1 = a.left; y1 = a.top + 28; x2 = b.right; y2 = b.top + 28;
    } else { // stacked: from the bottom of one to the top of the other
      x1 = a.left + a.width * 0.75; x2 = b.left + b.width * 0.75;
      if (b.top >= a.bottom) { y1 = a.bottom; y2 = b.top; } else { y1 = a.top; y2 = b.bottom; }
    }
    x1 -= base.left; x2 -= base.left; y1 -= base.top; y2 -= base.top;
    const horizontal = Math.abs(x2 - x1) > Math.abs(y2 - y1);
    const d = horizontal
      ? `M${x1},${y1} C${(x1 + x2) / 2},${y1} ${(x1 + x2) / 2},${y2} ${x2},${y2}`
      : `M${x1},${y1} C${x1},${(y1 + y2) / 2} ${x2},${(y1 + y2) / 2} ${x2},${y2}`;
    const path = document.createElementNS(ns, 'path');
    path.setAttribute('d', d);
    path.setAttribute('marker-end', 'url(#arrow)');
    path.dataset.from = c.from;
    path.dataset.to = c.to;
    const label = document.createElementNS(ns, 'text');
    label.setAttribute('x', (x1 + x2) / 2);
    label.setAttribute('y', (y1 + y2) / 2 - 6);
    label.setAttribute('text-anchor', 'middle');
    label.textContent = c.rps === null || c.rps === undefined ? c.total + ' calls' : rate(c.rps) + '/s';
    svg.append(path, label);
  }
}

function renderTopology(t) {
  view.topology = t;
  document.title = t.app + ' · kiln dashboard';
  $('#app').textContent = t.app;
  $('#entries').replaceChildren(...t.services.filter((s) => s.entry).map((s) =>
    h('li', {}, h('span', { text: s.name + ' ' }), h('a', { href: s.entry, text: s.entry }))));
  const box = $('#services');
  box.replaceChildren();
  t.services.forEach((s) => box.append(serviceCard(s)));
  view.edgesKey = null;
  layout();
  fillServiceFilter(t);
  $('#builds').hidden = !t.dev;
}

// ---- live numbers

function applyStats(st) {
  const procs = Object.fromEntries(st.processes.map((p) => [p.name, p]));
  for (const n of document.querySelectorAll('.node[data-process]')) {
    const p = procs[n.dataset.process];
    const b = st.backends[n.dataset.process];
    const state = p ? p.state : 'stopped';
    n.dataset.state = state;
    let stateText = state;
    if (p && p.restarts > 0) stateText += ' · ↻' + p.restarts;
    // A restart between two polls would not show: flag it for a while.
    const before = n.dataset.restarts === undefined ? (p ? p.restarts : 0) : Number(n.dataset.restarts);
    if (p && p.restarts > before) n.dataset.restartedAt = Date.now();
    n.dataset.restarts = p ? p.restarts : 0;
    const flash = Date.now() - Number(n.dataset.restartedAt || 0) < RESTART_FLASH;
    n.classList.toggle('restarted', flash);
    if (flash && state === 'ready') stateText += ' (restarted)';
    $('.state', n).textContent = stateText;
    const title = [n.dataset.process, p ? p.addr + ' · pid ' + (p.pid || '–') : '', p ? state + ' since ' + ago(p.since) : '',
      p && p.restarts ? p.restarts + ' restarts, last exit: ' + p.exit : ''].filter(Boolean).join('\n');
    n.title = title;
    const nums = $('.nums', n);
    if (n.classList.contains('backend')) {
      nums.replaceChildren(
        h('span', { class: 'rps', text: rate(b && b.rps) + '/s' }), ' · ',
        h('span', { class: 'err' + (b && b.error_rate > 0 ? ' bad' : ''), text: pct(b && b.error_rate) + ' err' }),
        h('span', { class: 'lat', text: 'p50 ' + ms(b && b.p50_ms) + ' · p99 ' + ms(b && b.p99_ms) }));
      n.dataset.requests = b ? b.requests : 0;
    } else if (n.classList.contains('front')) {
      const svc = n.dataset.process.split('/')[0];
      let total = 0; let known = false;
      for (const [k, v] of Object.entries(st.backends)) {
        if (k.startsWith(svc + '/') && v.rps !== null) { total += v.rps; known = true; }
      }
      nums.textContent = (p ? p.addr : '') + ' · ' + (known ? rate(total) : '–') + '/s in';
    }
  }
  view.calls = st.calls || [];
  layout();
  drawEdges();
}

// ---- logs

function fillServiceFilter(t) {
  const sel = $('#log-service');
  const keep = sel.value;
  sel.replaceChildren(h('option', { value: '', text: 'all' }), ...t.services.map((s) => h('option', { value: s.name, text: s.name })));
  sel.value = t.services.some((s) => s.name === keep) ? keep : '';
  fillInstanceFilter();
}

function fillInstanceFilter() {
  const t = view.topology;
  const sel = $('#log-instance');
  const keep = sel.value;
  const svc = t && t.services.find((s) => s.name === $('#log-service').value);
  const names = svc ? [svc.front.name, ...svc.backends.map((b) => b.name)] : [];
  sel.replaceChildren(h('option', { value: '', text: 'all' }), ...names.map((n) => h('option', { value: n, text: n })));
  sel.value = names.includes(keep) ? keep : '';
  sel.disabled = !svc;
}

function selectProcess(process) {
  const [svc, inst] = process.split('/');
  $('#log-service').value = svc;
  fillInstanceFilter();
  $('#log-instance').value = inst;
  document.querySelectorAll('.node.selected').forEach((n) => n.classList.remove('selected'));
  document.querySelectorAll('.node[data-process="' + CSS.escape(process) + '"]').forEach((n) => n.classList.add('selected'));
  refreshLogs();
}

async function refreshLogs() {
  const q = new URLSearchParams();
  if ($('#log-service').value) q.set('service', $('#log-service').value);
  if ($('#log-instance').value) q.set('instance', $('#log-instance').value);
  const r = await getJSON('api/logs?' + q);
  const text = $('#log-text').value;
  const box = $('#log-lines');
  const atEnd = box.scrollTop + box.clientHeight >= box.scrollHeight - 4;
  const lines = r.lines.filter((l) => !text || l.text.includes(text) || l.process.includes(text));
  box.replaceChildren(...lines.map((l) => h('div', { class: l.note ? 'line note' : 'line', 'data-process': l.process },
    h('span', { class: 't', text: clock(l.time) + ' ' }), h('span', { class: 'p', text: l.process + ' ' }), l.text)));
  if (!lines.length) box.textContent = 'no output yet';
  if (atEnd) box.scrollTop = box.scrollHeight;
}

// ---- builds (kiln dev)

async function refreshBuilds() {
  const r = await getJSON('api/builds');
  const list = $('#build-list');
  list.replaceChildren(...r.builds.map((b) => h('li', {},
    h('span', { class: 't', text: clock(b.time) }),
    h('span', { class: 'change', text: b.change || 'first build' }),
    h('span', { class: 'phases', text: b.phases.map((p) => p.name + ' ' + p.seconds.toFixed(2) + ' s').join(' → ') }),
    h('span', { class: 'result ' + (b.result === 'serving' ? 'serving' : 'failed'), text: b.result }))));
  const failed = r.builds.findIndex((b) => b.error);
  const box = $('#compile-error');
  box.hidden = failed < 0;
  if (failed >= 0) {
    const fixed = r.builds.slice(0, failed).some((b) => b.result === 'serving');
    box.classList.toggle('fixed', fixed);
    $('h3', box).textContent = fixed ? 'Last compile error (fixed since)' : 'Last compile error';
    $('#compile-error-text').textContent = r.builds[failed].error;
  }
}

// ---- polling, only while the page is visible

const loops = [];
function every(ms, fn) {
  const loop = { ms, fn, timer: 0 };
  const run = async () => {
    loop.timer = 0;
    if (document.hidden) return;
    try { await fn(); } catch (e) { console.warn(e); }
    if (!document.hidden && !loop.timer) loop.timer = setTimeout(run, ms);
  };
  loop.run = run;
  loops.push(loop);
  return loop;
}

async function refreshTopology() {
  const r = await fetch('api/topology', { cache: 'no-store' });
  const text = await r.text();
  if (text !== view.topologyText) {
    view.topologyText = text;
    renderTopology(JSON.parse(text));
  }
}

async function refreshStats() {
  const status = $('#status');
  try {
    const st = await getJSON('api/stats');
    applyStats(st);
    view.lastOK = Date.now();
    status.textContent = 'live · ' + new Date(st.time).toTimeString().slice(0, 8);
    status.classList.remove('stale');
  } catch (e) {
    status.textContent = 'not reachable: is the app still running?';
    status.classList.add('stale');
    throw e;
  }
}

every(TOPOLOGY_EVERY, refreshTopology);
every(STATS_EVERY, refreshStats);
every(LOGS_EVERY, refreshLogs);
every(LOGS_EVERY, async () => { if (view.topology && view.topology.dev) await refreshBuilds(); });

document.addEventListener('visibilitychange', () => {
  for (const l of loops) {
    if (document.hidden) { clearTimeout(l.timer); l.timer = 0; } else if (!l.timer) l.run();
  }
});

$('#log-service').addEventListener('change', () => { fillInstanceFilter(); refreshLogs(); });
$('#log-instance').addEventListener('change', refreshLogs);
$('#log-text').addEventListener('input', refreshLogs);
$('#log-filters').addEventListener('submit', (e) => e.preventDefault());
new ResizeObserver(drawEdges).observe($('#diagram'));

(async () => {
  try { await refreshTopology(); } catch (e) { console.warn(e); }
  for (const l of loops) if (!l.timer) l.run();
})();
