/**
 * SQLite for the session history: one narrow, synchronous interface over two drivers.
 *
 *   node:sqlite (DatabaseSync, built into Node >= 22.13 / >= 23.4, no addon) ── used wherever the running Node has it
 *   better-sqlite3 12 (addon built against V8's ABI)                         ── fallback where it is missing (Node 20)
 *
 * better-sqlite3 is loaded lazily and only on the fallback path: on Node 22/24 its binary (built for whatever Node
 * ran `npm install`) is never loaded. That matters: better-sqlite3 12 is not N-API, and on Node 24 it aborts the
 * process (`Assertion failed: (env) != nullptr` in node::RemoveEnvironmentCleanupHook) when the GC frees a
 * statement; better-sqlite3 13 fixes that but needs Node >= 22 and crashes on Node 20.
 *
 * The adapter gives both drivers the same behaviour for what the history uses:
 *   - parameters: either positional `?` values or ONE plain object for named ones (`@x`, `:x`, `$x`; keys
 *     without the prefix). Checked here for both drivers, with better-sqlite3's rules: a missing named
 *     parameter or a wrong number of positional values is a RangeError, extra keys are ignored, `undefined`
 *     binds NULL, anything but null/number/bigint/string/Uint8Array is a TypeError. (node:sqlite alone would
 *     bind NULL for a missing one, throw on extra keys and on undefined.) `?NNN` and mixing both kinds in one
 *     statement are refused at prepare().
 *   - prepare() takes exactly one statement (node:sqlite alone would silently ignore the rest).
 *   - get()/all() on a statement without results run it and return undefined/[] (better-sqlite3 alone throws).
 *   - results: rows are plain objects, integers JS numbers (an integer outside the safe range is a RangeError
 *     on node:sqlite; better-sqlite3 rounds it: the history's counters and times are far below 2^53), BLOBs
 *     Buffers; run() returns { changes, lastInsertRowid } as numbers.
 *   - errors from SQLite are SqliteError with better-sqlite3's `code` names (extended result codes, e.g.
 *     'SQLITE_BUSY', 'SQLITE_CONSTRAINT_NOTNULL', 'SQLITE_NOTADB'); node:sqlite's ERR_SQLITE_ERROR (numeric
 *     `errcode`) is mapped onto them. Binding mistakes stay TypeError/RangeError.
 *   - transaction(fn, mode): BEGIN <mode> … COMMIT, ROLLBACK when fn throws, SAVEPOINTs when nested.
 *   - the busy timeout is set the same way on both (default 5000 ms, better-sqlite3's default).
 *   - close() may be called twice; using a closed database or its statements is a TypeError.
 *
 * ExperimentalWarning: on Node 22 loading node:sqlite prints one line, "ExperimentalWarning: SQLite is an
 * experimental feature and might change at any time" (Node 24 marks it a release candidate and prints nothing).
 * We leave it: it is true on that Node (we rely on an API Node 22 calls experimental), it is printed once per
 * process, and filtering it would mean replacing the process-global process.emitWarning, a side effect on every
 * other module's warnings. Operators who want it gone can pass --disable-warning=ExperimentalWarning (see
 * docs/operations.md). Which driver is in use is logged at debug level when the history opens.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import type BetterSqlite3 from 'better-sqlite3';

export type SqliteDriverName = 'node:sqlite' | 'better-sqlite3';
export type SqliteValue = null | number | bigint | string | Uint8Array;
export type SqliteRow = Record<string, SqliteValue>;
export type TransactionMode = 'deferred' | 'immediate' | 'exclusive';

export interface RunResult {
  readonly changes: number;
  readonly lastInsertRowid: number;
}

export interface SqliteStatement {
  /** Named parameters: one plain object, keys without the prefix (`{ id }` for `@id`). Else positional values. */
  run(named: object): RunResult;
  run(...positional: SqliteValue[]): RunResult;
  /** The first row (a plain object, column → value), undefined if none. Unknown: the caller checks its shape. */
  get(named: object): unknown;
  get(...positional: SqliteValue[]): unknown;
  all(named: object): unknown[];
  all(...positional: SqliteValue[]): unknown[];
}

export interface SqliteDatabase {
  readonly driver: SqliteDriverName;
  /** One or more statements, no parameters, no results. */
  exec(sql: string): void;
  /** Exactly one statement (a CREATE TRIGGER with a body, whose `;`s this does not parse, goes through exec()). */
  prepare(sql: string): SqliteStatement;
  /** `PRAGMA <source>`: all rows (`quick_check`, `table_info(t)`, …). */
  pragma(source: string): SqliteRow[];
  /** `PRAGMA <source>`: the first column of the first row (`journal_mode = WAL` → 'wal'), undefined if none. */
  pragmaValue(source: string): SqliteValue | undefined;
  /** Runs fn in a transaction (a savepoint when nested): committed if it returns, rolled back if it throws. */
  transaction<T>(fn: () => T, mode?: TransactionMode): T;
  /** Idempotent. */
  close(): void;
}

export interface OpenOptions {
  /** Open read-only; the file must exist. Default false (read-write, created if missing). */
  readonly readonly?: boolean;
  /** How long a statement waits for another connection's lock before SQLITE_BUSY. Default 5000. */
  readonly timeoutMs?: number;
  /** Tests only: force a driver instead of the one this Node gets. */
  readonly driver?: SqliteDriverName;
}

const DEFAULT_TIMEOUT_MS = 5000;
const TRANSACTION_MODES: readonly TransactionMode[] = ['deferred', 'immediate', 'exclusive'];

/** An error reported by SQLite, the same shape from both drivers. */
export class SqliteError extends Error {
  /** better-sqlite3's name of the (extended) result code: 'SQLITE_BUSY', 'SQLITE_CONSTRAINT_NOTNULL', … */
  readonly code: string;

  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'SqliteError';
    this.code = code;
  }
}

// ── choosing the driver ──────────────────────────────────────────────────────────────────────────────────

let nodeSqliteProbe: NodeSqliteModule | null | undefined;
let betterSqlite: typeof BetterSqlite3 | undefined;

/** node:sqlite if the running Node has it without flags, else null. Loads it (once) but never better-sqlite3. */
function nodeSqlite(): NodeSqliteModule | null {
  if (nodeSqliteProbe === undefined) {
    // getBuiltinModule (Node >= 20.16) returns undefined for a module this Node does not have, without throwing
    // or printing anything, and bypasses loaders (tsx, vitest) that may not know the `node:`-only `sqlite`.
    const mod = process.getBuiltinModule?.('node:sqlite') as Partial<NodeSqliteModule> | undefined;
    // StatementSync#iterate arrived with the unflagged module (22.13, 23.4): an older one behind
    // --experimental-sqlite lacks options we rely on (readOnly), so it counts as missing.
    nodeSqliteProbe =
      typeof mod?.DatabaseSync === 'function' && typeof mod.StatementSync?.prototype?.iterate === 'function'
        ? (mod as NodeSqliteModule)
        : null;
  }
  return nodeSqliteProbe;
}

/** The driver openDatabase uses on this Node. */
export function sqliteDriver(): SqliteDriverName {
  return nodeSqlite() !== null ? 'node:sqlite' : 'better-sqlite3';
}

export function nodeSqliteAvailable(): boolean {
  return nodeSqlite() !== null;
}

/** Opens (creating unless readonly) a database file, or ':memory:'. Throws SqliteError (SQLITE_CANTOPEN, …). */
export function openDatabase(file: string, options: OpenOptions = {}): SqliteDatabase {
  const driver = options.driver ?? sqliteDriver();
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  if (!Number.isSafeInteger(timeoutMs) || timeoutMs < 0) throw new RangeError(`invalid busy timeout ${timeoutMs}`);
  const readonly = options.readonly ?? false;
  if (file !== ':memory:' && file !== '' && !existsSync(path.dirname(path.resolve(file)))) {
    // better-sqlite3 throws a TypeError here, node:sqlite SQLITE_CANTOPEN: both become the latter.
    throw new SqliteError('SQLITE_CANTOPEN', `unable to open database file: directory ${path.dirname(file)} does not exist`);
  }
  const conn = driver === 'node:sqlite' ? openNodeSqlite(file, readonly, timeoutMs) : openBetterSqlite(file, readonly, timeoutMs);
  return new Database(conn);
}

// ── the common layer ─────────────────────────────────────────────────────────────────────────────────────

/** What a driver has to provide; arguments arrive checked, errors leave raw (translated by the caller). */
interface Connection {
  readonly driver: SqliteDriverName;
  exec(sql: string): void;
  prepare(sql: string): RawStatement;
  /** undefined when the driver cannot tell (node:sqlite before 22.16). */
  inTransaction(): boolean | undefined;
  close(): void;
  translate(err: unknown): unknown;
}

interface RawStatement {
  run(args: readonly unknown[]): { changes: number | bigint; lastInsertRowid: number | bigint };
  get(args: readonly unknown[]): unknown;
  all(args: readonly unknown[]): unknown[];
}

class Database implements SqliteDatabase {
  readonly driver: SqliteDriverName;
  private isOpen = true;
  private depth = 0;

  constructor(private readonly conn: Connection) {
    this.driver = conn.driver;
  }

  exec(sql: string): void {
    this.call(() => this.conn.exec(sql));
  }

  prepare(sql: string): SqliteStatement {
    this.assertOpen();
    const params = scanParameters(sql);
    const raw = this.call(() => this.conn.prepare(sql));
    return new Statement(this, raw, params);
  }

  pragma(source: string): SqliteRow[] {
    return this.prepare(`PRAGMA ${source}`).all() as SqliteRow[];
  }

  pragmaValue(source: string): SqliteValue | undefined {
    const row = this.prepare(`PRAGMA ${source}`).get() as SqliteRow | undefined;
    return row === undefined ? undefined : Object.values(row)[0];
  }

  transaction<T>(fn: () => T, mode: TransactionMode = 'deferred'): T {
    this.assertOpen();
    if (!TRANSACTION_MODES.includes(mode)) throw new TypeError(`unknown transaction mode ${String(mode)}`);
    const nested = this.conn.inTransaction() ?? this.depth > 0;
    const savepoint = `qg_tx_${this.depth}`;
    this.exec(nested ? `SAVEPOINT ${savepoint}` : `BEGIN ${mode.toUpperCase()}`);
    this.depth++;
    try {
      const result = fn();
      if (typeof (result as { then?: unknown } | null)?.then === 'function') {
        throw new TypeError('a transaction function cannot return a promise');
      }
      this.exec(nested ? `RELEASE ${savepoint}` : 'COMMIT');
      return result;
    } catch (err) {
      // SQLite may have rolled back already (SQLITE_FULL, I/O errors): then there is nothing to undo.
      if (this.isOpen && this.conn.inTransaction() !== false) {
        try {
          this.exec(nested ? `ROLLBACK TO ${savepoint}; RELEASE ${savepoint}` : 'ROLLBACK');
        } catch {
          // no transaction left to roll back; the original error says what went wrong
        }
      }
      throw err;
    } finally {
      this.depth--;
    }
  }

  close(): void {
    if (!this.isOpen) return;
    this.isOpen = false;
    this.call(() => this.conn.close(), true);
  }

  /** Runs a driver call with the database open, translating the driver's errors. */
  call<T>(fn: () => T, closing = false): T {
    if (!closing) this.assertOpen();
    try {
      return fn();
    } catch (err) {
      throw this.conn.translate(err);
    }
  }

  private assertOpen(): void {
    if (!this.isOpen) throw new TypeError('The database connection is not open');
  }
}

class Statement implements SqliteStatement {
  constructor(
    private readonly db: Database,
    private readonly raw: RawStatement,
    private readonly params: ParamInfo,
  ) {}

  run(...args: unknown[]): RunResult {
    const bound = bindArguments(this.params, args, this.db.driver);
    const r = this.db.call(() => this.raw.run(bound));
    return { changes: Number(r.changes), lastInsertRowid: Number(r.lastInsertRowid) };
  }

  get(...args: unknown[]): unknown {
    const bound = bindArguments(this.params, args, this.db.driver);
    const row = this.db.call(() => this.raw.get(bound));
    return row === undefined ? undefined : plainRow(row);
  }

  all(...args: unknown[]): unknown[] {
    const bound = bindArguments(this.params, args, this.db.driver);
    return this.db.call(() => this.raw.all(bound)).map(plainRow);
  }
}

/** node:sqlite rows have a null prototype and BLOBs as Uint8Array: make them what better-sqlite3 returns. */
function plainRow(row: unknown): SqliteRow {
  if (Object.getPrototypeOf(row) === Object.prototype) return row as SqliteRow; // better-sqlite3: as is
  const out: SqliteRow = {};
  for (const [key, value] of Object.entries(row as SqliteRow)) {
    // defineProperty, not assignment: a column may be called __proto__
    Object.defineProperty(out, key, { value: toBuffer(value), enumerable: true, writable: true, configurable: true });
  }
  return out;
}

function toBuffer(value: SqliteValue): SqliteValue {
  return value instanceof Uint8Array && !Buffer.isBuffer(value) ? Buffer.from(value.buffer, value.byteOffset, value.byteLength) : value;
}

// ── parameters ───────────────────────────────────────────────────────────────────────────────────────────

interface ParamInfo {
  /** Number of `?` placeholders. */
  readonly positional: number;
  /** Named placeholders in order of first appearance: the name in the SQL (with prefix) and its key (without). */
  readonly named: ReadonlyArray<{ readonly sqlName: string; readonly key: string }>;
}

const NAME_CHAR = /[\p{L}\p{N}_$]/u;

/**
 * Finds the statement's parameters with SQLite's lexical rules (strings, quoted identifiers and comments
 * skipped) and checks that the text holds one statement. The drivers do not expose sqlite3_bind_parameter_name
 * uniformly, so the adapter reads the placeholders itself (once per prepare).
 */
export function scanParameters(sql: string): ParamInfo {
  let positional = 0;
  const named: Array<{ sqlName: string; key: string }> = [];
  const seen = new Set<string>();
  let statements = 0;
  let inStatement = false;
  let i = 0;
  const n = sql.length;
  const skipTo = (close: string, from: number): number => {
    // quoted text: a doubled closing quote is an escaped one (except for [ ])
    for (let j = from; j < n; j++) {
      if (sql[j] !== close) continue;
      if (close !== ']' && sql[j + 1] === close) {
        j++;
        continue;
      }
      return j + 1;
    }
    return n;
  };
  while (i < n) {
    const c = sql[i]!;
    if (c === '-' && sql[i + 1] === '-') {
      const end = sql.indexOf('\n', i);
      i = end === -1 ? n : end + 1;
      continue;
    }
    if (c === '/' && sql[i + 1] === '*') {
      const end = sql.indexOf('*/', i + 2);
      i = end === -1 ? n : end + 2;
      continue;
    }
    if (/\s/.test(c)) {
      i++;
      continue;
    }
    if (c === ';') {
      if (inStatement) statements++;
      inStatement = false;
      i++;
      continue;
    }
    if (!inStatement && statements > 0) throw new RangeError('The supplied SQL string contains more than one statement');
    inStatement = true;
    if (c === "'" || c === '"' || c === '`' || c === '[') {
      i = skipTo(c === '[' ? ']' : c, i + 1);
      continue;
    }
    if (c === '?') {
      let j = i + 1;
      while (j < n && sql[j]! >= '0' && sql[j]! <= '9') j++;
      if (j > i + 1) throw new RangeError(`numbered parameters are not supported (${sql.slice(i, j)})`);
      positional++;
      i = j;
      continue;
    }
    if ((c === '@' || c === ':' || c === '$') && i + 1 < n && NAME_CHAR.test(sql[i + 1]!)) {
      let j = i + 1;
      while (j < n && NAME_CHAR.test(sql[j]!)) j++;
      const sqlName = sql.slice(i, j);
      if (!seen.has(sqlName)) {
        seen.add(sqlName);
        named.push({ sqlName, key: sqlName.slice(1) });
      }
      i = j;
      continue;
    }
    if (NAME_CHAR.test(c)) {
      // a word: skip it whole, so `$` inside an identifier is not read as a parameter
      let j = i + 1;
      while (j < n && NAME_CHAR.test(sql[j]!)) j++;
      i = j;
      continue;
    }
    i++;
  }
  if (inStatement) statements++;
  if (statements === 0) throw new RangeError('The supplied SQL string contains no statements');
  if (positional > 0 && named.length > 0) {
    throw new RangeError('a statement takes either positional (?) or named parameters, not both');
  }
  return { positional, named };
}

/** Checks the call's arguments against the statement and returns what the driver gets. */
function bindArguments(params: ParamInfo, args: readonly unknown[], driver: SqliteDriverName): unknown[] {
  if (params.named.length === 0) {
    if (args.length === 1 && isPlainObject(args[0])) throw new TypeError('This statement has no named parameters');
    if (args.length !== params.positional) {
      throw new RangeError(`Too ${args.length < params.positional ? 'few' : 'many'} parameter values were provided`);
    }
    return args.map(bindValue);
  }
  const obj = args[0];
  if (args.length === 0) throw new TypeError('Missing named parameters');
  if (args.length !== 1) throw new RangeError('Too many parameter values were provided');
  if (!isPlainObject(obj)) throw new TypeError('Named parameters can only be passed within plain objects');
  const bound: Record<string, unknown> = Object.create(null) as Record<string, unknown>;
  for (const { sqlName, key } of params.named) {
    if (!Object.hasOwn(obj, key)) throw new RangeError(`Missing named parameter "${key}"`);
    // node:sqlite gets the exact SQL names (no bare-name lookup, no unknown keys); better-sqlite3 bare keys.
    bound[driver === 'node:sqlite' ? sqlName : key] = bindValue((obj as Record<string, unknown>)[key]);
  }
  return [bound];
}

function bindValue(value: unknown): SqliteValue {
  if (value === undefined || value === null) return null;
  switch (typeof value) {
    case 'number':
    case 'bigint':
    case 'string':
      return value;
    default:
      if (value instanceof Uint8Array) return value;
      throw new TypeError('SQLite3 can only bind numbers, strings, bigints, buffers, and null');
  }
}

function isPlainObject(value: unknown): value is object {
  if (typeof value !== 'object' || value === null) return false;
  const proto: unknown = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

// ── node:sqlite ──────────────────────────────────────────────────────────────────────────────────────────

// The part of node:sqlite used here (@types/node follows the oldest supported Node, 20, which has none).
interface NodeSqliteModule {
  DatabaseSync: new (file: string, options?: { readOnly?: boolean }) => NodeSqliteDatabase;
  StatementSync: { prototype: { iterate?: unknown } };
}
interface NodeSqliteDatabase {
  exec(sql: string): void;
  prepare(sql: string): NodeSqliteStatement;
  close(): void;
  /** Node >= 22.16 / 24. */
  readonly isTransaction?: boolean;
}
interface NodeSqliteStatement {
  run(...args: unknown[]): { changes: number | bigint; lastInsertRowid: number | bigint };
  get(...args: unknown[]): unknown;
  all(...args: unknown[]): unknown[];
}

function openNodeSqlite(file: string, readonly: boolean, timeoutMs: number): Connection {
  const mod = nodeSqlite();
  if (mod === null) throw new Error('node:sqlite is not available on this Node');
  let db: NodeSqliteDatabase;
  try {
    db = new mod.DatabaseSync(file, { readOnly: readonly });
  } catch (err) {
    throw translateNodeSqlite(err);
  }
  try {
    // The `timeout` option exists only from 22.16; the pragma sets the same sqlite3_busy_timeout everywhere.
    db.exec(`PRAGMA busy_timeout = ${timeoutMs}`);
  } catch (err) {
    db.close();
    throw translateNodeSqlite(err);
  }
  return {
    driver: 'node:sqlite',
    exec: (sql) => db.exec(sql),
    prepare: (sql) => {
      const st = db.prepare(sql);
      return {
        run: (args) => st.run(...args),
        get: (args) => st.get(...args),
        all: (args) => st.all(...args),
      };
    },
    inTransaction: () => db.isTransaction,
    close: () => db.close(),
    translate: translateNodeSqlite,
  };
}

function translateNodeSqlite(err: unknown): unknown {
  const e = err as { code?: unknown; errcode?: unknown; errstr?: unknown; message?: unknown } | null;
  if (e?.code !== 'ERR_SQLITE_ERROR') return err;
  const message = typeof e.message === 'string' ? e.message : String(err);
  const code =
    typeof e.errcode === 'number' ? resultCodeName(e.errcode) : primaryCodeFromText(typeof e.errstr === 'string' ? e.errstr : message);
  return new SqliteError(code, message, { cause: err });
}

// ── better-sqlite3 (fallback) ────────────────────────────────────────────────────────────────────────────

function openBetterSqlite(file: string, readonly: boolean, timeoutMs: number): Connection {
  // Loaded here, on first use, never at import: on a Node with node:sqlite this line does not run.
  betterSqlite ??= createRequire(import.meta.url)('better-sqlite3') as typeof BetterSqlite3;
  let db: BetterSqlite3.Database;
  try {
    db = new betterSqlite(file, { readonly, timeout: timeoutMs });
  } catch (err) {
    throw translateBetterSqlite(err);
  }
  return {
    driver: 'better-sqlite3',
    exec: (sql) => void db.exec(sql),
    prepare: (sql) => {
      const st = db.prepare(sql);
      // better-sqlite3 refuses get()/all() on a statement without results (`PRAGMA synchronous = NORMAL`,
      // an UPDATE); node:sqlite runs it and returns nothing. The adapter does the latter on both.
      if (!st.reader) {
        return {
          run: (args) => st.run(...args),
          get: (args) => void st.run(...args),
          all: (args) => (st.run(...args), []),
        };
      }
      return {
        run: (args) => st.run(...args),
        get: (args) => st.get(...args),
        all: (args) => st.all(...args),
      };
    },
    inTransaction: () => db.inTransaction,
    close: () => void db.close(),
    translate: translateBetterSqlite,
  };
}

function translateBetterSqlite(err: unknown): unknown {
  if (!(err instanceof Error) || err.name !== 'SqliteError') return err;
  const code = (err as { code?: unknown }).code;
  return new SqliteError(typeof code === 'string' ? code : 'SQLITE_ERROR', err.message, { cause: err });
}

// ── result codes (sqlite3.h) ─────────────────────────────────────────────────────────────────────────────

const PRIMARY_CODES = [
  'OK', 'ERROR', 'INTERNAL', 'PERM', 'ABORT', 'BUSY', 'LOCKED', 'NOMEM', 'READONLY', 'INTERRUPT', 'IOERR', 'CORRUPT',
  'NOTFOUND', 'FULL', 'CANTOPEN', 'PROTOCOL', 'EMPTY', 'SCHEMA', 'TOOBIG', 'CONSTRAINT', 'MISMATCH', 'MISUSE', 'NOLFS',
  'AUTH', 'FORMAT', 'RANGE', 'NOTADB', 'NOTICE', 'WARNING',
] as const;

/** Extended codes: entry k of a list is `primary | (k+1) << 8` (an empty entry is an unused number). */
const EXTENDED_CODES: Readonly<Record<string, readonly string[]>> = {
  ERROR: ['MISSING_COLLSEQ', 'RETRY', 'SNAPSHOT', 'RESERVESIZE', 'KEY', 'UNABLE'],
  IOERR: [
    'READ', 'SHORT_READ', 'WRITE', 'FSYNC', 'DIR_FSYNC', 'TRUNCATE', 'FSTAT', 'UNLOCK', 'RDLOCK', 'DELETE', 'BLOCKED',
    'NOMEM', 'ACCESS', 'CHECKRESERVEDLOCK', 'LOCK', 'CLOSE', 'DIR_CLOSE', 'SHMOPEN', 'SHMSIZE', 'SHMLOCK', 'SHMMAP',
    'SEEK', 'DELETE_NOENT', 'MMAP', 'GETTEMPPATH', 'CONVPATH', 'VNODE', 'AUTH', 'BEGIN_ATOMIC', 'COMMIT_ATOMIC',
    'ROLLBACK_ATOMIC', 'DATA', 'CORRUPTFS', 'IN_PAGE', 'BADKEY', 'CODEC',
  ],
  LOCKED: ['SHAREDCACHE', 'VTAB'],
  BUSY: ['RECOVERY', 'SNAPSHOT', 'TIMEOUT'],
  CANTOPEN: ['NOTEMPDIR', 'ISDIR', 'FULLPATH', 'CONVPATH', 'DIRTYWAL', 'SYMLINK'],
  CORRUPT: ['VTAB', 'SEQUENCE', 'INDEX'],
  READONLY: ['RECOVERY', 'CANTLOCK', 'ROLLBACK', 'DBMOVED', 'CANTINIT', 'DIRECTORY'],
  ABORT: ['', 'ROLLBACK'],
  CONSTRAINT: [
    'CHECK', 'COMMITHOOK', 'FOREIGNKEY', 'FUNCTION', 'NOTNULL', 'PRIMARYKEY', 'TRIGGER', 'UNIQUE', 'VTAB', 'ROWID',
    'PINNED', 'DATATYPE',
  ],
  NOTICE: ['RECOVER_WAL', 'RECOVER_ROLLBACK', 'RBU'],
  WARNING: ['AUTOINDEX'],
  AUTH: ['USER'],
};

/** 5 → 'SQLITE_BUSY', 1299 → 'SQLITE_CONSTRAINT_NOTNULL' (better-sqlite3's names). */
export function resultCodeName(code: number): string {
  const primary = PRIMARY_CODES[code & 0xff];
  if (primary === undefined) return `UNKNOWN_SQLITE_ERROR_${code}`;
  const ext = code >> 8;
  if (ext === 0) return `SQLITE_${primary}`;
  const suffix = EXTENDED_CODES[primary]?.[ext - 1];
  return suffix ? `SQLITE_${primary}_${suffix}` : `UNKNOWN_SQLITE_ERROR_${code}`;
}

// sqlite3_errstr() of the primary codes the history tells apart, for an error without a numeric errcode.
const ERRSTR_CODES: ReadonlyArray<readonly [RegExp, string]> = [
  [/database is locked/, 'SQLITE_BUSY'],
  [/database table is locked/, 'SQLITE_LOCKED'],
  [/database disk image is malformed/, 'SQLITE_CORRUPT'],
  [/file is not a database/, 'SQLITE_NOTADB'],
  [/attempt to write a readonly database/, 'SQLITE_READONLY'],
  [/unable to open database file/, 'SQLITE_CANTOPEN'],
  [/database or disk is full/, 'SQLITE_FULL'],
  [/disk I\/O error/, 'SQLITE_IOERR'],
  [/constraint failed|cannot store .* value in .* column/, 'SQLITE_CONSTRAINT'],
  [/datatype mismatch/, 'SQLITE_MISMATCH'],
  [/string or blob too big/, 'SQLITE_TOOBIG'],
];

function primaryCodeFromText(text: string): string {
  return ERRSTR_CODES.find(([re]) => re.test(text))?.[1] ?? 'SQLITE_ERROR';
}
