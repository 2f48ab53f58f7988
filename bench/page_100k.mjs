// bench/page_100k.mjs - driven by bench/page_100k.sh: BASE TOTAL_JOBS.
// Times are measured in the page (performance.now() from navigation start;
// a click from its event's own timestamp to the DOM change), so the
// harness's own latency does not count.
import { createRequire } from 'node:module';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(path.join(here, '../tests/browser/package.json'));
const { chromium } = require('playwright-core');
const [base, total] = process.argv.slice(2);

const userDir = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-page-chromium-'));
const ctx = await chromium.launchPersistentContext(userDir, {
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage'],
  viewport: { width: 1280, height: 860 },
});
const page = await ctx.newPage();
const errors = [];
page.on('pageerror', (e) => errors.push(e.message));
const usable = () => page.waitForFunction((n) => (document.querySelector('.t-finished tbody tr')
  && document.querySelector('.t-waiting tbody tr')
  && (document.querySelector('#counts')?.textContent || '').replace(/[^0-9]/g, '').includes(String(n))
  ? performance.now() : 0), total, { timeout: 60000 }).then((h) => h.jsonValue());
const paints = () => page.evaluate(() => Object.fromEntries(performance.getEntriesByType('paint').map((e) => [e.name, e.startTime])));
const loads = [];
for (let i = 0; i < 5; i++) {
  if (i === 0) await page.goto(`${base}/#/queue`);
  else await page.reload();
  const u = await usable();
  const p = await paints();
  loads.push({ fp: p['first-paint'] || 0, fcp: p['first-contentful-paint'] || 0, usable: u });
}
const med = (k) => [...loads].map((x) => x[k]).sort((a, b) => a - b)[2];
const r = (x) => Math.round(x);
console.log(`page: first paint ${r(med('fp'))} ms, first contentful paint ${r(med('fcp'))} ms, usable ${r(med('usable'))} ms (medians of 5 loads; cold first load: fp ${r(loads[0].fp)}, fcp ${r(loads[0].fcp)}, usable ${r(loads[0].usable)} ms)`);
console.log(`page: rows in the DOM ${await page.$$eval('#main tr', (x) => x.length)} for ${total} jobs`);
// A click answered: from the click event's timestamp to the first DOM change of the target.
async function clickToChange(button, watch, done) {
  await page.evaluate(([b, w]) => {
    window.__click = null;
    document.querySelector(b).addEventListener('click', (e) => {
      const t = e.timeStamp;
      const mo = new MutationObserver(() => { mo.disconnect(); window.__click = performance.now() - t; });
      mo.observe(document.querySelector(w), { childList: true, characterData: true, subtree: true });
    }, { capture: true, once: true });
  }, [button, watch]);
  const t0 = Date.now();
  await page.click(button);
  const ms = await page.waitForFunction(() => window.__click, null, { timeout: 30000 }).then((h) => h.jsonValue());
  if (done) await page.waitForFunction(done, null, { timeout: 30000 });
  return [r(ms), Date.now() - t0];
}
const [older, olderAll] = await clickToChange('#page-older', '.t-finished', () => location.hash.includes('before='));
console.log(`page: click "Older" -> first change of the history table ${older} ms; new page in the URL after ${olderAll} ms (harness clock)`);
await page.goto(`${base}/#/queue`);
await usable();
const f0 = Date.now();
await page.selectOption('#qf-sm', '90');
await page.waitForFunction(() => location.hash.includes('sm=90') && document.querySelectorAll('.t-finished tbody tr').length > 0
  && [...document.querySelectorAll('.t-finished .tag')].every((t) => !/^SM\d+$/.test(t.textContent) || t.textContent === 'SM90'), null, { timeout: 30000 });
console.log(`page: filter SM=90 applied (rows on screen all SM90) in ${Date.now() - f0} ms (harness clock)`);
if (errors.length) console.log(`page: page errors: ${errors.join('; ')}`);
await ctx.close();
fs.rmSync(userDir, { recursive: true, force: true });
process.exit(errors.length ? 1 : 0);
