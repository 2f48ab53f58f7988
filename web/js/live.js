// live.js - the live event stream (GET /api/v1/events, SSE) and the batching
// that keeps the page responsive: events are collected as they arrive and
// handed to the views once per animation frame, so a burst of 1,000 events
// costs one render, not 1,000.
//
// Without a token the page uses EventSource, which resends Last-Event-ID by
// itself after a reconnect. EventSource cannot send an Authorization header,
// so with a token set the stream is read with fetch() instead, and this file
// sends Last-Event-ID itself on reconnect.
import { BASE, getToken } from './api.js';

export class Live {
  static MIN_GAP_MS = 250;

  constructor() {
    this.jobs = new Map(); // id -> latest job object seen (cache for views)
    this.workers = new Map();
    this.listeners = new Set();
    this.statusListeners = new Set();
    this.pending = null;
    this.frame = 0;
    this.timer = 0;
    this.lastFlush = 0;
    this.lastId = null;
    this.status = 'connecting';
    this.es = null;
    this.abort = null;
    this.retryMs = 1000;
    this.wasDown = false;
    this.eventCount = 0;
  }

  on(fn) {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  onStatus(fn) {
    this.statusListeners.add(fn);
    fn(this.status);
  }

  setStatus(s) {
    if (s === this.status) return;
    this.status = s;
    for (const fn of this.statusListeners) fn(s);
  }

  connect() {
    this.close();
    if (getToken()) this.connectFetch();
    else this.connectEventSource();
  }

  close() {
    if (this.es) this.es.close();
    this.es = null;
    if (this.abort) this.abort.abort();
    this.abort = null;
  }

  opened() {
    this.setStatus('live');
    this.retryMs = 1000;
    // After an outage the server may no longer retain every event we missed:
    // ask the views to reload what they show.
    if (this.wasDown) this.queue('resync', null, null);
    this.wasDown = false;
  }

  down() {
    this.wasDown = true;
    this.setStatus('reconnecting');
  }

  connectEventSource() {
    let url = `${BASE}/events`;
    if (this.lastId !== null) url += `?last_event_id=${encodeURIComponent(this.lastId)}`;
    const es = new EventSource(url);
    this.es = es;
    es.onopen = () => this.opened();
    es.onerror = () => {
      this.down();
      if (es.readyState === EventSource.CLOSED) {
        // The browser gave up (e.g. a 401 or a proxy error): retry ourselves.
        setTimeout(() => this.es === es && this.connect(), this.backoff());
      }
    };
    for (const type of ['job', 'worker', 'log', 'catalog']) {
      es.addEventListener(type, (e) => {
        if (e.lastEventId) this.lastId = e.lastEventId;
        this.raw(type, e.data);
      });
    }
  }

  backoff() {
    const ms = this.retryMs;
    this.retryMs = Math.min(this.retryMs * 2, 15000);
    return ms;
  }

  async connectFetch() {
    const ctl = new AbortController();
    this.abort = ctl;
    const hd = { Accept: 'text/event-stream', Authorization: `Bearer ${getToken()}` };
    if (this.lastId !== null) hd['Last-Event-ID'] = this.lastId;
    try {
      const res = await fetch(`${BASE}/events`, { headers: hd, signal: ctl.signal, cache: 'no-store' });
      if (!res.ok || !res.body) throw new Error(`events: HTTP ${res.status}`);
      this.opened();
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += value;
        let cut;
        // Events end with a blank line (\n\n; \r\n\r\n normalised first).
        buf = buf.replace(/\r\n?/g, '\n');
        while ((cut = buf.indexOf('\n\n')) >= 0) {
          this.sseBlock(buf.slice(0, cut));
          buf = buf.slice(cut + 2);
        }
        if (buf.length > 16 << 20) throw new Error('events: event too large');
      }
      throw new Error('events: stream ended');
    } catch (e) {
      if (ctl.signal.aborted) return;
      this.down();
      setTimeout(() => this.abort === ctl && this.connect(), this.backoff());
    }
  }

  sseBlock(block) {
    let type = 'message';
    let id = null;
    const data = [];
    for (const line of block.split('\n')) {
      if (!line || line.startsWith(':')) continue;
      const i = line.indexOf(':');
      const field = i < 0 ? line : line.slice(0, i);
      let val = i < 0 ? '' : line.slice(i + 1);
      if (val.startsWith(' ')) val = val.slice(1);
      if (field === 'event') type = val;
      else if (field === 'data') data.push(val);
      else if (field === 'id') id = val;
    }
    if (id !== null) this.lastId = id;
    if (data.length) this.raw(type, data.join('\n'));
  }

  raw(type, text) {
    let obj;
    try {
      obj = JSON.parse(text);
    } catch {
      return; // a malformed event is dropped, not fatal
    }
    if (!obj || typeof obj !== 'object') return;
    this.eventCount++;
    this.queue(type, obj);
  }

  queue(type, obj) {
    if (!this.pending) this.pending = { jobs: new Map(), workers: new Map(), logs: [], catalog: [], resync: false };
    const p = this.pending;
    if (type === 'job' && obj.id !== undefined) {
      this.jobs.set(obj.id, obj);
      p.jobs.set(obj.id, obj);
    } else if (type === 'worker' && (obj.id !== undefined || obj.name)) {
      const k = obj.id ?? obj.name;
      this.workers.set(k, obj);
      p.workers.set(k, obj);
    } else if (type === 'log') p.logs.push(obj);
    else if (type === 'catalog') p.catalog.push(obj);
    else if (type === 'resync') p.resync = true;
    this.schedule();
  }

  // One render per animation frame at most, and while events keep coming
  // at most one per MIN_GAP_MS: a long trickle of events (1,000 cancels over
  // several seconds) then costs a few renders, not one per frame.
  schedule() {
    if (this.frame || this.timer) return;
    const wait = (this.lastFlush || 0) + Live.MIN_GAP_MS - performance.now();
    if (wait > 0) {
      this.timer = setTimeout(() => {
        this.timer = 0;
        this.frame = requestAnimationFrame(() => this.flush());
      }, wait);
    } else this.frame = requestAnimationFrame(() => this.flush());
  }

  flush() {
    this.frame = 0;
    this.lastFlush = performance.now();
    const p = this.pending;
    this.pending = null;
    if (!p) return;
    const batch = { jobs: [...p.jobs.values()], workers: [...p.workers.values()], logs: p.logs, catalog: p.catalog, resync: p.resync };
    const t0 = performance.now();
    for (const fn of [...this.listeners]) {
      try {
        fn(batch);
      } catch (e) {
        console.error('view update failed', e);
      }
    }
    // How long view updates take (shown nowhere; read by the browser tests).
    const dt = performance.now() - t0;
    this.flushes = (this.flushes || 0) + 1;
    this.maxFlushMs = Math.max(this.maxFlushMs || 0, dt);
  }
}
