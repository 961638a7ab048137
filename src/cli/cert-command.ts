/**
 * `quicgate cert`: make (or show) the gateway's private CA and short-lived server certificate, and print what
 * clients need: the CA file to trust, or the certificate hash to pin.
 */
import { loadServerConfig } from '../config/load.js';
import { certificateNames } from '../gateway/server-tls.js';
import { CERT_FILES, ensureCertificates } from '../transport/certs.js';
import { join, resolve } from 'node:path';
import { rmSync } from 'node:fs';
import type { CertCliOptions } from './main.js';

export async function runCert(options: CertCliOptions): Promise<void> {
  const config = await loadServerConfig(options.config ?? null);
  const dataDir = options.dataDir === undefined ? config.dataDir : resolve(options.dataDir);
  if (options.renew) rmSync(join(dataDir, CERT_FILES.serverCert), { force: true });
  const material = await ensureCertificates(dataDir, { names: [...certificateNames(config), ...options.name] });
  const out = process.stdout;
  out.write(`CA certificate:     ${join(dataDir, CERT_FILES.caCert)}${material.created.ca ? ' (new)' : ''}\n`);
  out.write(`server certificate: ${join(dataDir, CERT_FILES.serverCert)}${material.created.server ? ' (new)' : ''}\n`);
  out.write(`valid until:        ${material.notAfter.toISOString()} (renewed by the running gateway before then)\n`);
  out.write(`sha-256 (pin):      ${material.certHash}\n`);
  out.write(`clients: ca_file: <copy of ${CERT_FILES.caCert}>   or   pinned_cert_hashes: [${material.certHash}]\n`);
}
