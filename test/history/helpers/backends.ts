/**
 * The store tests run on both backends: `useBackend(name)` registers the hooks (a temp data dir per test; for
 * postgres one real server per file, started by the test, and a fresh database per test) and gives a way to
 * open stores on it and to read its rows as an operator would, over a connection of its own.
 * SQL given to rows() must suit both (quote "user").
 */
import path from 'node:path';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, beforeEach } from 'vitest';
import type { HistoryConfig } from '../../../src/config/types.js';
import type { HistoryStore } from '../../../src/history/store.js';
import { startTestPostgres, type TestPostgres } from '../../support/postgres-server.js';
import { openStore, rawRows, tempDir, type FakeClock, type LogLine } from './fixtures.js';

export type BackendName = 'sqlite' | 'postgres';
export const BACKENDS: readonly BackendName[] = ['sqlite', 'postgres'];

type OpenOverrides = NonNullable<Parameters<typeof openStore>[2]>;

export interface BackendContext {
  readonly name: BackendName;
  /** This test's data directory (the SQLite file's; unused by postgres). */
  readonly dir: string;
  /** The test's PostgreSQL server (postgres only). */
  readonly server: TestPostgres;
  /** The history config of this backend (for a postgres store: this test's database). */
  config(overrides?: Partial<HistoryConfig>): Partial<HistoryConfig>;
  open(clock: FakeClock, overrides?: OpenOverrides): Promise<{ store: HistoryStore; lines: LogLine[] }>;
  rows<T>(sql: string, params?: readonly (string | number | null)[]): Promise<T[]>;
}

let nextDb = 1;

export function useBackend(name: BackendName): BackendContext {
  let server: TestPostgres | null = null;
  let dir = '';
  let cleanup: () => void = () => undefined;
  let url = '';
  if (name === 'postgres') {
    beforeAll(async () => {
      server = await startTestPostgres();
    }, 60_000);
    afterAll(async () => {
      await server?.dispose();
    });
  }
  beforeEach(async () => {
    ({ dir, cleanup } = tempDir());
    if (server !== null) url = await server.createDatabase(`history_${process.pid}_${nextDb++}`);
  });
  afterEach(() => cleanup());

  const ctx: BackendContext = {
    name,
    get dir() {
      return dir;
    },
    get server() {
      if (server === null) throw new Error('no PostgreSQL server in a sqlite test');
      return server;
    },
    config(overrides = {}) {
      if (name === 'sqlite') return overrides;
      return { backend: 'postgres', postgres: { url, poolSize: 4, connectTimeoutMs: 2000, queryTimeoutMs: 5000 }, ...overrides };
    },
    open(clock, overrides = {}) {
      return openStore(dir, clock, { ...overrides, config: ctx.config(overrides.config) });
    },
    async rows<T>(sql: string, params: readonly (string | number | null)[] = []) {
      if (name === 'sqlite') return rawRows<T>(path.join(dir, 'history.sqlite'), sql, ...params);
      const client = new pg.Client({ connectionString: url, types: numberTypes });
      await client.connect();
      try {
        return (await client.query(sql, [...params])).rows as T[];
      } finally {
        await client.end();
      }
    },
  };
  return ctx;
}

/** bigint and numeric as numbers, like SQLite's integers. */
const numberTypes = {
  getTypeParser: (oid: number, format?: 'text' | 'binary') =>
    oid === 20 || oid === 1700 ? (v: string) => Number(v) : pg.types.getTypeParser(oid, format ?? 'text'),
};
