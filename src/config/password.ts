/**
 * Password hashes: scrypt from node:crypto, stored as a self-describing string
 *   $scrypt$ln=<log2 N>,r=<r>,p=<p>$<salt, base64>$<key, base64>
 * so that parameters can be raised later without breaking stored hashes.
 */
import { randomBytes, scrypt, timingSafeEqual, type ScryptOptions } from 'node:crypto';

export interface ScryptParams {
  /** log2 of the CPU/memory cost N */
  readonly ln: number;
  readonly r: number;
  readonly p: number;
}

export const DEFAULT_SCRYPT: ScryptParams = { ln: 15, r: 8, p: 1 };
const KEY_LENGTH = 32;
const PATTERN = /^\$scrypt\$ln=(\d{1,2}),r=(\d{1,2}),p=(\d{1,2})\$([A-Za-z0-9+/]+={0,2})\$([A-Za-z0-9+/]+={0,2})$/;

function scryptAsync(password: string, salt: Buffer, keylen: number, params: ScryptParams): Promise<Buffer> {
  const N = 2 ** params.ln;
  const options: ScryptOptions = { N, r: params.r, p: params.p, maxmem: 256 * N * params.r + 1024 * 1024 };
  return new Promise((resolve, reject) => {
    scrypt(password, salt, keylen, options, (err, key) => (err ? reject(err) : resolve(key)));
  });
}

export async function hashPassword(password: string, params: ScryptParams = DEFAULT_SCRYPT): Promise<string> {
  const salt = randomBytes(16);
  const key = await scryptAsync(password, salt, KEY_LENGTH, params);
  return `$scrypt$ln=${params.ln},r=${params.r},p=${params.p}$${salt.toString('base64')}$${key.toString('base64')}`;
}

export interface ParsedHash {
  readonly params: ScryptParams;
  readonly salt: Buffer;
  readonly key: Buffer;
}

/** Returns null when the string is not a hash this module understands. */
export function parsePasswordHash(encoded: string): ParsedHash | null {
  const m = PATTERN.exec(encoded);
  if (!m) return null;
  const params = { ln: Number(m[1]), r: Number(m[2]), p: Number(m[3]) };
  if (params.ln < 1 || params.ln > 22 || params.r < 1 || params.p < 1) return null;
  const salt = Buffer.from(m[4]!, 'base64');
  const key = Buffer.from(m[5]!, 'base64');
  if (salt.length < 8 || key.length < 16) return null;
  return { params, salt, key };
}

export function isPasswordHash(encoded: string): boolean {
  return parsePasswordHash(encoded) !== null;
}

// Fixed hashes that no password matches, checked for unknown users so that a wrong user name and a wrong
// password take the same time. One per parameter set: the decoy must cost what the real users' hashes cost.
const decoys = new Map<string, ParsedHash>();
function decoy(params: ScryptParams): ParsedHash {
  const id = `${params.ln},${params.r},${params.p}`;
  let hash = decoys.get(id);
  if (hash === undefined) {
    hash = { params, salt: Buffer.alloc(16, 7), key: Buffer.alloc(KEY_LENGTH, 0) };
    decoys.set(id, hash);
  }
  return hash;
}

/**
 * Constant-time check of a password against an encoded hash. `encoded === null` (unknown user) still runs
 * scrypt and returns false: with the parameters of `decoyLike` (pass a configured user's hash, so that an
 * unknown name costs what a wrong password costs), else the default parameters.
 */
export async function verifyPassword(password: string, encoded: string | null, decoyLike: string | null = null): Promise<boolean> {
  const real = encoded === null ? null : parsePasswordHash(encoded);
  const parsed = real ?? decoy((decoyLike === null ? null : parsePasswordHash(decoyLike))?.params ?? DEFAULT_SCRYPT);
  const key = await scryptAsync(password, parsed.salt, parsed.key.length, parsed.params);
  const match = timingSafeEqual(key, parsed.key);
  return match && real !== null;
}
