/**
 * The gateway's TLS material: the operator's certificate and key, or the generated private CA with a
 * short-lived (13-day) server certificate that is renewed before it expires and swapped into the listener
 * without a restart. The certificate names the listen address, the host name and every local address, so
 * clients can reach the gateway by any of them.
 */
import { readFile } from 'node:fs/promises';
import { hostname, networkInterfaces } from 'node:os';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { ServerConfig } from '../config/types.js';
import { QuicgateError } from '../errors.js';
import { BACKDATE_MS, CERT_FILES, SERVER_VALIDITY_DAYS, certificateHash, ensureCertificates, scheduleRenewal } from '../transport/certs.js';

/**
 * Test-only: renew the generated server certificate every this many seconds instead of 4 days before its
 * expiry (test/e2e/cert-renewal.test.ts renews under live sessions). Not a config key: no operator needs it.
 */
export const TEST_RENEW_EVERY_ENV = 'QUICGATE_TEST_CERT_RENEW_EVERY_S';

function renewBeforeDays(): { renewBeforeDays?: number } {
  const seconds = Number(process.env[TEST_RENEW_EVERY_ENV]);
  if (!Number.isFinite(seconds) || seconds <= 0) return {};
  // A new certificate has 13 days minus the backdating left: renew when `seconds` of that have passed.
  return { renewBeforeDays: (SERVER_VALIDITY_DAYS * 86_400_000 - BACKDATE_MS - seconds * 1000) / 86_400_000 };
}

export interface ServerTls {
  readonly certPem: string;
  readonly keyPem: string;
  /** Path of the CA clients should trust (generated material only). */
  readonly caFile: string | null;
  /** SHA-256 of the current server certificate, for clients that pin. */
  readonly pin: string;
  /** Where renewed certificates go (the listener's updateCertificate). */
  onRenewed(install: (certPem: string, keyPem: string) => void): void;
  stop(): void;
}

export function certificateNames(config: ServerConfig): string[] {
  const names = new Set<string>(['localhost', '127.0.0.1', '::1', hostname(), ...config.tls.names]);
  if (config.listen !== '0.0.0.0' && config.listen !== '::') names.add(config.listen);
  for (const addrs of Object.values(networkInterfaces())) {
    for (const a of addrs ?? []) if (!a.address.startsWith('fe80')) names.add(a.address);
  }
  return [...names];
}

export async function prepareServerTls(config: ServerConfig, logger: Logger): Promise<ServerTls> {
  if (config.tls.certFile !== null && config.tls.keyFile !== null) {
    const [certPem, keyPem] = await Promise.all([readPem(config.tls.certFile), readPem(config.tls.keyFile)]);
    return { certPem, keyPem, caFile: null, pin: certificateHash(certPem), onRenewed() {}, stop() {} };
  }
  const certificate = { names: certificateNames(config), ...renewBeforeDays() };
  const material = await ensureCertificates(config.dataDir, certificate);
  if (material.created.ca) logger.info({ dir: config.dataDir }, 'created a private CA for the gateway');
  if (material.created.server) logger.info({ notAfter: material.notAfter.toISOString() }, 'issued a server certificate');
  let install: ((certPem: string, keyPem: string) => void) | null = null;
  const schedule = (notAfter: Date): { cancel(): void } =>
    scheduleRenewal({
      dataDir: config.dataDir,
      certificate,
      notAfter,
      onRenewed: (renewed) => {
        install?.(renewed.certPem, renewed.keyPem);
        logger.info({ notAfter: renewed.notAfter.toISOString(), pin: renewed.certHash }, 'server certificate renewed');
        renewal.cancel();
        renewal = schedule(renewed.notAfter);
      },
      onError: (err) => logger.error({ err }, 'certificate renewal failed; will retry'),
    });
  let renewal = schedule(material.notAfter);
  return {
    certPem: material.certPem,
    keyPem: material.keyPem,
    caFile: join(config.dataDir, CERT_FILES.caCert),
    pin: material.certHash,
    onRenewed(fn) {
      install = fn;
    },
    stop() {
      renewal.cancel();
    },
  };
}

async function readPem(file: string): Promise<string> {
  try {
    return await readFile(file, 'utf8');
  } catch (err) {
    throw new QuicgateError('QG_ERR_TLS', `cannot read ${file}: ${(err as Error).message}`, { cause: err });
  }
}
