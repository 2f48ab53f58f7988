// app.js - the page shell: hash routing (#/view/arg?filters, so any view can
// be shared as a link), the token box, the live-connection badge and toasts.
// Each view module exports mount(root, ctx) -> {update(batch), unmount()}.
import { h, clear } from './js/dom.js';
import { getToken, setToken } from './js/api.js';
import { Live } from './js/live.js';
import * as queue from './js/queue.js';
import * as matrix from './js/matrix.js';
import * as build from './js/build.js';
import * as workers from './js/workers.js';
import * as catalog from './js/catalog.js';
import * as releases from './js/releases.js';
import * as submit from './js/submit.js';
import * as charts from './js/charts.js';
import * as audit from './js/audit.js';
import { watchForges } from './js/forges.js';

const VIEWS = { queue, matrix, build, workers, catalog, releases, submit, charts, audit };
const TITLES = { queue: 'Queue', matrix: 'Matrix', build: 'Build', workers: 'Workers', catalog: 'Catalog', releases: 'Releases', submit: 'Submit', charts: 'Charts', audit: 'Audit' };

function parseHash() {
  const raw = location.hash.startsWith('#/') ? location.hash.slice(2) : 'queue';
  const qi = raw.indexOf('?');
  const pathPart = qi < 0 ? raw : raw.slice(0, qi);
  const params = new URLSearchParams(qi < 0 ? '' : raw.slice(qi + 1));
  const segs = pathPart.split('/').filter(Boolean).map((x) => decodeURIComponent(x));
  const view = VIEWS[segs[0]] ? segs[0] : 'queue';
  return { view, arg: segs[1] || null, params, key: `${view}/${segs[1] || ''}` };
}

export function hashFor(view, arg, params) {
  let s = `#/${view}`;
  if (arg !== null && arg !== undefined) s += `/${encodeURIComponent(arg)}`;
  const q = new URLSearchParams(Object.entries(params || {}).filter(([, v]) => v !== '' && v !== null && v !== undefined)).toString();
  return q ? `${s}?${q}` : s;
}

function main() {
  const live = new Live();
  const root = document.getElementById('main');
  const toasts = document.getElementById('toasts');
  let current = null;
  let currentKey = '';
  let currentHash = '';

  function toast(msg, kind = 'info') {
    const t = h('div', { class: `toast ${kind}` }, String(msg));
    toasts.append(t);
    setTimeout(() => t.remove(), kind === 'error' ? 8000 : 4000);
  }

  const ctx = {
    live,
    toast,
    hashFor,
    // Replace the query part of the URL without re-mounting the view.
    setParams(params) {
      const r = parseHash();
      const hsh = hashFor(r.view, r.arg, params);
      currentHash = hsh;
      history.replaceState(null, '', hsh);
    },
    hasToken: () => !!getToken(),
  };

  function route() {
    const r = parseHash();
    if (current && r.key === currentKey && location.hash === currentHash) return;
    if (current && current.unmount) current.unmount();
    current = null;
    clear(root);
    currentKey = r.key;
    currentHash = location.hash;
    document.title = `${TITLES[r.view]}${r.arg ? ' ' + r.arg : ''} · kiln`;
    for (const a of document.querySelectorAll('#nav a')) {
      const on = a.dataset.view === r.view || (r.view === 'build' && a.dataset.view === 'queue');
      if (on) a.setAttribute('aria-current', 'page');
      else a.removeAttribute('aria-current');
    }
    current = VIEWS[r.view].mount(root, ctx, r.arg, r.params);
  }

  live.on((batch) => current && current.update && current.update(batch));
  const liveText = document.getElementById('live-text');
  const liveBox = document.getElementById('live');
  live.onStatus((s) => {
    liveText.textContent = s === 'live' ? 'live' : s;
    liveBox.dataset.status = s;
  });

  // Token box
  const tokenInput = document.getElementById('token-input');
  const tokenSummary = document.getElementById('token-summary');
  // The Audit link shows only for a token that may read the log (admins);
  // the server decides, the page asks it.
  const navAudit = document.getElementById('nav-audit');
  const showToken = () => {
    tokenSummary.textContent = getToken() ? 'Token ✓' : 'Token';
    tokenSummary.title = getToken() ? 'A token is set: actions are enabled' : 'No token: read-only';
    audit.probe().then((ok) => { navAudit.hidden = !ok; });
  };
  showToken();
  document.getElementById('token-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const v = tokenInput.value.trim();
    if (!v) return toast('Paste a token first.', 'error');
    setToken(v);
    tokenInput.value = '';
    showToken();
    document.getElementById('token-box').open = false;
    toast('Token saved in this browser.');
    live.connect();
  });
  document.getElementById('token-clear').addEventListener('click', () => {
    setToken('');
    showToken();
    toast('Token forgotten; the page is read-only now.');
    live.connect();
  });

  // The skip link must not change the route: focus <main> directly.
  document.getElementById('skip').addEventListener('click', (e) => {
    e.preventDefault();
    root.focus();
  });

  window.addEventListener('hashchange', () => {
    if (!location.hash.startsWith('#/') && location.hash !== '') return;
    route();
    root.focus({ preventScroll: true });
  });
  route();
  live.connect();
  watchForges(document.getElementById('forge-late'));
  window.kiln = { live }; // for debugging and the browser tests
}

main();
