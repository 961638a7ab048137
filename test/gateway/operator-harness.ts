/**
 * A real Gateway over a MemoryTun and in-memory tunnel connections, with the operator surface attached: the
 * test "connects" clients through the gateway's own admission, pushes packets through the TUN and the client
 * side of each pair, and talks to the admin API over real HTTP. Not a test file itself (no .test.ts).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { ReloadResult } from '../../src/admin/backend.js';
import { FakeClock } from '../../src/clock.js';
import type { ServerConfig } from '../../src/config/types.js';
import { attachOperatorSurface, type OperatorSurface } from '../../src/gateway/operator.js';
import { Gateway } from '../../src/gateway/server.js';
import type { Session } from '../../src/gateway/session.js';
import { openDatabase, type SqliteValue } from '../../src/history/sqlite.js';
import { createMemoryPair, type MemoryPair } from '../../src/transport/memory.js';
import type { AcceptedConnection, Admission, AdmissionResult, ConnectRequest, TransportKind, TunnelListener } from '../../src/transport/types.js';
import { MemoryTun } from '../../src/tun/memory.js';
import { serverConfig, sessionLimits } from '../support/config-fixture.js';
import { captureLog, type CapturedLog } from '../support/log-capture.js';
import { ipv4Packet } from '../support/packets.js';
import { MemoryListener } from '../support/memory-gateway.js';
import { settle as settleRounds } from '../support/wait.js';

export const TOKEN = 'operator-test-token-0123456789';
export const REMOTE = '203.0.113.9';

export interface Harness {
  readonly clock: FakeClock;
  readonly log: CapturedLog;
  readonly dataDir: string;
  readonly gateway: Gateway;
  readonly tun: MemoryTun;
  readonly listener: MemoryListener;
  readonly surface: OperatorSurface;
  /** Base URL of the admin API. */
  readonly base: string;
  /** Connect and return the client side and the gateway's session; throws when refused. */
  connect(user: string, transport?: TransportKind): Promise<{ pair: MemoryPair; session: Session }>;
  /** Client → gateway: a packet of `total` bytes from the session's address, through the memory link to the TUN. */
  sendFromClient(pair: MemoryPair, session: Session, total: number): Promise<void>;
  /** Gateway → client: a packet of `total` bytes injected into the TUN for the session's address. */
  sendToClient(session: Session, total: number): Promise<void>;
  call(pathname: string, init?: RequestInit & { token?: string | null }): Promise<Response>;
  /** Rows of the history file, through a connection of its own. */
  rows<T>(sql: string, ...params: SqliteValue[]): T[];
  /** Stop the surface (and the gateway) and remove the data dir. */
  cleanup(): Promise<void>;
}

export interface HarnessOptions {
  readonly config?: Partial<ServerConfig>;
  readonly clock?: FakeClock;
  readonly dataDir?: string;
  readonly reload?: (gateway: Gateway) => Promise<ReloadResult>;
  readonly ledgerRetainMs?: number;
}

// Memory transport delivery, then the staged TUN write (one more turn: src/tun/writer.ts).
export const settle = (rounds = 4): Promise<void> => settleRounds(rounds);

export function tempDataDir(): string {
  return mkdtempSync(path.join(os.tmpdir(), 'qg-operator-'));
}

export async function startHarness(options: HarnessOptions = {}): Promise<Harness> {
  const clock = options.clock ?? new FakeClock();
  const log = captureLog('info');
  const dataDir = options.dataDir ?? tempDataDir();
  const config = serverConfig({
    dataDir,
    limits: sessionLimits({ idleTimeoutMs: 0 }),
    admin: { enabled: true, listen: '127.0.0.1', port: 0, token: TOKEN },
    history: { enabled: true, retentionDays: 0, flushIntervalMs: 1000, batchSize: 100, queueLimit: 100_000, busyTimeoutMs: 20, rejectionRowsPerHour: 1000, backend: 'sqlite', postgres: null },
    ...options.config,
  });
  let tun: MemoryTun | null = null;
  let listener: MemoryListener | null = null;
  const gateway = await Gateway.start(config, {
    logger: log.logger,
    clock,
    openTun: async (s) => (tun = new MemoryTun({ name: s.name, mtu: s.mtu })),
    listen: async ({ admission }) => (listener = new MemoryListener(admission)),
  });
  const surface = await attachOperatorSurface(gateway, {
    config,
    logger: log.logger,
    clock,
    reload: options.reload === undefined ? async () => ({ bandwidthChanged: [], usersRemoved: [], sessionsClosed: 0, needRestart: [], changed: [] }) : () => options.reload!(gateway),
    ledgerRetainMs: options.ledgerRetainMs,
    metrics: { defaultMetrics: false },
  });
  if (tun === null || listener === null) throw new Error('gateway did not open its parts');
  const theTun: MemoryTun = tun;
  const theListener: MemoryListener = listener;
  const base = `http://127.0.0.1:${surface.adminPort ?? 0}`;
  const file = path.join(dataDir, 'history.sqlite');

  return {
    clock,
    log,
    dataDir,
    gateway,
    tun: theTun,
    listener: theListener,
    surface,
    base,
    async connect(user, transport = 'h2') {
      const outcome = await theListener.connect(user, `pw-${user}`, { transport });
      if ('refused' in outcome) throw new Error(`refused: ${JSON.stringify(outcome.refused)}`);
      const session = gateway.sessions.list().find((s) => s.connection === outcome.pair.server);
      if (session === undefined) throw new Error('no session for the connection');
      return { pair: outcome.pair, session };
    },
    async sendFromClient(pair, session, total) {
      const packet = ipv4Packet(session.ipv4 ?? '', REMOTE, total - 20);
      pair.client.sendPacket(packet, 0, packet.length);
      pair.client.flush();
      await settle();
    },
    async sendToClient(session, total) {
      theTun.inject([ipv4Packet(REMOTE, session.ipv4 ?? '', total - 20)]);
      await settle();
    },
    call(pathname, init = {}) {
      const { token = TOKEN, ...rest } = init;
      const headers = new Headers(rest.headers);
      if (token !== null) headers.set('Authorization', `Bearer ${token}`);
      return fetch(`${base}${pathname}`, { ...rest, headers });
    },
    rows<T>(sql: string, ...params: SqliteValue[]): T[] {
      const db = openDatabase(file, { readonly: true });
      try {
        return db.prepare(sql).all(...params) as T[];
      } finally {
        db.close();
      }
    },
    async cleanup() {
      await surface.stop();
      if (options.dataDir === undefined) rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** Prometheus text → "name{labels}" → value. */
export function samples(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const at = line.lastIndexOf(' ');
    out.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return out;
}
