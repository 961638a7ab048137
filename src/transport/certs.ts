/**
 * TLS material of the gateway: a private CA (ECDSA P-256, 10 years) and a short-lived server certificate
 * (13 days: WebTransport hash pinning accepts at most 14) signed by it, kept as PEM in the data directory
 * and reused while valid. certificateHash() gives the SHA-256 of the DER for pinning; scheduleRenewal()
 * renews before expiry and hands the new pair to the server, which swaps it without a restart (HTTP/2:
 * tls setSecureContext through the library's updateCert).
 *
 * Generation uses @peculiar/x509 on node:crypto's webcrypto; checks of existing files use node's X509Certificate.
 */
import { X509Certificate, createHash, createPrivateKey, webcrypto } from 'node:crypto';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import path from 'node:path';
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';
import { systemClock, type Clock, type TimerHandle } from '../clock.js';
import { QuicgateError } from '../errors.js';

const DAY_MS = 24 * 60 * 60 * 1000;
export const CA_VALIDITY_DAYS = 3650;
export const SERVER_VALIDITY_DAYS = 13;
/** Renew the server certificate when less than this is left (also the renewal lead time). */
export const DEFAULT_RENEW_BEFORE_DAYS = 4;
/** A CA closer than this to expiry is replaced (clients must then get the new CA). */
const CA_MIN_REMAINING_DAYS = 30;
/** Validity starts a little in the past to tolerate clock skew between gateway and clients. */
/** notBefore lies this far in the past (clock skew), so a new server certificate has 13 days minus this left. */
export const BACKDATE_MS = 60 * 60 * 1000;
/** Longest single wait of the renewal timer (Node timers overflow past ~24.8 days). */
const MAX_TIMER_MS = 12 * 60 * 60 * 1000;

export const CERT_FILES = {
  caCert: 'ca.pem',
  caKey: 'ca-key.pem',
  serverCert: 'server.pem',
  serverKey: 'server-key.pem',
} as const;

export interface CertificateOptions {
  /** Hostnames and IP addresses the server certificate must name (listen address, public names...). */
  readonly names: readonly string[];
  readonly renewBeforeDays?: number;
  readonly clock?: Clock;
}

export interface CertificateMaterial {
  readonly caPem: string;
  readonly certPem: string;
  readonly keyPem: string;
  /** SHA-256 of the server certificate's DER, lowercase hex (for pinnedCertHashes). */
  readonly certHash: string;
  readonly notAfter: Date;
  /** Whether the CA or the server certificate was (re)made by this call. */
  readonly created: { readonly ca: boolean; readonly server: boolean };
}

const algorithm = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
type CryptoKey = webcrypto.CryptoKey;

/** SHA-256 of the DER of the first certificate in `pem`, lowercase hex. */
export function certificateHash(pem: string): string {
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(pem);
  } catch (err) {
    throw new QuicgateError('QG_ERR_TLS', 'not a PEM certificate', { cause: err });
  }
  return createHash('sha256').update(cert.raw).digest('hex');
}

/** The server certificate's expiry (for the renewal timer of operator-given certificates too). */
export function certificateNotAfter(pem: string): Date {
  return new Date(new X509Certificate(pem).validTo);
}

/** Load the CA and server certificate from `dataDir`, making or renewing whatever is missing or due. */
export async function ensureCertificates(dataDir: string, options: CertificateOptions): Promise<CertificateMaterial> {
  const clock = options.clock ?? systemClock;
  const now = clock.wallNow();
  const renewBeforeMs = (options.renewBeforeDays ?? DEFAULT_RENEW_BEFORE_DAYS) * DAY_MS;
  const names = serverNames(options.names);
  const file = (name: string): string => path.join(dataDir, name);
  try {
    await mkdir(dataDir, { recursive: true, mode: 0o700 });
    let ca = await loadPair(file(CERT_FILES.caCert), file(CERT_FILES.caKey));
    let caCreated = false;
    if (!ca || !isUsableCa(ca.cert, now)) {
      ca = await createCa(now);
      await writePem(file(CERT_FILES.caKey), ca.keyPem, 0o600);
      await writePem(file(CERT_FILES.caCert), ca.certPem, 0o644);
      caCreated = true;
    }
    let server = await loadPair(file(CERT_FILES.serverCert), file(CERT_FILES.serverKey));
    let serverCreated = false;
    if (caCreated || !server || !isUsableServerCert(server.cert, ca.cert, names, now, renewBeforeMs)) {
      server = await createServerCert(ca, names, now);
      await writePem(file(CERT_FILES.serverKey), server.keyPem, 0o600);
      await writePem(file(CERT_FILES.serverCert), server.certPem, 0o644);
      serverCreated = true;
    }
    return {
      caPem: ca.certPem,
      certPem: server.certPem,
      keyPem: server.keyPem,
      certHash: createHash('sha256').update(server.cert.raw).digest('hex'),
      notAfter: new Date(server.cert.validTo),
      created: { ca: caCreated, server: serverCreated },
    };
  } catch (err) {
    if (err instanceof QuicgateError) throw err;
    throw new QuicgateError('QG_ERR_TLS', `certificates in ${dataDir} could not be created or loaded: ${String(err)}`, { cause: err });
  }
}

export interface RenewalOptions {
  readonly dataDir: string;
  readonly certificate: CertificateOptions;
  /** Expiry of the certificate in use. */
  readonly notAfter: Date;
  /** Install the new pair (e.g. listener.updateCertificate); errors are reported to onError. */
  readonly onRenewed: (material: CertificateMaterial) => void | Promise<void>;
  readonly onError: (err: unknown) => void;
  readonly clock?: Clock;
}

/** Renew the generated server certificate `renewBeforeDays` before it expires, again and again. */
export function scheduleRenewal(options: RenewalOptions): { cancel(): void } {
  const clock = options.clock ?? options.certificate.clock ?? systemClock;
  const renewBeforeMs = (options.certificate.renewBeforeDays ?? DEFAULT_RENEW_BEFORE_DAYS) * DAY_MS;
  let notAfter = options.notAfter.getTime();
  let timer: TimerHandle | undefined;
  let cancelled = false;

  const arm = (): void => {
    if (cancelled) return;
    const due = notAfter - renewBeforeMs - clock.wallNow();
    timer = clock.setTimeout(() => void tick(), Math.max(0, Math.min(due, MAX_TIMER_MS)));
  };
  const tick = async (): Promise<void> => {
    if (cancelled) return;
    if (notAfter - renewBeforeMs > clock.wallNow()) return arm();
    try {
      const material = await ensureCertificates(options.dataDir, { ...options.certificate, clock });
      if (cancelled) return;
      notAfter = material.notAfter.getTime();
      await options.onRenewed(material);
    } catch (err) {
      options.onError(err);
      // Try again in an hour rather than spinning.
      notAfter = Math.max(notAfter, clock.wallNow() + renewBeforeMs + 60 * 60 * 1000);
    }
    arm();
  };
  arm();
  return {
    cancel() {
      cancelled = true;
      timer?.cancel();
    },
  };
}

interface Pair {
  readonly cert: X509Certificate;
  readonly certPem: string;
  readonly keyPem: string;
}

interface SigningPair extends Pair {
  readonly signingKey: CryptoKey;
}

function serverNames(extra: readonly string[]): string[] {
  const names = new Set<string>(['localhost', '127.0.0.1', '::1']);
  for (const name of extra) {
    const trimmed = name.trim();
    // Wildcard listen addresses are not names a client connects to.
    if (trimmed !== '' && trimmed !== '0.0.0.0' && trimmed !== '::') names.add(trimmed);
  }
  return [...names];
}

async function loadPair(certFile: string, keyFile: string): Promise<Pair | undefined> {
  let certPem: string;
  let keyPem: string;
  try {
    [certPem, keyPem] = await Promise.all([readFile(certFile, 'utf8'), readFile(keyFile, 'utf8')]);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  try {
    const cert = new X509Certificate(certPem);
    // A key that does not belong to the certificate is as good as none.
    if (!cert.checkPrivateKey(createPrivateKey(keyPem))) return undefined;
    return { cert, certPem, keyPem };
  } catch {
    return undefined;
  }
}

function isUsableCa(cert: X509Certificate, now: number): boolean {
  return cert.ca && Date.parse(cert.validTo) - now > CA_MIN_REMAINING_DAYS * DAY_MS && Date.parse(cert.validFrom) <= now + BACKDATE_MS;
}

function isUsableServerCert(cert: X509Certificate, ca: X509Certificate, names: readonly string[], now: number, renewBeforeMs: number): boolean {
  if (!cert.checkIssued(ca) || !cert.verify(ca.publicKey)) return false;
  if (Date.parse(cert.validTo) - now <= renewBeforeMs || Date.parse(cert.validFrom) > now + BACKDATE_MS) return false;
  if (Date.parse(cert.validTo) - Date.parse(cert.validFrom) > 14 * DAY_MS) return false;
  return names.every((name) => (isIP(name) ? cert.checkIP(name) !== undefined : cert.checkHost(name) !== undefined));
}

async function createCa(now: number): Promise<SigningPair> {
  const keys = await webcrypto.subtle.generateKey(algorithm, true, ['sign', 'verify']);
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial(),
    name: 'CN=quicgate private CA',
    notBefore: new Date(now - BACKDATE_MS),
    notAfter: new Date(now + CA_VALIDITY_DAYS * DAY_MS),
    signingAlgorithm: algorithm,
    keys,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  const certPem = withNewline(cert.toString('pem'));
  return { cert: new X509Certificate(certPem), certPem, keyPem: await exportKeyPem(keys.privateKey), signingKey: keys.privateKey };
}

async function createServerCert(ca: Pair, names: readonly string[], now: number): Promise<Pair> {
  const signingKey = 'signingKey' in ca ? (ca as SigningPair).signingKey : await importSigningKey(ca.keyPem);
  const keys = await webcrypto.subtle.generateKey(algorithm, true, ['sign', 'verify']);
  const caCert = new x509.X509Certificate(ca.certPem);
  const cn = names.find((name) => !isIP(name)) ?? 'localhost';
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serial(),
    subject: `CN=${cn}`,
    issuer: caCert.subject,
    notBefore: new Date(now - BACKDATE_MS),
    // 13 days from notBefore: the whole span stays within WebTransport's 14-day limit.
    notAfter: new Date(now - BACKDATE_MS + SERVER_VALIDITY_DAYS * DAY_MS),
    signingAlgorithm: algorithm,
    publicKey: keys.publicKey,
    signingKey,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
      new x509.SubjectAlternativeNameExtension(names.map((name) => (isIP(name) ? { type: 'ip' as const, value: name } : { type: 'dns' as const, value: name }))),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
      await x509.AuthorityKeyIdentifierExtension.create(caCert.publicKey),
    ],
  });
  const certPem = withNewline(cert.toString('pem'));
  return { cert: new X509Certificate(certPem), certPem, keyPem: await exportKeyPem(keys.privateKey) };
}

async function importSigningKey(pem: string): Promise<CryptoKey> {
  const der = x509.PemConverter.decodeFirst(pem);
  return webcrypto.subtle.importKey('pkcs8', der, { name: 'ECDSA', namedCurve: 'P-256' }, false, ['sign']);
}

async function exportKeyPem(key: CryptoKey): Promise<string> {
  const der = await webcrypto.subtle.exportKey('pkcs8', key);
  return withNewline(x509.PemConverter.encode(der, 'PRIVATE KEY'));
}

function serial(): string {
  const bytes = webcrypto.getRandomValues(new Uint8Array(16));
  bytes[0] = bytes[0]! & 0x7f; // positive
  return Buffer.from(bytes).toString('hex');
}

/** Write atomically (temp file + rename) so a crash never leaves half a key. */
async function writePem(file: string, pem: string, mode: number): Promise<void> {
  const temp = `${file}.${process.pid}.tmp`;
  await writeFile(temp, pem, { mode });
  await rename(temp, file);
}

function withNewline(pem: string): string {
  return pem.endsWith('\n') ? pem : `${pem}\n`;
}
