/**
 * Fuzzing the server config loader: random YAML-ish text and random mutations of config/server.example.yaml.
 * Whatever the text, parseServerConfigText either returns a config or rejects with a QuicgateError of code
 * QG_ERR_CONFIG_INVALID (message naming the file) or QG_ERR_CONFIG_NOT_FOUND (message naming the missing
 * file). Never another exception, never a hang.
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parseServerConfigText } from '../../src/config/load.js';
import { QuicgateError } from '../../src/errors.js';

const EXAMPLE = resolve(import.meta.dirname, '../../config/server.example.yaml');
const EXAMPLE_TEXT = readFileSync(EXAMPLE, 'utf8');
const EXAMPLE_USERS = resolve(import.meta.dirname, '../../config/users.example.yaml');
const INLINE = resolve(import.meta.dirname, '../fixtures/config/fuzz-inline.yaml');

type Outcome = 'ok' | 'QG_ERR_CONFIG_INVALID' | 'QG_ERR_CONFIG_NOT_FOUND';

/** Runs the loader and checks the error contract; returns what happened. */
async function load(text: string, source: string): Promise<Outcome> {
  // The yaml library warns (process warning) about collection keys; that is not an error of ours.
  try {
    const config = await parseServerConfigText(text, source);
    expect(config.source).toBe(source);
    expect(Object.isFrozen(config)).toBe(true);
    return 'ok';
  } catch (err) {
    if (!(err instanceof QuicgateError)) throw new Error(`non-QuicgateError for ${JSON.stringify(text).slice(0, 300)}: ${String(err)}`, { cause: err });
    if (err.code === 'QG_ERR_CONFIG_INVALID') {
      // Every problem line names the file it is in: the server file itself, or the users file it names.
      const lines = err.message.split('\n').slice(1);
      expect(lines.length).toBeGreaterThan(0);
      for (const line of lines) expect(line.includes(source) || line.includes(EXAMPLE_USERS)).toBe(true);
      return err.code;
    }
    if (err.code === 'QG_ERR_CONFIG_NOT_FOUND') {
      expect(err.message).toMatch(/configuration file .+ cannot be read/s); // a file name may hold a line break
      return err.code;
    }
    throw new Error(`unexpected code ${err.code}: ${err.message}`, { cause: err });
  }
}

const KEYS = [
  'listen', 'address', 'port', 'tls', 'cert_file', 'key_file', 'tunnel', 'name', 'mtu', 'ipv4', 'ipv6', 'network', 'gateway',
  'dns', 'routes', 'default_bandwidth', 'limits', 'max_sessions_per_user', 'idle_timeout', 'at_limit', 'keepalive_interval',
  'shaping_delay', 'send_queue_packets', 'transports', 'h2', 'h3', 'auth_attempts', 'per_source_per_minute', 'admin', 'token',
  'history', 'enabled', 'retention_days', 'users', 'password_hash', 'bandwidth', 'quota', 'bytes', 'period', 'users_file', 'data_dir',
];
const VALUES = [
  '0', '-1', '65536', '1e309', 'NaN', '.inf', '~', 'null', 'true', 'yes', '""', "''", '[]', '{}', '20 Mbit/s', '10 mbps', '1.5h',
  '5m', '0.5 B', '64 KiB', '198.18.0.0/16', '::/0', "'::/0'", '2001:db8::1', '300.1.1.1', '0.0.0.0', 'unlimited', 'reject',
  '&a x', '*a', '*nope', '!!binary aGk=', '!!str 5', '!!map {}', '"\\u0000"', '"\\ud800"', 'x'.repeat(300), '1'.repeat(40),
  '|\n  block', '>-\n  folded', '[1, [2, [3, [4]]]]', '{a: {b: {c: {}}}}', '- a\n- b', '? complex\n: key',
];
const TOKENS = [':', ' ', '  ', '\n', '\t', '-', '- ', '#', '"', "'", '[', ']', '{', '}', ',', '&', '*', '!', '|', '>', '%', '@', '`', '?', '<<'];

const yamlish = fc
  .array(
    fc.oneof(
      { weight: 3, arbitrary: fc.constantFrom(...KEYS).map((k) => `${k}:`) },
      { weight: 3, arbitrary: fc.constantFrom(...VALUES) },
      { weight: 3, arbitrary: fc.constantFrom(...TOKENS) },
      { weight: 1, arbitrary: fc.string({ maxLength: 12 }) },
      { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 6 }) },
    ),
    { maxLength: 60 },
  )
  .map((parts) => parts.join(''));

/** A line-level or character-level edit of the example file. */
const mutation = fc.oneof(
  fc.record({ kind: fc.constant('deleteLine' as const), at: fc.nat() }),
  fc.record({ kind: fc.constant('duplicateLine' as const), at: fc.nat() }),
  fc.record({ kind: fc.constant('swapLines' as const), at: fc.nat(), other: fc.nat() }),
  fc.record({ kind: fc.constant('replaceValue' as const), at: fc.nat(), value: fc.constantFrom(...VALUES) }),
  fc.record({ kind: fc.constant('reindent' as const), at: fc.nat(), indent: fc.integer({ min: 0, max: 7 }) }),
  fc.record({ kind: fc.constant('insertChars' as const), at: fc.nat(), text: fc.oneof(fc.constantFrom(...TOKENS), fc.string({ maxLength: 4 })) }),
  fc.record({ kind: fc.constant('deleteChars' as const), at: fc.nat(), count: fc.integer({ min: 1, max: 20 }) }),
  fc.record({ kind: fc.constant('truncate' as const), at: fc.nat() }),
);
type Mutation = typeof mutation extends fc.Arbitrary<infer T> ? T : never;

function mutate(text: string, edits: readonly Mutation[]): string {
  let lines = text.split('\n');
  for (const edit of edits) {
    const i = lines.length === 0 ? 0 : edit.at % lines.length;
    const line = lines[i] ?? '';
    switch (edit.kind) {
      case 'deleteLine':
        lines.splice(i, 1);
        break;
      case 'duplicateLine':
        lines.splice(i, 0, line);
        break;
      case 'swapLines': {
        const j = lines.length === 0 ? 0 : edit.other % lines.length;
        [lines[i], lines[j]] = [lines[j] ?? '', line];
        break;
      }
      case 'replaceValue': {
        const colon = line.indexOf(':');
        lines[i] = colon < 0 ? `${line} ${edit.value}` : `${line.slice(0, colon + 1)} ${edit.value}`;
        break;
      }
      case 'reindent':
        lines[i] = ' '.repeat(edit.indent) + line.trimStart();
        break;
      default: {
        const flat = lines.join('\n');
        const at = flat.length === 0 ? 0 : edit.at % flat.length;
        const next =
          edit.kind === 'insertChars' ? flat.slice(0, at) + edit.text + flat.slice(at)
          : edit.kind === 'deleteChars' ? flat.slice(0, at) + flat.slice(at + edit.count)
          : flat.slice(0, at);
        lines = next.split('\n');
      }
    }
  }
  return lines.join('\n');
}

describe('config loader under fuzz', () => {
  it('loads the unmutated example (the baseline the mutations start from)', async () => {
    expect(await load(EXAMPLE_TEXT, EXAMPLE)).toBe('ok');
  });

  it('answers random YAML-ish text with a config or a config error only', async () => {
    const seen = new Set<Outcome>();
    await fc.assert(
      fc.asyncProperty(yamlish, async (text) => {
        seen.add(await load(text, INLINE));
      }),
      { numRuns: 1000 },
    );
    expect(seen.has('QG_ERR_CONFIG_INVALID')).toBe(true);
  });

  it('answers arbitrary unicode and binary text with a config or a config error only', async () => {
    await fc.assert(
      fc.asyncProperty(fc.oneof(fc.string({ unit: 'binary', maxLength: 400 }), fc.string({ unit: 'grapheme', maxLength: 400 })), async (text) => {
        await load(text, INLINE);
      }),
      { numRuns: 800 },
    );
  });

  it('answers random mutations of config/server.example.yaml with a config or a config error only', async () => {
    const seen = new Set<Outcome>();
    await fc.assert(
      fc.asyncProperty(fc.array(mutation, { minLength: 1, maxLength: 4 }), async (edits) => {
        seen.add(await load(mutate(EXAMPLE_TEXT, edits), EXAMPLE));
      }),
      { numRuns: 1000 },
    );
    // Both kinds of outcome are reached: the fuzzer is not stuck on one path.
    expect(seen.has('ok')).toBe(true);
    expect(seen.has('QG_ERR_CONFIG_INVALID')).toBe(true);
  });

  it('refuses an alias bomb as an invalid config (found by fuzzing: it threw a bare ReferenceError)', async () => {
    const bomb = ['a: &a [x,x,x,x,x,x,x,x,x,x]', 'b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]', 'c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]', 'd: [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]'].join('\n');
    const err = await parseServerConfigText(bomb, INLINE).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(QuicgateError);
    expect((err as QuicgateError).code).toBe('QG_ERR_CONFIG_INVALID');
    expect((err as QuicgateError).message).toContain(INLINE);
    expect((err as QuicgateError).message).toMatch(/alias/i);
  });

  it('names the missing users file when a mutation points users_file elsewhere', async () => {
    const text = EXAMPLE_TEXT.replace('users_file: users.example.yaml', 'users_file: no-such-users.yaml');
    const err = await parseServerConfigText(text, EXAMPLE).catch((e: unknown) => e);
    expect((err as QuicgateError).code).toBe('QG_ERR_CONFIG_NOT_FOUND');
    expect((err as QuicgateError).message).toContain('no-such-users.yaml');
  });
});
