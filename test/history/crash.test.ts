import { spawn } from 'node:child_process';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FakeClock, openStore, rawRows, tempDir } from './helpers/fixtures.js';

interface Flushed {
  event: 'flushed';
  at: number;
  records: number;
  counters: Record<string, { bytesIn: number; packetsIn: number; bytesOut: number; packetsOut: number }>;
}

const repo = path.resolve(import.meta.dirname, '../..');

describe('crash recovery with a real process', () => {
  let dir: string;
  let cleanup: () => void;
  beforeEach(() => ({ dir, cleanup } = tempDir()));
  afterEach(() => cleanup());

  it('a SIGKILLed writer loses at most the unflushed interval; its open sessions are closed as crash', async () => {
    // `node --import tsx`, not the tsx CLI: the CLI runs the script in a grandchild that SIGKILL would miss.
    const child = spawn(process.execPath, ['--import', 'tsx', path.join(repo, 'test/history/helpers/crash-child.ts'), dir], {
      cwd: repo,
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const exited = new Promise<NodeJS.Signals | null>((resolve) => child.on('exit', (_code, signal) => resolve(signal)));
    let flushed: Flushed | undefined;
    try {
      for await (const line of createInterface({ input: child.stdout })) {
        const msg = JSON.parse(line) as { event: string };
        if (msg.event === 'flushed') flushed = msg as Flushed;
        if (msg.event === 'pending') break;
      }
      expect(child.kill('SIGKILL')).toBe(true);
    } finally {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    }
    expect(await exited).toBe('SIGKILL');
    expect(flushed).toBeDefined();
    const { at, counters, records } = flushed!;
    expect(records).toBe(5);

    const { store } = await openStore(dir, new FakeClock(Date.now()), { gatewayId: 'gw-crash' });
    expect(store.startupEvents).toEqual([{ kind: 'crash_recovered', sessions: 5 }]);
    const rows = (await store.recentSessions({ limit: 100 })).sort((a, b) => a.id.localeCompare(b.id));
    expect(rows.map((r) => r.id)).toEqual(['s1', 's2', 's3', 's4', 's5']); // s6..s8 were never flushed
    for (const row of rows) {
      expect(row).toMatchObject({ status: 'closed', closeReason: 'crash', endedAt: at, durationMs: at - row.startedAt });
      expect({ bytesIn: row.bytesIn, packetsIn: row.packetsIn, bytesOut: row.bytesOut, packetsOut: row.packetsOut }).toEqual(
        counters[row.id],
      );
    }
    expect(rows.find((r) => r.id === 's3')?.bytesIn).toBe(3000);
    expect(await store.recentRejections({ limit: 10 })).toEqual([]);
    // The hourly traffic written with that flush survives too.
    const total = Object.values(counters).reduce((sum, c) => sum + c.bytesIn, 0);
    expect((await store.stats({ windowHours: 24 })).bytesIn).toBe(total);
    await store.close();
    expect(rawRows(path.join(dir, 'history.sqlite'), "SELECT COUNT(*) AS n FROM sessions WHERE status = 'open'")).toEqual([{ n: 0 }]);
  });
});
