/**
 * Fuzzing parseConnectRequest (src/transport/wt-auth.ts), the first code that reads a stranger's CONNECT:
 * arbitrary :path strings (URL-ish, unicode, the "//[" and "/\[" that made new URL() throw), arbitrary
 * headers (authorization, previous addresses, version; strings or lists), arbitrary HTTP/3 query payloads.
 * Properties: never throws; a refusal is 400, 401 or 404 with a QG_ERR_* code; whatever is accepted came
 * with the tunnel path and schema-valid credentials; well-formed requests round-trip.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { TUNNEL_PATH, credentialHeaders, credentialPath, parseConnectRequest, type Credentials } from '../../src/transport/wt-auth.js';

if (process.env.FC_SEED) fc.configureGlobal({ seed: Number(process.env.FC_SEED) });

const pathArb = fc.oneof(
  fc.string(),
  fc.string({ unit: 'grapheme' }),
  fc.constantFrom('//[', '/\\[', '//', '/', '', '?', '#', `${TUNNEL_PATH}?qg=`, `${TUNNEL_PATH}#x`, `//${TUNNEL_PATH}`, 'http://[', `${TUNNEL_PATH}?qg=%ZZ`),
  fc.tuple(fc.constantFrom(TUNNEL_PATH, '/', '//', '/\\'), fc.string()).map(([a, b]) => a + b),
  fc.webUrl({ withQueryParameters: true, withFragments: true }),
);
const headerValue = fc.oneof(fc.string(), fc.array(fc.string(), { maxLength: 3 }), fc.constant(undefined));
const headersArb = fc.record(
  {
    ':path': fc.oneof(pathArb, fc.array(pathArb, { maxLength: 2 })),
    authorization: fc.oneof(headerValue, fc.string().map((s) => `Basic ${s}`), fc.base64String().map((s) => `Basic ${s}`)),
    'x-quicgate-previous': headerValue,
    'x-quicgate-version': headerValue,
  },
  { requiredKeys: [] },
);
const credentialsArb: fc.Arbitrary<Credentials> = fc.record({
  user: fc.string({ minLength: 1, maxLength: 40 }).filter((u) => !u.includes(':')),
  password: fc.string({ maxLength: 60 }),
  previousAddresses: fc.array(fc.oneof(fc.ipV4(), fc.ipV6()), { maxLength: 4 }),
  clientVersion: fc.string({ maxLength: 20 }),
  resume: fc.constant(null),
});

describe('parseConnectRequest', () => {
  it('never throws on arbitrary requests and refuses with 400/401/404', () => {
    fc.assert(
      fc.property(headersArb, fc.option(fc.string()), fc.constantFrom('h2' as const, 'h3' as const), (header, peer, kind) => {
        const parsed = parseConnectRequest(peer === null ? { header } : { header, peerAddress: peer }, kind);
        if (parsed.ok) {
          expect(String(Array.isArray(header[':path']) ? header[':path'][0] : header[':path']).split(/[?#]/)[0]).toBe(TUNNEL_PATH);
          expect(parsed.request.user.length).toBeGreaterThan(0);
        } else {
          expect([400, 401, 404]).toContain(parsed.status);
          expect(parsed.code).toMatch(/^QG_ERR_/);
        }
      }),
      { numRuns: 3000 },
    );
  });

  it('the paths that made new URL() throw are answered 400', () => {
    for (const path of ['//[', '/\\[', 'http://[', '\\\\[']) {
      expect(parseConnectRequest({ header: { ':path': path } }, 'h3')).toMatchObject({ ok: false, status: 400 });
    }
  });

  it('round-trips well-formed credentials over both encodings, also after random query noise', () => {
    fc.assert(
      fc.property(credentialsArb, fc.string(), (credentials, noise) => {
        const viaHeaders = parseConnectRequest({ header: { ':path': TUNNEL_PATH, ...credentialHeaders(credentials) }, peerAddress: '192.0.2.1:4000' }, 'h2');
        const viaQuery = parseConnectRequest({ header: { ':path': `${credentialPath(credentials)}&n=${encodeURIComponent(noise)}` }, peerAddress: '[2001:db8::1]:4000' }, 'h3');
        for (const parsed of [viaHeaders, viaQuery]) {
          expect(parsed.ok).toBe(true);
          if (parsed.ok) expect(parsed.request).toMatchObject({ user: credentials.user, password: credentials.password, previousAddresses: credentials.previousAddresses });
        }
      }),
      { numRuns: 500 },
    );
  });
});
