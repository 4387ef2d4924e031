// The maas-rs web dashboard: one page whose views read and change the controller's state
// through its JSON API only (the session cookie authenticates; state-changing calls carry the
// session's CSRF token). Data is put in the page as text nodes, never as markup.
'use strict';

const ROLES = { viewer: 0, operator: 1, admin: 2 };
const STATUSES = ['new', 'commissioning', 'failed_commissioning', 'ready', 'allocated',
  'deploying', 'deployed', 'failed_deployment', 'releasing'];
// A few organisationally unique identifiers (the first three octets of a MAC).
const VENDORS = {
  '52:54:00': 'QEMU/KVM virtual NIC', '08:00:27': 'Oracle VirtualBox', '00:50:56': 'VMware',
  '00:0c:29': 'VMware', '00:1b:21': 'Intel', '3c:fd:fe': 'Intel', 'b8:27:eb': 'Raspberry Pi',
  'dc:a6:32': 'Raspberry Pi', '00:25:90': 'Super Micro', 'ac:1f:6b': 'Super Micro',
  '00:1a:4b': 'Hewlett Packard', '00:26:b9': 'Dell', 'f8:bc:12': 'Dell', '00:15:5d': 'Microsoft Hyper-V',
};

let me = null; // { user, role, csrf_token }
let events = null;
let refreshTimer = null;
let current = null; // { kinds: [...], render: fn }
let paused = false; // a form is being filled: live refreshes wait

const $ = (id) => document.getElementById(id);

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k === 'text') el.textContent = v;
    else el.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function can(role) { return me && ROLES[me.role] >= ROLES[role]; }

async function api(method, path, body) {
  const headers = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (method !== 'GET' && me && me.csrf_token) headers['X-CSRF-Token'] = me.csrf_token;
  const r = await fetch(path, {
    method, headers, credentials: 'same-origin',
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await r.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (_) { data = text; }
  if (r.status === 401 && path !== '/api/v1/session') { loggedOut(); }
  if (!r.ok) {
    const msg = (data && data.error) || `${method} ${path}: ${r.status}`;
    throw new Error(msg);
  }
  return data;
}

function toast(message, bad) {
  const item = h('div', { class: bad ? 'bad' : '' }, message);
  $('toast').append(item);
  setTimeout(() => item.remove(), bad ? 8000 : 4000);
}

async function act(label, fn) {
  try { await fn(); toast(`${label}: done`); } catch (e) { toast(`${label}: ${e.message}`, true); }
  refresh();
}

function when(seconds) {
  if (!seconds) return '—';
  const d = new Date(seconds * 1000);
  const ago = Math.round(Date.now() / 1000 - seconds);
  const rel = ago < 60 ? `${Math.max(ago, 0)} s ago` : ago < 3600 ? `${Math.round(ago / 60)} min ago`
    : ago < 86400 ? `${Math.round(ago / 3600)} h ago` : d.toISOString().slice(0, 10);
  return h('time', { datetime: d.toISOString(), title: d.toISOString() }, rel);
}

function bytes(n) {
  if (!n && n !== 0) return '—';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0; let v = n;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i += 1; }
  return `${v.toFixed(v >= 10 || i === 0 ? 0 : 1)} ${units[i]}`;
}

function vendor(mac) { return VENDORS[String(mac).toLowerCase().slice(0, 8)] || 'unknown'; }
function label(s) { return String(s).replace(/_/g, ' ').replace(/^./, (c) => c.toUpperCase()); }
function macId(mac) { return String(mac).replace(/:/g, '-'); }
function powerPill(p) {
  const state = (p && p.state) || 'unknown';
  return h('span', { class: `pill ${state}`, title: (p && p.error) || '' }, state);
}

function table(head, rows, opts) {
  return h('div', { class: 'scroll' }, h('table', opts || {},
    h('thead', {}, h('tr', {}, head.map((c) => h('th', { scope: 'col', class: c.cls || '' }, c.text ?? c)))),
    h('tbody', {}, rows)));
}

// ---- session and navigation ----

async function start() {
  $('logout').addEventListener('click', logout);
  document.addEventListener('click', (e) => {
    const a = e.target.closest('a[href^="/"]');
    if (!a || e.ctrlKey || e.metaKey || e.shiftKey || a.target) return;
    e.preventDefault();
    go(a.getAttribute('href'));
  });
  window.addEventListener('popstate', show);
  try { me = await api('GET', '/api/v1/session'); } catch (_) { me = null; }
  if (!me || !me.session) { me = null; go('/login', true); return; }
  loggedIn();
  show();
}

function go(path, replace) {
  if (replace) history.replaceState(null, '', path); else history.pushState(null, '', path);
  show();
}

function loggedIn() {
  $('nav').hidden = false; $('who').hidden = false;
  $('who-name').textContent = `${me.user} (${me.role})`;
  for (const a of document.querySelectorAll('nav a[data-role]')) a.hidden = !can(a.dataset.role);
  listen();
}

function loggedOut() {
  me = null;
  if (events) { events.close(); events = null; }
  $('nav').hidden = true; $('who').hidden = true;
  if (location.pathname !== '/login') go('/login', true);
}

async function logout() {
  try { await api('DELETE', '/api/v1/session'); } catch (_) { /* gone already */ }
  loggedOut();
}

function listen() {
  if (events) events.close();
  events = new EventSource('/api/v1/events');
  events.addEventListener('hello', () => { $('live').classList.add('on'); $('live').setAttribute('aria-label', 'Live updates on'); document.body.dataset.live = 'on'; });
  events.addEventListener('change', (e) => {
    const kinds = String(e.data).split(',');
    if (current && current.kinds.some((k) => kinds.includes(k))) {
      clearTimeout(refreshTimer);
      refreshTimer = setTimeout(refresh, 50);
    }
  });
  events.onerror = () => { $('live').classList.remove('on'); document.body.dataset.live = 'off'; };
}

const VIEWS = [
  [/^\/login$/, () => loginView()],
  [/^\/(machines)?$/, () => view('machines', ['machines'], machinesView)],
  [/^\/machines\/([0-9a-fA-F:-]+)$/, (m) => view('machines', ['machines', 'network'], () => machineView(m[1]))],
  [/^\/subnets$/, () => view('subnets', ['network', 'machines', 'discoveries'], subnetsView)],
  [/^\/discoveries$/, () => view('discoveries', ['discoveries', 'network'], discoveriesView)],
  [/^\/racks$/, () => view('racks', ['racks'], racksView)],
  [/^\/audit$/, () => view('audit', ['access'], auditView)],
];

function show() {
  const path = location.pathname;
  for (const [re, fn] of VIEWS) {
    const m = path.match(re);
    if (m) { fn(m); return; }
  }
  page('Not found', h('p', {}, 'No such page. ', h('a', { href: '/machines' }, 'Machines')));
}

function page(title, ...content) {
  document.title = `${title} · maas-rs`;
  const main = $('main');
  main.replaceChildren(h('h1', {}, title), ...content.filter((c) => c !== null && c !== undefined));
}

function view(name, kinds, render) {
  if (!me) { go('/login', true); return; }
  paused = false;
  for (const a of document.querySelectorAll('nav a')) {
    if (a.dataset.view === name) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
  }
  current = { kinds, render };
  document.body.dataset.view = name;
  $('main').focus({ preventScroll: true });
  refresh();
}

async function refresh() {
  if (!current || paused) return;
  const render = current.render;
  try {
    await render();
  } catch (e) {
    if (me) page('Error', h('p', { class: 'error' }, e.message));
  }
  document.body.dataset.rendered = String(Date.now());
}

function loginView() {
  current = null;
  const input = h('input', { id: 'token', name: 'token', type: 'password', autocomplete: 'current-password', required: true, 'aria-describedby': 'token-help' });
  const error = h('p', { class: 'error', id: 'login-error', role: 'alert' });
  const form = h('form', { class: 'card login', onsubmit: async (e) => {
    e.preventDefault();
    error.textContent = '';
    try {
      const answer = await api('POST', '/api/v1/session', { token: input.value });
      me = { ...answer, session: true };
      input.value = '';
      loggedIn();
      go('/machines', true);
    } catch (err) { error.textContent = err.message; }
  } },
  h('div', { class: 'form' },
    h('label', { for: 'token' }, 'API token', input),
    h('p', { id: 'token-help', class: 'muted' }, 'A user\u2019s token (maas_…); an admin makes one with "maas-controller cli create-token --user NAME".'),
    h('button', { type: 'submit', id: 'login' }, 'Log in')), error);
  page('Log in', form);
  input.focus();
}

// ---- machines ----

let filter = { text: '', status: '' };
const selected = new Set();

const MACHINE_ACTIONS = [
  ['Power on', 'operator', (m) => api('POST', `/api/v1/machines/${m.mac}/power-on`)],
  ['Power off', 'operator', (m) => api('POST', `/api/v1/machines/${m.mac}/power-off`)],
  ['Power cycle', 'operator', (m) => api('POST', `/api/v1/machines/${m.mac}/power-cycle`)],
  ['Commission', 'operator', (m) => api('POST', `/api/v1/machines/${m.mac}/commission`)],
  ['Allocate', 'operator', (m) => api('POST', '/api/v1/machines/allocate', { hostname: m.hostname })],
  ['Deploy', 'operator', (m, options) => api('POST', `/api/v1/machines/${m.mac}/deploy`, options || {})],
  ['Release', 'operator', (m) => api('POST', `/api/v1/machines/${m.mac}/release`, {})],
];

function actionId(name) { return `act-${name.toLowerCase().replace(/ /g, '-')}`; }

function actionBar(targets) {
  if (!can('operator')) return null;
  const bar = h('div', { class: 'actions', role: 'group', 'aria-label': 'Machine actions' });
  const slot = h('div', { id: 'deploy-slot' });
  for (const [name, role, fn] of MACHINE_ACTIONS) {
    if (!can(role)) continue;
    const run = (options) => act(name, async () => {
      const list = targets();
      if (!list.length) throw new Error('select a machine first');
      for (const m of list) await fn(m, options);
    });
    // Deploying asks what to deploy first.
    const onclick = name === 'Deploy' ? () => { paused = true; slot.replaceChildren(deployForm(slot, run)); } : () => run();
    bar.append(h('button', { type: 'button', id: actionId(name), onclick }, name));
  }
  if (can('admin')) {
    const zone = h('select', { id: 'zone-select', 'aria-label': 'Zone' });
    api('GET', '/api/v1/zones').then((zones) => zone.replaceChildren(...zones.map((z) => h('option', { value: z.name }, z.name)))).catch(() => {});
    const tags = h('input', { id: 'tags-input', 'aria-label': 'Tags (comma-separated)', placeholder: 'tags, comma-separated', size: 18 });
    bar.append(h('span', { class: 'sep' }), zone,
      h('button', { type: 'button', id: 'act-set-zone', class: 'secondary', onclick: () => act('Set zone', async () => {
        for (const m of targets()) await api('PUT', `/api/v1/machines/${m.mac}/zone`, { zone: zone.value });
      }) }, 'Set zone'),
      tags,
      h('button', { type: 'button', id: 'act-set-tags', class: 'secondary', onclick: () => act('Set tags', async () => {
        const list = tags.value.split(',').map((t) => t.trim()).filter(Boolean);
        for (const m of targets()) await api('PUT', `/api/v1/machines/${m.mac}/tags`, { tags: list });
      }) }, 'Set tags'));
  }
  return h('div', {}, bar, slot);
}

// The deploy options: OS, release, and cloud-init user data (sent base64-encoded, as the API
// takes it).
function deployForm(slot, run) {
  const os = h('input', { id: 'd-os', placeholder: 'debian' });
  const series = h('input', { id: 'd-series', placeholder: 'newest imported' });
  const userData = h('textarea', { id: 'd-user-data', rows: 6, placeholder: '#cloud-config' });
  return h('form', { class: 'card', id: 'deploy-form', 'aria-label': 'Deploy', onsubmit: (e) => {
    e.preventDefault();
    const options = {};
    if (os.value.trim()) options.osystem = os.value.trim();
    if (series.value.trim()) options.distro_series = series.value.trim();
    if (userData.value) options.user_data = btoa(String.fromCharCode(...new TextEncoder().encode(userData.value)));
    slot.replaceChildren();
    paused = false;
    run(options);
  } },
  h('div', { class: 'form' },
    h('label', { for: 'd-os' }, 'OS', os), h('label', { for: 'd-series' }, 'Release', series),
    h('label', { for: 'd-user-data', class: 'wide' }, 'User data (cloud-init)', userData),
    h('div', { class: 'actions' }, h('button', { type: 'submit', id: 'd-start' }, 'Start deployment'),
      h('button', { type: 'button', class: 'secondary', onclick: () => { slot.replaceChildren(); paused = false; refresh(); } }, 'Cancel'))));
}

function macsOf(m) {
  const macs = [m.mac];
  for (const nic of (m.hardware && m.hardware.interfaces) || []) if (!macs.includes(nic.mac)) macs.push(nic.mac);
  return macs;
}

async function machinesView() {
  const machines = await api('GET', '/api/v1/machines');
  const text = filter.text.toLowerCase();
  const shown = machines.filter((m) => (!filter.status || m.status === filter.status)
    && (!text || [m.hostname, m.mac, m.zone, m.owner, m.architecture, ...(m.tags || []), m.ip]
      .some((v) => v && String(v).toLowerCase().includes(text))));
  for (const mac of [...selected]) if (!machines.some((m) => m.mac === mac)) selected.delete(mac);
  const search = h('input', { id: 'search', type: 'search', value: filter.text, placeholder: 'host name, MAC, tag…' });
  search.addEventListener('input', () => { filter.text = search.value; refreshKeepingFocus('search'); });
  const status = h('select', { id: 'status-filter' }, h('option', { value: '' }, 'Any'),
    STATUSES.map((s) => h('option', { value: s, selected: filter.status === s }, label(s))));
  status.addEventListener('change', () => { filter.status = status.value; refresh(); });
  const operator = can('operator');
  const head = [operator ? { text: h('span', { class: 'sr' }, 'Select') } : null, 'Host name', { text: 'MACs', cls: 'hide-narrow' }, 'Power', 'Status',
    'Zone', 'Owner', { text: 'Arch', cls: 'hide-narrow' }, { text: 'CPUs', cls: 'hide-narrow' },
    { text: 'Memory', cls: 'hide-narrow' }, { text: 'Disks', cls: 'hide-narrow' }, 'Tags'].filter(Boolean);
  const rows = [];
  for (const s of STATUSES) {
    const group = shown.filter((m) => m.status === s);
    if (!group.length) continue;
    rows.push(h('tr', {}, h('th', { class: 'group', colspan: head.length, scope: 'rowgroup', id: `group-${s}` }, `${label(s)} (${group.length})`)));
    for (const m of group) {
      const hw = m.hardware || {};
      const box = operator ? h('input', { type: 'checkbox', class: 'pick', 'aria-label': `Select ${m.hostname}`, checked: selected.has(m.mac) }) : null;
      if (box) box.addEventListener('change', () => { if (box.checked) selected.add(m.mac); else selected.delete(m.mac); });
      rows.push(h('tr', { id: `m-${macId(m.mac)}`, 'data-mac': m.mac, 'data-status': m.status },
        box ? h('td', {}, box) : null,
        h('td', {}, h('a', { href: `/machines/${m.mac}` }, m.hostname)),
        h('td', { class: 'mono hide-narrow' }, macsOf(m).join(' ')),
        h('td', { class: 'c-power' }, powerPill(m.power_state)),
        h('td', { class: 'c-status' }, label(m.status)),
        h('td', {}, m.zone), h('td', {}, m.owner || '—'),
        h('td', { class: 'hide-narrow' }, m.architecture || hw.architecture || '—'),
        h('td', { class: 'num hide-narrow' }, hw.cpu_count ?? '—'),
        h('td', { class: 'num hide-narrow' }, hw.memory_bytes ? bytes(hw.memory_bytes) : '—'),
        h('td', { class: 'num hide-narrow' }, hw.disks ? hw.disks.length : '—'),
        h('td', {}, (m.tags || []).map((t) => h('span', { class: 'tag' }, t)))));
    }
  }
  if (!rows.length) rows.push(h('tr', {}, h('td', { colspan: head.length, class: 'muted' }, 'No machine matches.')));
  page(`Machines (${machines.length})`,
    h('div', { class: 'toolbar', role: 'search' },
      h('label', { for: 'search' }, 'Search', search),
      h('label', { for: 'status-filter' }, 'Status', status)),
    actionBar(() => machines.filter((m) => selected.has(m.mac))),
    table(head, rows, { id: 'machines', 'aria-label': 'Machines by status' }));
}

async function refreshKeepingFocus(id) {
  const el = $(id); const pos = el ? el.selectionStart : null;
  await refresh();
  const again = $(id);
  if (again) { again.focus(); if (pos !== null) again.setSelectionRange(pos, pos); }
}

async function machineView(mac) {
  const m = await api('GET', `/api/v1/machines/${mac}`);
  const [events, ifaces, netconfig] = await Promise.all([
    api('GET', `/api/v1/machines/${mac}/events`).catch(() => []),
    api('GET', `/api/v1/machines/${mac}/interfaces`).catch(() => null),
    api('GET', `/api/v1/machines/${mac}/netconfig`).catch((e) => `(${e.message})`),
  ]);
  const hw = m.hardware;
  const facts = h('dl', { class: 'facts', id: 'facts' },
    h('dt', {}, 'Status'), h('dd', { id: 'machine-status' }, label(m.status)),
    h('dt', {}, 'Power'), h('dd', { id: 'machine-power' }, powerPill(m.power_state)),
    h('dt', {}, 'MAC'), h('dd', { class: 'mono' }, m.mac),
    h('dt', {}, 'Address'), h('dd', { class: 'mono' }, m.ip || '—'),
    h('dt', {}, 'Zone'), h('dd', {}, m.zone),
    h('dt', {}, 'Domain'), h('dd', {}, m.domain),
    h('dt', {}, 'Owner'), h('dd', {}, m.owner || '—'),
    h('dt', {}, 'Architecture'), h('dd', {}, m.architecture || (hw && hw.architecture) || '—'),
    h('dt', {}, 'Tags'), h('dd', {}, (m.tags || []).map((t) => h('span', { class: 'tag' }, t))),
    h('dt', {}, 'Last seen'), h('dd', {}, when(m.last_seen)));
  let hardware = h('p', { class: 'muted', id: 'hardware' }, 'Not commissioned yet.');
  if (hw) {
    hardware = h('div', { id: 'hardware' },
      h('dl', { class: 'facts' },
        h('dt', {}, 'CPUs'), h('dd', { id: 'hw-cpus' }, `${hw.cpu_count}${hw.cpu_model ? ` × ${hw.cpu_model}` : ''}`),
        h('dt', {}, 'Memory'), h('dd', { id: 'hw-memory' }, bytes(hw.memory_bytes)),
        h('dt', {}, 'Firmware'), h('dd', {}, hw.firmware || '—'),
        h('dt', {}, 'System'), h('dd', {}, [hw.dmi && hw.dmi.vendor, hw.dmi && hw.dmi.product].filter(Boolean).join(' ') || '—'),
        h('dt', {}, 'Commissioned'), h('dd', {}, when(hw.at))),
      h('h3', {}, 'Disks'),
      table(['Name', 'Size', 'Model', 'Serial'], (hw.disks || []).map((d) => h('tr', {},
        h('td', { class: 'mono' }, d.name), h('td', { class: 'num' }, bytes(d.size_bytes)), h('td', {}, d.model || '—'), h('td', {}, d.serial || '—'))), { id: 'disks' }),
      h('h3', {}, 'Network cards'),
      table(['Name', 'MAC', 'Link', 'Speed'], (hw.interfaces || []).map((n) => h('tr', {},
        h('td', { class: 'mono' }, n.name), h('td', { class: 'mono' }, n.mac), h('td', {}, n.link ? 'up' : 'down'),
        h('td', {}, n.speed_mbps ? `${n.speed_mbps} Mb/s` : '—'))), { id: 'nics' }));
  }
  const links = ifaces && ifaces.interfaces ? ifaces.interfaces : [];
  const ifaceTable = links.length ? table(['Name', 'Type', 'MAC', 'Links'], links.map((i) => h('tr', {},
    h('td', { class: 'mono' }, i.name), h('td', {}, i.type || 'physical'), h('td', { class: 'mono' }, i.mac || '—'),
    h('td', { class: 'mono' }, (i.links || []).map((l) => `${l.mode || ''} ${l.ip_address || l.ip || ''} ${l.subnet || ''}`.trim()).join('; ') || '—'))), { id: 'interfaces' })
    : h('pre', { id: 'interfaces' }, ifaces ? JSON.stringify(ifaces, null, 2) : 'No interface recorded yet.');
  const history = table(['When', 'Event', 'Detail'], events.slice(-50).reverse().map((e) => h('tr', {},
    h('td', {}, when(e.at)), h('td', {}, e.kind), h('td', {}, e.detail || ''))), { id: 'events' });
  page(m.hostname,
    h('p', {}, h('a', { href: '/machines' }, '← Machines')),
    actionBar(() => [m]),
    h('div', { class: 'grid2' },
      h('section', { class: 'card', 'aria-labelledby': 's-summary' }, h('h2', { id: 's-summary' }, 'Summary'), facts),
      h('section', { class: 'card', 'aria-labelledby': 's-hw' }, h('h2', { id: 's-hw' }, 'Commissioning results'), hardware)),
    h('section', { class: 'card', 'aria-labelledby': 's-if' }, h('h2', { id: 's-if' }, 'Interfaces and addresses'), ifaceTable),
    h('section', { class: 'card', 'aria-labelledby': 's-ev' }, h('h2', { id: 's-ev' }, 'Events'), history),
    h('section', { class: 'card', 'aria-labelledby': 's-nc' }, h('h2', { id: 's-nc' }, 'Network configuration'),
      h('pre', { id: 'netconfig' }, typeof netconfig === 'string' ? netconfig : JSON.stringify(netconfig, null, 2))));
}

// ---- subnets ----

function usage(stats) {
  const total = Number(stats.total_addresses) || 0;
  let dynamic = 0; let reserved = 0;
  for (const r of stats.ranges || []) {
    const p = r.purpose || [];
    if (p.includes('dynamic')) dynamic += Number(r.num_addresses);
    else if (p.includes('reserved')) reserved += Number(r.num_addresses);
  }
  const free = Number(stats.num_available) || 0;
  const used = Math.max(total - free - dynamic - reserved, 0);
  return { total, used, dynamic, reserved, free };
}

function usageBar(u, cidr) {
  const bar = h('div', { class: 'bar', role: 'img', 'aria-label': `${cidr}: ${u.used} used, ${u.dynamic} dynamic, ${u.reserved} reserved, ${u.free} free of ${u.total}` });
  for (const k of ['used', 'dynamic', 'reserved', 'free']) {
    const part = h('span', { class: k, title: `${k}: ${u[k]}` });
    part.style.width = `${u.total ? (100 * u[k]) / u.total : 0}%`;
    bar.append(part);
  }
  return h('div', {}, bar, h('div', { class: 'legend' }, ['used', 'dynamic', 'reserved', 'free'].map((k) => h('span', {}, h('i', { class: k }), `${label(k)} ${u[k]}`))));
}

async function subnetsView() {
  const [subnets, ranges, addresses, leases, machines] = await Promise.all([
    api('GET', '/api/v1/subnets'), api('GET', '/api/v1/ipranges'), api('GET', '/api/v1/ipaddresses'),
    api('GET', '/api/v1/leases'), api('GET', '/api/v1/machines')]);
  const stats = await Promise.all(subnets.map((s) => api('GET', `/api/v1/subnets/${s.id}/statistics`).catch(() => s.statistics || {})));
  const byMac = new Map(machines.map((m) => [m.mac, m.hostname]));
  const groups = new Map();
  subnets.forEach((s, i) => {
    const key = `${s.fabric || 'fabric'} · VLAN ${s.vid ?? s.vlan}`;
    if (!groups.has(key)) groups.set(key, []);
    groups.get(key).push([s, stats[i]]);
  });
  const sections = [];
  for (const [key, list] of groups) {
    const cards = list.map(([s, st]) => {
      const u = usage(st);
      const mine = [...addresses, ...leases].filter((a) => a.subnet === s.id);
      return h('section', { class: 'card subnet', id: `subnet-${s.id}`, 'aria-labelledby': `subnet-h-${s.id}` },
        h('h3', { id: `subnet-h-${s.id}`, class: 'mono' }, s.cidr),
        h('p', { class: 'muted' }, `Gateway ${s.gateway_ip || '—'} · ${s.managed ? 'managed' : 'unmanaged'} · ${st.usage_string || ''} used`),
        usageBar(u, s.cidr),
        h('h4', {}, 'Ranges'),
        table(['Start', 'End', 'Addresses', 'Purpose'], (st.ranges || []).map((r) => h('tr', {},
          h('td', { class: 'mono' }, r.start), h('td', { class: 'mono' }, r.end), h('td', { class: 'num' }, r.num_addresses),
          h('td', {}, (r.purpose || []).join(', ')))), { class: 'ranges' }),
        h('h4', {}, 'Addresses in use'),
        mine.length ? table(['Address', 'Kind', 'MAC', 'Held by'], mine.map((a) => h('tr', {},
          h('td', { class: 'mono' }, a.ip), h('td', {}, a.kind), h('td', { class: 'mono' }, a.mac || '—'),
          h('td', {}, byMac.get(a.mac) || a.owner || '—'))), { class: 'addresses' }) : h('p', { class: 'muted' }, 'None.'),
        h('p', { class: 'muted' }, `Configured ranges: ${ranges.filter((r) => r.subnet === s.id).map((r) => `${r.type} ${r.start}–${r.end}`).join(', ') || 'none'}`));
    });
    sections.push(h('h2', {}, key), ...cards);
  }
  page('Subnets', ...(sections.length ? sections : [h('p', { class: 'muted' }, 'No subnet is defined.')]));
}

// ---- discoveries ----

async function discoveriesView() {
  const [list, domains, racks] = await Promise.all([api('GET', '/api/v1/discoveries?unknown=both'),
    api('GET', '/api/v1/domains').catch(() => []), api('GET', '/api/v1/racks').catch(() => [])]);
  const operator = can('operator'); const admin = can('admin');
  const head = ['MAC', 'Vendor', 'IP', 'Host name', 'Last seen', 'Seen by', operator ? 'Actions' : null].filter(Boolean);
  const rows = list.map((d) => h('tr', { id: `d-${macId(d.mac)}`, 'data-ip': d.ip },
    h('td', { class: 'mono' }, d.mac), h('td', {}, vendor(d.mac)), h('td', { class: 'mono' }, d.ip),
    h('td', {}, d.hostname || '—'), h('td', {}, when(d.last_seen)),
    h('td', {}, racks.length === 1 ? `${racks[0].name} (${d.interface})` : d.interface),
    operator ? h('td', {},
      h('button', { type: 'button', class: 'secondary add', onclick: () => addForm(d, domains) }, 'Add…'), ' ',
      admin ? h('button', { type: 'button', class: 'secondary clear', onclick: () => act('Clear', () => api('POST', '/api/v1/discoveries/clear-by-mac-and-ip', { mac: d.mac, ip: d.ip })) }, 'Clear') : null) : null));
  if (!rows.length) rows.push(h('tr', {}, h('td', { colspan: head.length, class: 'muted' }, 'Nothing unknown has been seen.')));
  page(`Discoveries (${list.length})`,
    admin ? h('div', { class: 'actions' }, h('button', { type: 'button', id: 'clear-all', class: 'danger', onclick: () => act('Clear all', () => api('POST', '/api/v1/discoveries/clear', { all: true })) }, 'Clear all')) : null,
    h('div', { id: 'add-slot' }),
    table(head, rows, { id: 'discoveries', 'aria-label': 'Unknown devices' }));
}

function addForm(d, domains) {
  current = null; // a form being filled is not replaced by a live refresh
  const kind = h('select', { id: 'f-as' }, h('option', { value: 'device' }, 'Device'), h('option', { value: 'interface' }, 'Interface of a machine'));
  const hostname = h('input', { id: 'f-hostname', value: d.hostname || '' });
  const domain = h('select', { id: 'f-domain' }, domains.map((x) => h('option', { value: x.name }, x.name)));
  const ip = h('select', { id: 'f-ip' }, ['static', 'dynamic', 'external'].map((x) => h('option', { value: x }, label(x))));
  const parent = h('input', { id: 'f-parent', placeholder: 'machine MAC or device' });
  const target = h('input', { id: 'f-target', placeholder: 'machine MAC' });
  const form = h('form', { class: 'card', id: 'add-form', 'aria-label': `Add ${d.mac}`, onsubmit: async (e) => {
    e.preventDefault();
    const body = { ip: d.ip, mac: d.mac, as: kind.value, ip_assignment: ip.value };
    if (kind.value === 'device') {
      if (hostname.value) body.hostname = hostname.value;
      if (domain.value) body.domain = domain.value;
      if (parent.value) body.parent = parent.value;
    } else body.target = target.value;
    try {
      await api('POST', '/api/v1/discoveries/convert', body);
      toast(`${d.mac} added as ${kind.value}`);
      view('discoveries', ['discoveries', 'network'], discoveriesView);
    } catch (err) { toast(`Add: ${err.message}`, true); }
  } },
  h('h2', {}, `Add ${d.mac} (${d.ip})`),
  h('div', { class: 'form' },
    h('label', { for: 'f-as' }, 'Add as', kind), h('label', { for: 'f-hostname' }, 'Host name', hostname),
    h('label', { for: 'f-domain' }, 'Domain', domain), h('label', { for: 'f-ip' }, 'IP assignment', ip),
    h('label', { for: 'f-parent' }, 'Parent', parent), h('label', { for: 'f-target' }, 'Machine (for an interface)', target),
    h('div', { class: 'actions' }, h('button', { type: 'submit', id: 'f-save' }, 'Save'),
      h('button', { type: 'button', class: 'secondary', onclick: () => view('discoveries', ['discoveries', 'network'], discoveriesView) }, 'Cancel'))));
  $('add-slot').replaceChildren(form);
  hostname.focus();
}

// ---- controllers and audit ----

// What a rack's last call to this region said of its health, as of when (a tooltip).
function healthAsOf(r) {
  return r.health_at ? `as the rack said at ${new Date(r.health_at * 1000).toISOString()}` : null;
}

// DHCP: serving (on which interfaces, since when), off (why), or unknown (the rack never said:
// it is starting, or older than the report). Off is flagged, unless it was never configured.
function rackDhcp(r) {
  const title = healthAsOf(r);
  if (r.dhcp_serving === true) {
    const on = (r.dhcp_interfaces || []).join(', ');
    return h('td', { class: 'c-dhcp', title }, h('span', { class: 'pill on' }, 'serving'),
      on ? ` on ${on}` : '', r.dhcp_since ? [', started ', when(r.dhcp_since)] : '');
  }
  if (r.dhcp_serving === false) {
    if (r.dhcp_reason === 'unconfigured') {
      return h('td', { class: 'c-dhcp', title }, h('span', { class: 'pill off' }, 'off'), ' (not configured)');
    }
    return h('td', { class: 'c-dhcp', title }, h('span', { class: 'pill warn' }, 'off'),
      r.dhcp_reason ? ` (${r.dhcp_reason})` : '');
  }
  return h('td', { class: 'c-dhcp muted' }, 'unknown');
}

// Reports the rack holds for a region: flagged when any wait.
function rackQueued(r) {
  const n = r.queued_reports;
  if (n === null || n === undefined) return h('td', { class: 'num c-queued muted' }, 'unknown');
  return h('td', { class: 'num c-queued', title: healthAsOf(r) },
    n > 0 ? h('span', { class: 'pill warn' }, n, h('span', { class: 'sr' }, ' waiting')) : '0');
}

async function racksView() {
  const [racks, version] = await Promise.all([api('GET', '/api/v1/racks'), api('GET', '/api/v1/version')]);
  const now = Date.now() / 1000;
  page('Controllers',
    h('section', { class: 'card' }, h('h2', {}, 'Region'),
      h('dl', { class: 'facts' }, h('dt', {}, 'Version'), h('dd', {}, `${version.name} ${version.version}`),
        h('dt', {}, 'Serving this page'), h('dd', {}, location.host))),
    h('h2', {}, 'Racks'),
    table(['Name', 'Health', 'Last contact', 'DHCP', 'Queued reports', 'Address', 'VLANs', 'Leases recorded', 'Leases refused', 'Discoveries'],
      racks.length ? racks.map((r) => h('tr', { id: `rack-${r.name}` },
        h('td', {}, r.name), h('td', {}, h('span', { class: `pill ${now - r.last_contact < 120 ? 'on' : 'error'}` }, now - r.last_contact < 120 ? 'in contact' : 'silent')),
        h('td', {}, when(r.last_contact)), rackDhcp(r), rackQueued(r), h('td', { class: 'mono' }, r.address || '—'),
        h('td', {}, (r.vlans || []).map((v) => (typeof v === 'object' ? `${v.fabric}/${v.vid}` : v)).join(', ') || '—'),
        h('td', { class: 'num' }, r.leases_recorded), h('td', { class: 'num' }, r.leases_refused), h('td', { class: 'num' }, r.discoveries)))
        : [h('tr', {}, h('td', { colspan: 10, class: 'muted' }, 'No rack has enrolled: this region serves on its own.'))], { id: 'racks' }));
}

async function auditView() {
  if (!can('admin')) { page('Audit', h('p', {}, 'The audit trail is for admins.')); return; }
  const entries = await api('GET', '/api/v1/audit');
  page('Audit trail',
    table(['When', 'Who', 'Action', 'Target', 'Status'], entries.slice(-200).reverse().map((e) => h('tr', {},
      h('td', {}, when(e.at)), h('td', {}, e.who), h('td', { class: 'mono' }, e.action), h('td', { class: 'mono' }, e.target || '—'),
      h('td', { class: 'num' }, e.status))), { id: 'audit' }));
}

document.addEventListener('DOMContentLoaded', start);
