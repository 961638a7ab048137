import { describe, expect, it } from 'vitest';
import { encodeConnectLine, parseConnectLine } from '../../src/transport/quic-auth.js';

const credentials = { user: 'alice', password: 'pw:with:colons', previousAddresses: ['198.18.0.2', '2001:db8:1::2'], clientVersion: 'quicgate/0.1.0', resume: { sessionId: 's-1', secret: 'x'.repeat(40) } };

describe('QUIC connect line', () => {
  it('round-trips the credentials into a ConnectRequest of transport quic', () => {
    const line = encodeConnectLine(credentials);
    expect(line.endsWith('\n')).toBe(true);
    const parsed = parseConnectLine(line.trimEnd(), '[2001:db8::7]:50000');
    expect(parsed).toEqual({
      ok: true,
      request: { ...credentials, sourceAddress: '2001:db8::7', peer: '[2001:db8::7]:50000', transport: 'quic' },
    });
  });

  it('refuses what is not a connect line (400) and bad credentials (401), never throws', () => {
    for (const line of ['', 'not json', '{"type":"keepalive","t":1}', 'null', '[1]', 'x'.repeat(20_000)]) {
      expect(parseConnectLine(line, '192.0.2.7:1')).toMatchObject({ ok: false, status: 400, code: 'QG_ERR_PROTOCOL' });
    }
    for (const bad of [{ user: '' }, { previousAddresses: ['not-an-ip'] }, { resume: { sessionId: '', secret: 'x' } }]) {
      const line = JSON.stringify({ type: 'connect', ...credentials, ...bad });
      expect(parseConnectLine(line, '192.0.2.7:1')).toMatchObject({ ok: false, status: 401, code: 'QG_ERR_AUTH_FAILED' });
    }
  });
});
