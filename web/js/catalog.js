// catalog.js - published artifacts with filters, metadata, signature status
// and a download link.
import { h, clear, fmtBytes, fmtTime, selftestSummary } from './dom.js';
import * as api from './api.js';
import { FIELDS, readFilters, filterBar, apiParams } from './filters.js';

const CAT_FIELDS = [{ key: 'name', label: 'Name', search: true, placeholder: 'part of a name' }, ...FIELDS.filter((f) => ['branch', 'sm', 'isa', 'cuda', 'platform'].includes(f.key))];

function sigInfo(a) {
  const s = a.signature;
  if (a.signature_ok === true) return [`✔ verified${a.key ? ' · ' + a.key : ''}`, 'st-ok'];
  if (a.signature_ok === false) return ['✖ bad signature', 'st-bad'];
  if (s === undefined || s === null || s === '') return a.signed === true ? ['✔ signed', 'st-ok'] : ['– unsigned', 'st-off'];
  // kiln serve re-checks the signature on every download (409 if it fails).
  if (typeof s === 'string') return [`✔ signed${a.key ? ' · ' + a.key : ''}`, 'st-ok'];
  if (s.valid === true || s.verified === true || s.status === 'valid') return [`✔ signed${s.key ? ' by ' + s.key : ''}`, 'st-ok'];
  if (s.valid === false || s.verified === false || s.status === 'invalid') return ['✖ bad signature', 'st-bad'];
  return ['? signature not checked', 'st-wait'];
}

export function mount(root, ctx, arg, params) {
  let f = readFilters(params, CAT_FIELDS.map((x) => x.key));
  const body = h('tbody');
  const table = h('table', { class: 'grid-table' },
    h('thead', {}, h('tr', {}, ['Artifact', 'Variant', 'Selftest', 'Signature', 'Size', 'Published', ''].map((x) => h('th', { scope: 'col' }, x)))), body);
  const empty = h('p', { class: 'empty', hidden: true }, 'Nothing published matches.');
  const summary = h('p', { class: 'lead' });
  const errBox = h('p', { class: 'error', role: 'alert', hidden: true });
  const bar = filterBar(CAT_FIELDS, f, (nf) => {
    f = nf;
    ctx.setParams(f);
    load();
  }, 'cf');
  root.append(h('div', { class: 'view-head' }, h('h1', {}, 'Catalog'), summary), bar, errBox, h('section', { class: 'card' }, h('div', { class: 'table-wrap' }, table), empty));

  let seq = 0;
  async function load() {
    const my = ++seq;
    try {
      const r = await api.get('/catalog', apiParams(f));
      if (my !== seq) return;
      const items = api.listOf(r, 'entries');
      clear(body);
      for (const a of items) {
        // Entry fields may be top level (kiln serve) or under attrs/meta.
        const m = a.attrs || a.metadata || (a.meta && typeof a.meta === 'object' ? a.meta : {}) || {};
        const at = { sm: a.sm ?? m.sm, isa: a.isa ?? m.isa, cuda: a.cuda ?? m.cuda, platform: a.platform ?? m.platform };
        const [sig, sigCls] = sigInfo(a);
        const st = selftestSummary(a.selftest);
        const dl = h('a', { class: 'btn small', href: `/api/v1/catalog/${encodeURIComponent(a.id)}/download`, download: '' }, 'Download');
        dl.setAttribute('aria-label', `Download ${a.name}`);
        // A plain link cannot carry the token: with one set, fetch instead.
        dl.addEventListener('click', (e) => {
          if (!ctx.hasToken()) return;
          e.preventDefault();
          api.download(`/catalog/${encodeURIComponent(a.id)}/download`, String(a.name || 'artifact')).catch((err) => ctx.toast(`Download failed: ${err.message}`, 'error'));
        });
        body.append(h('tr', {},
          h('td', { class: 'c-name' }, h('div', { class: 'job-name' }, String(a.name || a.digest || '?'), a.version ? h('span', { class: 'muted' }, ` ${a.version}`) : null), h('div', { class: 'mono muted' }, String(a.digest || '').slice(0, 23) + (a.digest ? '…' : ''))),
          h('td', { class: 'c-name' }, h('span', { class: 'tags' }, [at.sm ? `SM${at.sm}` : null, at.isa, at.cuda ? `CUDA ${at.cuda}` : null, at.platform, a.branch].filter(Boolean).map((t) => h('span', { class: 'tag' }, String(t))))),
          h('td', {}, st ? h('span', { class: `badge ${st.passed ? 'st-ok' : 'st-bad'}` }, `${st.passed ? '✔' : '✖'} ${st.ok}/${st.total}`) : '–'),
          h('td', {}, h('span', { class: `badge ${sigCls}` }, sig)),
          h('td', { class: 'c-num' }, fmtBytes(a.size)),
          h('td', { class: 'c-num' }, fmtTime(a.published_at || a.created_at)),
          h('td', {}, dl)));
      }
      empty.hidden = items.length !== 0;
      table.hidden = items.length === 0;
      summary.textContent = `${items.length} published artifact${items.length === 1 ? '' : 's'}`;
      errBox.hidden = true;
    } catch (e) {
      errBox.hidden = false;
      errBox.textContent = `Could not load the catalog: ${e.message}`;
    }
  }
  load();
  return {
    update(batch) {
      if (batch.catalog.length || batch.resync) load();
    },
    unmount() {
      seq++;
    },
  };
}
