import { X509Certificate } from 'node:crypto';
import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { FakeClock } from '../../src/clock.js';
import { isQuicgateError } from '../../src/errors.js';
import { CERT_FILES, certificateHash, ensureCertificates, scheduleRenewal, type CertificateMaterial } from '../../src/transport/certs.js';

const DAY = 24 * 60 * 60 * 1000;
let dir: string;

beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'qg-certs-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('ensureCertificates', () => {
  it('makes a CA and a 13-day server certificate with the requested names, keys private', async () => {
    const clock = new FakeClock(Date.now());
    const m = await ensureCertificates(dir, { names: ['gw.example', '192.0.2.1'], clock });
    expect(m.created).toEqual({ ca: true, server: true });
    const ca = new X509Certificate(m.caPem);
    const cert = new X509Certificate(m.certPem);
    expect(ca.ca).toBe(true);
    expect(cert.checkIssued(ca) && cert.verify(ca.publicKey)).toBe(true);
    const span = Date.parse(cert.validTo) - Date.parse(cert.validFrom);
    expect(span).toBeLessThanOrEqual(14 * DAY);
    expect(span).toBeGreaterThanOrEqual(12 * DAY);
    for (const host of ['gw.example', 'localhost']) expect(cert.checkHost(host)).toBe(host);
    for (const ip of ['192.0.2.1', '127.0.0.1']) expect(cert.checkIP(ip)).toBe(ip);
    expect(cert.checkHost('other.example')).toBeUndefined();
    expect(m.certHash).toBe(cert.fingerprint256.replace(/:/g, '').toLowerCase());
    expect(certificateHash(m.certPem)).toBe(m.certHash);
    for (const key of [CERT_FILES.caKey, CERT_FILES.serverKey]) expect((await stat(path.join(dir, key))).mode & 0o777).toBe(0o600);
  });

  it('reuses valid files, and renews the server certificate (same CA) when names change or expiry nears', async () => {
    const clock = new FakeClock(Date.now());
    const first = await ensureCertificates(dir, { names: ['gw.example'], clock });
    const again = await ensureCertificates(dir, { names: ['gw.example'], clock });
    expect(again.created).toEqual({ ca: false, server: false });
    expect(again.certHash).toBe(first.certHash);
    const renamed = await ensureCertificates(dir, { names: ['gw.example', 'vpn.example'], clock });
    expect(renamed.created).toEqual({ ca: false, server: true });
    expect(renamed.caPem).toBe(first.caPem);
    clock.advance(10 * DAY);
    const later = await ensureCertificates(dir, { names: ['gw.example', 'vpn.example'], clock });
    expect(later.created.server).toBe(true);
    expect(later.notAfter.getTime()).toBeGreaterThan(renamed.notAfter.getTime());
  });

  it('replaces a server key that does not match its certificate', async () => {
    const first = await ensureCertificates(dir, { names: [] });
    expect(first.created.server).toBe(true);
    await writeFile(path.join(dir, CERT_FILES.serverKey), await ensureCertificatesKey());
    const next = await ensureCertificates(dir, { names: [] });
    expect(next.created.server).toBe(true);
  });

  it('refuses a PEM that is not a certificate with QG_ERR_TLS', () => {
    try {
      certificateHash('nope');
      expect.unreachable();
    } catch (err) {
      expect(isQuicgateError(err, 'QG_ERR_TLS')).toBe(true);
    }
  });
});

async function ensureCertificatesKey(): Promise<string> {
  const other = await mkdtemp(path.join(tmpdir(), 'qg-certs-other-'));
  try {
    return (await ensureCertificates(other, { names: [] })).keyPem;
  } finally {
    await rm(other, { recursive: true, force: true });
  }
}

describe('scheduleRenewal', () => {
  it('renews before expiry on the clock and hands over the new pair', async () => {
    const clock = new FakeClock(Date.now());
    const first = await ensureCertificates(dir, { names: [], clock });
    const renewed: CertificateMaterial[] = [];
    const renewal = scheduleRenewal({
      dataDir: dir,
      certificate: { names: [], clock, renewBeforeDays: 4 },
      notAfter: first.notAfter,
      clock,
      onRenewed: (m) => void renewed.push(m),
      onError: (err) => {
        throw err;
      },
    });
    clock.advance(8 * DAY);
    await new Promise((r) => setTimeout(r, 50));
    expect(renewed).toEqual([]);
    clock.advance(1.5 * DAY);
    await vi.waitFor(() => expect(renewed.length).toBe(1));
    expect(renewed[0]!.certHash).not.toBe(first.certHash);
    expect(renewed[0]!.notAfter.getTime()).toBeGreaterThan(first.notAfter.getTime());
    renewal.cancel();
    expect(clock.pendingTimers).toBe(0);
  });
});
