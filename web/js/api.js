// api.js - talking to kiln serve (docs/API.md). The token lives in
// localStorage under "kiln.token" and goes out as a Bearer header.

export const BASE = '/api/v1';
const TOKEN_KEY = 'kiln.token';

export function getToken() {
  try {
    return localStorage.getItem(TOKEN_KEY) || '';
  } catch {
    return '';
  }
}

export function setToken(t) {
  try {
    if (t) localStorage.setItem(TOKEN_KEY, t);
    else localStorage.removeItem(TOKEN_KEY);
  } catch {
    /* private mode: the token lasts for this page only */
  }
}

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

function headers(extra) {
  const hd = { Accept: 'application/json', ...extra };
  const t = getToken();
  if (t) hd.Authorization = `Bearer ${t}`;
  return hd;
}

async function errorFrom(res) {
  let code = `http_${res.status}`;
  let msg = `${res.status} ${res.statusText}`;
  try {
    const j = await res.json();
    if (j && j.error) {
      code = j.error.code || code;
      msg = j.error.message || msg;
    }
  } catch {
    /* not JSON: keep the status line */
  }
  if (res.status === 401) msg += ' - set a token (Token button, top right).';
  if (res.status === 403) msg += ' - your token may not do this.';
  return new ApiError(res.status, code, msg);
}

export async function get(path, params, opts = {}) {
  const q = params ? '?' + new URLSearchParams(Object.entries(params).filter(([, v]) => v !== '' && v !== null && v !== undefined)) : '';
  const res = await fetch(BASE + path + (q === '?' ? '' : q), { headers: headers(), signal: opts.signal });
  if (!res.ok) throw await errorFrom(res);
  if (res.status === 204) return null;
  return res.json();
}

export async function post(path, body) {
  const res = await fetch(BASE + path, {
    method: 'POST',
    headers: headers({ 'Content-Type': 'application/json' }),
    body: JSON.stringify(body === undefined ? {} : body),
  });
  if (!res.ok) throw await errorFrom(res);
  if (res.status === 204) return null;
  return res.json();
}

// Log bytes from offset; returns {text, size} where size is the new offset.
export async function getLog(id, offset, signal) {
  const res = await fetch(`${BASE}/jobs/${encodeURIComponent(id)}/log?offset=${offset}`, { headers: headers({ Accept: 'text/plain' }), signal });
  if (!res.ok) throw await errorFrom(res);
  const buf = await res.arrayBuffer();
  return { bytes: new Uint8Array(buf), size: offset + buf.byteLength };
}

export async function download(path, filename) {
  const res = await fetch(BASE + path, { headers: headers({ Accept: '*/*' }) });
  if (!res.ok) throw await errorFrom(res);
  const blob = await res.blob();
  const url = URL.createObjectURL(blob);
  const a = document.createElement('a');
  a.href = url;
  a.download = filename;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

// Lists in the API are objects with one array member; accept a bare array too.
export function listOf(obj, key) {
  if (Array.isArray(obj)) return obj;
  if (obj && Array.isArray(obj[key])) return obj[key];
  if (obj && typeof obj === 'object') {
    for (const v of Object.values(obj)) if (Array.isArray(v)) return v;
  }
  return [];
}
