/**
 * Loading the server config and users files.
 *
 * Flow: read file (missing => QG_ERR_CONFIG_NOT_FOUND) -> YAML document (syntax errors with line/column)
 * -> zod shape check (schema.ts) -> users from `users:` or `users_file:` -> defaults merged (defaults.ts)
 * -> cross-field checks (schema.ts) -> frozen ServerConfig. All problems are collected and thrown together as
 * one QG_ERR_CONFIG_INVALID whose message has one line per problem:
 *   <file>:<line>:<column>: <field path>: <what was expected>
 *
 * saveUsersFile() edits the users file through the yaml Document API so comments and unchanged entries stay.
 */
import { readFile, rename, stat, writeFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Document, isMap, isNode, isScalar, isSeq, LineCounter, parseDocument, type YAMLMap } from 'yaml';
import type { z } from 'zod';
import { QuicgateError } from '../errors.js';
import { DEFAULTS_SOURCE, resolveServerConfig, resolveUser } from './defaults.js';
import {
  checkServerSemantics,
  describeValue,
  knownKeysAt,
  ServerFileSchema,
  UsersFileSchema,
  type UserEntry,
  type UserOrigin,
} from './schema.js';
import type { Bandwidth, ServerConfig, UserConfig } from './types.js';
import { formatRate, formatSize } from './units.js';

// ---- problems and their report ---------------------------------------------------------------------------

export type ConfigPath = readonly (string | number)[];

export interface ConfigIssue {
  readonly file: string;
  /** Field path as written in YAML, e.g. "users[2].bandwidth"; "" for the whole file. */
  readonly path: string;
  /** 1-based position in the file, when known. */
  readonly line: number | null;
  readonly column: number | null;
  readonly message: string;
}

/**
 * "users[2].bandwidth". A key that is not a plain word (a YAML complex key `? ...` may hold line breaks,
 * brackets, quotes) is written quoted and escaped, `listen["a\nb"]`, so the path stays on one line and reads
 * unambiguously.
 */
export function formatPath(path: ConfigPath): string {
  let out = '';
  for (const segment of path) {
    if (typeof segment === 'number') out += `[${segment}]`;
    else if (!PLAIN_KEY.test(segment)) out += `[${quoteKey(segment)}]`;
    else out += out === '' ? segment : `.${segment}`;
  }
  return out;
}

const PLAIN_KEY = /^[A-Za-z0-9_][A-Za-z0-9_-]*$/;

/** A key as a one-line, escaped, double-quoted string (JSON's escapes, plus the Unicode line breaks). */
export function quoteKey(key: string): string {
  return JSON.stringify(key).replace(/[\u0085\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

export function formatIssue(issue: ConfigIssue): string {
  const where = issue.line === null ? issue.file : `${issue.file}:${issue.line}:${issue.column ?? 1}`;
  // One line per problem, also when a quoted value has line breaks (e.g. a YAML block scalar).
  const message = issue.message.replace(/\r/g, '\\r').replace(/\n/g, '\\n');
  return issue.path === '' ? `${where}: ${message}` : `${where}: ${issue.path}: ${message}`;
}

/** The error thrown for any invalid config: message lists every problem, details.issues has them typed. */
export function configInvalid(unsorted: readonly ConfigIssue[]): QuicgateError {
  // Files in the order met, each top to bottom.
  const files = [...new Set(unsorted.map((i) => i.file))];
  const issues = [...unsorted].sort(
    (a, b) => files.indexOf(a.file) - files.indexOf(b.file) || (a.line ?? Infinity) - (b.line ?? Infinity) || (a.column ?? 0) - (b.column ?? 0),
  );
  const head = issues.length === 1 ? 'invalid configuration:' : `invalid configuration (${issues.length} problems):`;
  return new QuicgateError('QG_ERR_CONFIG_INVALID', [head, ...issues.map((i) => `  ${formatIssue(i)}`)].join('\n'), {
    details: { issues },
  });
}

/** A parsed YAML file, kept for positions of later (semantic) problems. */
export interface YamlSource {
  readonly file: string;
  readonly doc: Document.Parsed;
  readonly lines: LineCounter;
  /** Plain JS value of the document; {} for an empty file. */
  readonly value: unknown;
}

export async function readConfigFile(file: string): Promise<string> {
  try {
    return await readFile(file, 'utf8');
  } catch (err) {
    const reason = err instanceof Error && 'code' in err ? String(err.code) : 'unreadable';
    throw new QuicgateError('QG_ERR_CONFIG_NOT_FOUND', `configuration file ${file} cannot be read (${reason})`, {
      cause: err,
      details: { file },
    });
  }
}

/** Parses YAML text; syntax problems come back as issues with line and column. */
export function parseYamlSource(text: string, file: string): { source: YamlSource; issues: ConfigIssue[] } {
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: true, uniqueKeys: true });
  const issues: ConfigIssue[] = doc.errors.map((err) => {
    const pos = err.linePos?.[0];
    const message = err.message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, '');
    return { file, path: '', line: pos?.line ?? null, column: pos?.col ?? null, message: `YAML syntax error: ${message}` };
  });
  let value: unknown = {};
  if (issues.length === 0) {
    try {
      value = doc.toJS({ maxAliasCount: 100 }) ?? {};
    } catch (err) {
      // e.g. "Excessive alias count" (an alias bomb): a config problem, not a crash.
      issues.push({ file, path: '', line: null, column: null, message: `YAML cannot be read: ${err instanceof Error ? err.message : String(err)}` });
    }
  }
  if (issues.length === 0 && (typeof value !== 'object' || Array.isArray(value))) {
    issues.push({ file, path: '', line: 1, column: 1, message: `expected a mapping of keys at the top level, got ${describeValue(value)}` });
  }
  return { source: { file, doc, lines, value }, issues };
}

function position(source: YamlSource, path: ConfigPath, key?: string): { line: number | null; column: number | null } {
  const at = (offset: number): { line: number; column: number } => {
    const pos = source.lines.linePos(offset);
    return { line: pos.line, column: pos.col };
  };
  // The nearest node that exists: a value left at its default reports the section it belongs in.
  for (let n = path.length; n >= 0; n--) {
    const node: unknown = n === 0 ? source.doc.contents : source.doc.getIn(path.slice(0, n), true);
    if (key !== undefined && n === path.length && isMap(node)) {
      const keyNode = node.items.find((p) => isScalar(p.key) && p.key.value === key)?.key;
      if (isNode(keyNode) && keyNode.range) return at(keyNode.range[0]);
    }
    if (n > 0 && isNode(node) && node.range) return at(node.range[0]);
  }
  return { line: null, column: null };
}

export function issueAt(source: YamlSource | null, file: string, path: ConfigPath, message: string, key?: string): ConfigIssue {
  const pos = source ? position(source, path, key) : { line: null, column: null };
  return { file, path: formatPath(key === undefined ? path : [...path, key]), ...pos, message };
}

// Hand-written: a dozen lines for a typo hint do not justify a dependency.
function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      row[j] = Math.min(prev[j]! + 1, row[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = row;
  }
  return prev[b.length]!;
}

function unknownKeyMessage(key: string, known: readonly string[]): string {
  const close = known.filter((k) => editDistance(k, key) <= Math.max(1, Math.floor(k.length / 4)));
  const hint = close.length > 0 ? `; did you mean "${close[0]}"?` : '';
  return `unknown key ${quoteKey(key)}${hint} (expected one of: ${known.join(', ')})`;
}

const EXPECTED_NAMES: Readonly<Record<string, string>> = {
  string: 'a string',
  number: 'a number',
  int: 'a whole number',
  boolean: 'true or false',
  array: 'a list',
  object: 'a mapping',
};

/** Keys whose values must not be echoed into messages (and so into logs). */
const SECRET_KEYS = new Set(['password', 'token', 'password_hash']);

function zodMessage(issue: z.core.$ZodIssue, secret: boolean): string {
  const got = secret ? '' : 'input' in issue ? `, got ${describeValue(issue.input)}` : ', got nothing';
  switch (issue.code) {
    case 'invalid_type': {
      const expected = EXPECTED_NAMES[issue.expected] ?? issue.expected;
      return !('input' in issue) || issue.input === undefined ? `required: expected ${expected}` : `expected ${expected}${got}`;
    }
    case 'invalid_value':
      return `expected one of ${issue.values.map((v) => JSON.stringify(v)).join(', ')}${got}`;
    case 'too_small':
      if (issue.origin === 'number') return `expected a number ${issue.inclusive === false ? '>' : '>='} ${issue.minimum}${got}`;
      if (issue.origin === 'string' && issue.message.startsWith('expected')) return issue.message;
      if (issue.origin === 'string') return `expected at least ${issue.minimum} character(s)`;
      return `expected at least ${issue.minimum} item(s)`;
    case 'too_big':
      if (issue.origin === 'number') return `expected a number ${issue.inclusive === false ? '<' : '<='} ${issue.maximum}${got}`;
      return `expected at most ${issue.maximum}${issue.origin === 'string' ? ' characters' : ' items'}`;
    case 'invalid_format':
      return `${issue.message}${got}`;
    default:
      return issue.message;
  }
}

/** Zod issues as config issues: unknown keys one per key with a suggestion, positions from the YAML. */
export function issuesFromZod(schema: z.ZodType, error: z.ZodError, source: YamlSource | null, file: string): ConfigIssue[] {
  const out: ConfigIssue[] = [];
  for (const issue of error.issues) {
    const path = issue.path.filter((s): s is string | number => typeof s !== 'symbol');
    if (issue.code === 'unrecognized_keys') {
      const known = knownKeysAt(schema, path);
      for (const key of issue.keys) out.push(issueAt(source, file, path, unknownKeyMessage(key, known), key));
    } else {
      out.push(issueAt(source, file, path, zodMessage(issue, SECRET_KEYS.has(String(path.at(-1))))));
    }
  }
  return out;
}

/** Validate `source.value` against `schema`; issues are returned, never thrown. */
export function validate<S extends z.ZodType>(
  schema: S,
  source: YamlSource,
): { ok: true; value: z.output<S> } | { ok: false; issues: ConfigIssue[] } {
  const result = schema.safeParse(source.value, { reportInput: true });
  if (result.success) return { ok: true, value: result.data };
  return { ok: false, issues: issuesFromZod(schema, result.error, source, source.file) };
}

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}

// ---- users files -----------------------------------------------------------------------------------------

export interface UsersFileOptions {
  /** Bandwidth of users that set none (the server's default_bandwidth); unlimited when not given. */
  readonly defaultBandwidth?: Bandwidth;
}

interface ParsedUsers {
  readonly source: YamlSource;
  readonly entries: readonly UserEntry[];
}

function parseUsersSource(text: string, file: string): { parsed: ParsedUsers | null; issues: ConfigIssue[] } {
  const { source, issues } = parseYamlSource(text, file);
  if (issues.length > 0) return { parsed: null, issues };
  const result = validate(UsersFileSchema, source);
  if (!result.ok) return { parsed: null, issues: result.issues };
  return { parsed: { source, entries: result.value.users }, issues: [] };
}

/** Checks that need only the users: unique names (static addresses need the networks: server load). */
function checkUserNames(entries: readonly UserEntry[], source: YamlSource): ConfigIssue[] {
  const seen = new Map<string, number>();
  const issues: ConfigIssue[] = [];
  entries.forEach((u, i) => {
    const first = seen.get(u.name.toLowerCase());
    if (first === undefined) seen.set(u.name.toLowerCase(), i);
    else {
      const message = `duplicate user name "${u.name}" (also users[${first}]); names must be unique, ignoring case`;
      issues.push(issueAt(source, source.file, ['users', i, 'name'], message));
    }
  });
  return issues;
}

/** Text of a users file as typed users; throws QG_ERR_CONFIG_INVALID. */
export function parseUsersText(text: string, sourceName: string, options: UsersFileOptions = {}): UserConfig[] {
  const file = resolve(sourceName);
  const { parsed, issues } = parseUsersSource(text, file);
  if (parsed === null) throw configInvalid(issues);
  const nameIssues = checkUserNames(parsed.entries, parsed.source);
  if (nameIssues.length > 0) throw configInvalid(nameIssues);
  return deepFreeze(parsed.entries.map((u) => resolveUser(u, options.defaultBandwidth ?? null)));
}

/** Reads a users file (`users: [...]`). Static addresses are checked against the pools only by a server load. */
export async function loadUsersFile(path: string, options: UsersFileOptions = {}): Promise<UserConfig[]> {
  const file = resolve(path);
  return parseUsersText(await readConfigFile(file), file, options);
}

function sameJson(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

/** Sets or deletes `key` in `map` so that it reads as `wanted`; `undefined` deletes. */
function setKey(doc: Document, map: YAMLMap, key: string, wanted: unknown): void {
  if (wanted === undefined) map.delete(key);
  else map.set(key, doc.createNode(wanted));
}

/** Writes the fields of `user` into `map` that differ from `current` (what the map says now). */
function writeUser(doc: Document, map: YAMLMap, user: UserConfig, current: UserConfig | null): void {
  const changed = <K extends keyof UserConfig>(k: K): boolean => current === null || !sameJson(current[k], user[k]);
  if (current === null) map.set('name', user.name);
  if (changed('passwordHash')) map.set('password_hash', user.passwordHash);
  // Always explicit for new users: an omitted bandwidth would silently follow the server's default.
  if (changed('bandwidth')) map.set('bandwidth', formatRate(user.bandwidth, { exact: true }));
  if (changed('burst')) setKey(doc, map, 'burst', user.burst === null ? undefined : formatSize(user.burst, { exact: true }));
  if (changed('maxSessions')) setKey(doc, map, 'max_sessions', user.maxSessions ?? undefined);
  if (changed('staticAddresses')) setKey(doc, map, 'static_addresses', user.staticAddresses.length > 0 ? [...user.staticAddresses] : undefined);
  if (changed('disabled')) setKey(doc, map, 'disabled', user.disabled ? true : undefined);
  if (changed('quota')) {
    const q = user.quota;
    setKey(
      doc,
      map,
      'quota',
      q === null
        ? undefined
        : {
            bytes: formatSize(q.bytes, { exact: true }),
            period: q.period,
            action: q.action,
            ...(q.action === 'throttle' && q.throttleRate !== null ? { throttle_rate: formatRate(q.throttleRate, { exact: true }) } : {}),
          },
    );
  }
}

/**
 * Writes `users` to a users file, in that order. An existing file is edited in place: comments, key order and
 * the spelling of unchanged values stay (spacing may be normalised); users not in `users` are removed. The result is validated before it
 * is written (atomically, via rename), so a bad call leaves the old file untouched. New files get mode 0600.
 */
export async function saveUsersFile(path: string, users: readonly UserConfig[], options: UsersFileOptions = {}): Promise<void> {
  const file = resolve(path);
  const defaultBandwidth = options.defaultBandwidth ?? null;
  let text: string | null = null;
  let mode = 0o600;
  try {
    mode = (await stat(file)).mode & 0o777;
    text = await readFile(file, 'utf8');
  } catch (err) {
    if (!(err instanceof Error && 'code' in err && err.code === 'ENOENT')) throw readConfigFileError(file, err);
  }

  let doc: Document;
  const current = new Map<string, { map: YAMLMap; user: UserConfig }>();
  if (text === null) {
    doc = new Document({ users: [] });
    doc.commentBefore = ' quicgate users; see docs/config.md. Passwords are stored as scrypt hashes.';
  } else {
    const { parsed, issues } = parseUsersSource(text, file);
    if (parsed === null) throw configInvalid(issues);
    doc = parsed.source.doc;
    const seq = doc.get('users');
    if (isSeq(seq)) {
      seq.items.forEach((item, i) => {
        const entry = parsed.entries[i];
        if (isMap(item) && entry) current.set(entry.name, { map: item, user: resolveUser(entry, defaultBandwidth) });
      });
    }
  }

  const unchanged =
    text !== null &&
    users.length === current.size &&
    users.every((u, i) => [...current.keys()][i] === u.name && sameJson(current.get(u.name)?.user, u));
  if (unchanged) return; // nothing to do; also spares the file yaml's whitespace normalisation

  const items = users.map((user) => {
    const existing = current.get(user.name);
    const map = existing?.map ?? (doc.createNode({}) as YAMLMap);
    writeUser(doc, map, user, existing?.user ?? null);
    return map;
  });
  let seq = doc.get('users');
  if (!isSeq(seq)) {
    seq = doc.createNode([]);
    doc.set('users', seq);
  }
  if (isSeq(seq)) seq.items = items;

  const out = doc.toString();
  parseUsersText(out, file, options); // what we write must load
  const temp = `${file}.${process.pid}.tmp`;
  await writeFile(temp, out, { mode });
  await rename(temp, file);
}

function readConfigFileError(file: string, err: unknown): QuicgateError {
  return new QuicgateError('QG_ERR_CONFIG_NOT_FOUND', `configuration file ${file} cannot be read`, { cause: err, details: { file } });
}

// ---- server config ---------------------------------------------------------------------------------------

/** config/users.example.yaml of this package, used only when no server file is given at all. */
export const EXAMPLE_USERS_FILE = fileURLToPath(new URL('../../config/users.example.yaml', import.meta.url));

/**
 * Server config from YAML text. `sourceName` is the file name shown in messages; relative paths (users_file,
 * tls, data_dir) are relative to its directory. Reads `users_file` if the text names one.
 */
export async function parseServerConfigText(text: string, sourceName: string): Promise<ServerConfig> {
  const file = resolve(sourceName);
  const baseDir = dirname(file);
  const { source, issues } = parseYamlSource(text, file);
  if (issues.length > 0) throw configInvalid(issues);
  const result = validate(ServerFileSchema, source);
  if (!result.ok) issues.push(...result.issues);

  // The users file is read even when the server file has problems, so that one run reports both.
  const named = result.ok ? result.value.users_file : stringAt(source.value, 'users_file');
  let userEntries: readonly UserEntry[] = result.ok ? (result.value.users ?? []) : [];
  let usersSource: YamlSource = source;
  let usersFile: string | null = null;
  if (named !== undefined) {
    if (result.ok && result.value.users !== undefined) {
      issues.push(issueAt(source, file, ['users_file'], 'expected either users or users_file, not both'));
    }
    usersFile = resolve(baseDir, named);
    const users = parseUsersSource(await readConfigFile(usersFile), usersFile);
    if (users.parsed === null) issues.push(...users.issues);
    else {
      userEntries = users.parsed.entries;
      usersSource = users.parsed.source;
    }
  }
  if (!result.ok || issues.length > 0) throw configInvalid(issues);

  const config = resolveServerConfig(result.value, { source: file, baseDir, userEntries, usersFile });
  return checked(config, userEntries.map((_, index) => ({ file: usersSource.file, index })), [source, usersSource]);
}

function stringAt(value: unknown, key: string): string | undefined {
  const v = typeof value === 'object' && value !== null ? (value as Record<string, unknown>)[key] : undefined;
  return typeof v === 'string' && v !== '' ? v : undefined;
}

function checked(config: ServerConfig, origins: readonly UserOrigin[], sources: readonly YamlSource[]): ServerConfig {
  const problems = checkServerSemantics(config, origins);
  if (problems.length > 0) {
    throw configInvalid(problems.map((p) => issueAt(sources.find((s) => s.file === p.file) ?? null, p.file, p.path, p.message)));
  }
  return deepFreeze(config);
}

/**
 * Loads the server config. With no path: the embedded defaults, with the example users of
 * config/users.example.yaml (passwords published in that file: for trying quicgate out only).
 */
export async function loadServerConfig(path: string | null = null): Promise<ServerConfig> {
  if (path !== null) {
    const file = resolve(path);
    return parseServerConfigText(await readConfigFile(file), file);
  }
  const users = parseUsersSource(await readConfigFile(EXAMPLE_USERS_FILE), EXAMPLE_USERS_FILE);
  if (users.parsed === null) throw configInvalid(users.issues);
  const config = resolveServerConfig(
    {},
    { source: DEFAULTS_SOURCE, baseDir: process.cwd(), userEntries: users.parsed.entries, usersFile: null },
  );
  return checked(config, users.parsed.entries.map((_, index) => ({ file: EXAMPLE_USERS_FILE, index })), [users.parsed.source]);
}
