'use strict';
// Plain-Node baseline for `npm run bench` (bench/run.ts): the same job as Flowmesh's
// POST /flows and GET /flows?hour=N with no framework: node:http + Map, one process.
// Lean but honest: type/range checks, all-or-nothing batches, sums past 2^53-1 refused.
const http = require('node:http');
const MAX_BODY = 8 * 1024 * 1024, MAX = Number.MAX_SAFE_INTEGER;
const hours = new Map(); // hour -> Map(length-prefixed "src_app dest_app vpc_id" -> flow)
const str = (s) => typeof s === 'string' && s.length >= 1 && s.length <= 256;
const int = (n) => Number.isSafeInteger(n) && n >= 0;
const ok = (r) => r !== null && typeof r === 'object' && str(r.src_app) && str(r.dest_app) &&
  str(r.vpc_id) && int(r.hour) && int(r.bytes_tx) && int(r.bytes_rx);
const keyOf = (r) => r.src_app.length + ':' + r.src_app + r.dest_app.length + ':' + r.dest_app + r.vpc_id;
const cmp = (a, b) => a.src_app < b.src_app ? -1 : a.src_app > b.src_app ? 1 : a.dest_app < b.dest_app ? -1 :
  a.dest_app > b.dest_app ? 1 : a.vpc_id < b.vpc_id ? -1 : a.vpc_id > b.vpc_id ? 1 : 0;
function send(res, status, value) {
  const body = JSON.stringify(value);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}
function post(req, res) {
  if (!/^application\/json\b/i.test(req.headers['content-type'] ?? '')) { req.resume(); return send(res, 415, { message: 'JSON only' }); }
  const chunks = []; let size = 0;
  req.on('data', (c) => { size += c.length; if (size <= MAX_BODY) chunks.push(c); });
  req.on('end', () => {
    if (size > MAX_BODY) return send(res, 413, { message: 'body too large' });
    let recs;
    try { recs = JSON.parse(Buffer.concat(chunks, size).toString('utf8')); } catch { return send(res, 400, { message: 'invalid JSON' }); }
    if (!Array.isArray(recs)) recs = [recs];
    if (recs.length < 1 || recs.length > 10000) return send(res, 400, { message: 'batch must hold 1..10000 records' });
    for (let i = 0; i < recs.length; i++) if (!ok(recs[i])) return send(res, 400, { message: `bad record ${i}` });
    for (let i = 0; i < recs.length; i++) {
      const r = recs[i];
      let hour = hours.get(r.hour);
      if (hour === undefined) hours.set(r.hour, (hour = new Map()));
      const k = keyOf(r);
      let f = hour.get(k);
      if (f === undefined) hour.set(k, (f = { src_app: r.src_app, dest_app: r.dest_app, vpc_id: r.vpc_id, hour: r.hour, bytes_tx: 0, bytes_rx: 0 }));
      if (f.bytes_tx + r.bytes_tx > MAX || f.bytes_rx + r.bytes_rx > MAX) { // undo records 0..i-1, refuse the batch
        for (let j = 0; j < i; j++) { const u = hours.get(recs[j].hour).get(keyOf(recs[j])); u.bytes_tx -= recs[j].bytes_tx; u.bytes_rx -= recs[j].bytes_rx; }
        return send(res, 400, { message: `record ${i}: sum would exceed 2^53-1` });
      }
      f.bytes_tx += r.bytes_tx; f.bytes_rx += r.bytes_rx;
    }
    send(res, 200, { accepted: recs.length });
  });
}
http.createServer((req, res) => {
  if (req.method === 'POST' && req.url === '/flows') return post(req, res);
  const url = new URL(req.url, 'http://localhost'), q = url.searchParams.get('hour');
  if (url.pathname === '/health') return send(res, 200, { status: 'ok' });
  if (url.pathname !== '/flows' || req.method !== 'GET') return send(res, 404, { message: 'not found' });
  if (q === null || !/^\d+$/.test(q) || !int(Number(q))) return send(res, 400, { message: 'hour must be an integer >= 0' });
  send(res, 200, Array.from(hours.get(Number(q))?.values() ?? []).sort(cmp));
}).listen(Number(process.env.PORT) || 3000, '127.0.0.1');
