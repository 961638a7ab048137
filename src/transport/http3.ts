/**
 * Run-time detection of the optional HTTP/3 transport (@fails-components/webtransport-transport-http3-quiche,
 * a native module that cannot be installed everywhere). The result is memoized; the caller logs it.
 */

export const HTTP3_PACKAGE = '@fails-components/webtransport-transport-http3-quiche';

export type Http3Support = { readonly available: true } | { readonly available: false; readonly reason: string };

let detection: Promise<Http3Support> | undefined;

/** Whether the HTTP/3 package imports, loads its native binary and exports what the library needs. */
export function detectHttp3(): Promise<Http3Support> {
  detection ??= probe();
  return detection;
}

async function probe(): Promise<Http3Support> {
  let mod: unknown;
  try {
    // A variable specifier: the package is optional and has no types here.
    const specifier: string = HTTP3_PACKAGE;
    mod = await import(specifier);
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    if (code === 'ERR_MODULE_NOT_FOUND') return { available: false, reason: `${HTTP3_PACKAGE} is not installed` };
    return { available: false, reason: `${HTTP3_PACKAGE} failed to load: ${err instanceof Error ? err.message : String(err)}` };
  }
  const api = mod as Record<string, unknown>;
  const needed = ['checkQuicheInit', 'Http3WebTransportServer', 'Http3WebTransportClient', 'Http3WebTransportServerSocket', 'Http3WebTransportClientSocket'];
  const missing = needed.filter((name) => typeof api[name] !== 'function');
  if (missing.length > 0) return { available: false, reason: `${HTTP3_PACKAGE} lacks ${missing.join(', ')}` };
  try {
    (api.checkQuicheInit as (args?: object) => void)({});
  } catch (err) {
    return { available: false, reason: `quiche did not initialise: ${err instanceof Error ? err.message : String(err)}` };
  }
  return { available: true };
}
