// Admin API request from inside the gateway's namespace (the API listens on its loopback).
// Usage: node hostile-admin.mjs METHOD URL [TOKEN]  -> prints {"status": n, "body": <json or text>}
const [method, url, token] = process.argv.slice(2);
try {
  const res = await fetch(url, { method, headers: token ? { authorization: `Bearer ${token}` } : {}, signal: AbortSignal.timeout(5000) });
  const text = await res.text();
  let body = text;
  try {
    body = JSON.parse(text);
  } catch {
    /* text, e.g. /metrics */
  }
  process.stdout.write(`${JSON.stringify({ status: res.status, body })}\n`);
} catch (err) {
  process.stdout.write(`${JSON.stringify({ status: 0, error: String(err) })}\n`);
}
