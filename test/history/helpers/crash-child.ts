/**
 * Child process for the crash test: opens the store on the real clock, records sessions, lets one interval
 * flush write them with their counters, then queues more work and reports "pending" so the parent can
 * SIGKILL it before the next flush. Usage: tsx crash-child.ts <dataDir>
 */
import { pino } from 'pino';
import { systemClock, type Clock } from '../../../src/clock.js';
import type { TrafficCounters } from '../../../src/gateway/session.js';
import { HistoryStore } from '../../../src/history/store.js';

const dataDir = process.argv[2];
if (dataDir === undefined) throw new Error('usage: crash-child.ts <dataDir>');

let lastWall = 0;
// Timers stop firing once the work is queued: the kill then lands "mid-batch" however slow the parent is.
let timersLive = true;
const clock: Clock = {
  ...systemClock,
  wallNow: () => (lastWall = Date.now()),
  setInterval: (fn, ms) => systemClock.setInterval(() => timersLive && fn(), ms),
  setTimeout: (fn, ms) => systemClock.setTimeout(() => timersLive && fn(), ms),
};
const live = new Map<string, { id: string; counters: TrafficCounters }>();
const send = (msg: object): void => void process.stdout.write(`${JSON.stringify(msg)}\n`);

let flushes = 0;
const store = await HistoryStore.open({
  dataDir,
  gatewayId: 'gw-crash',
  clock,
  logger: pino({ level: 'warn' }, process.stderr),
  config: { enabled: true, retentionDays: 0, flushIntervalMs: 1500, batchSize: 100_000, queueLimit: 100_000, busyTimeoutMs: 20, rejectionRowsPerHour: 1000, backend: 'sqlite', postgres: null },
  onFlush: (report) => {
    if (++flushes !== 1) return;
    // Exactly what this flush wrote: nothing changes the counters between the snapshot and here.
    const written = Object.fromEntries([...live].map(([id, s]) => [id, { ...s.counters }]));
    send({ event: 'flushed', at: lastWall, records: report.records, counters: written });
    timersLive = false;
    queueMoreWork();
    send({ event: 'pending' });
  },
});
store.setSnapshotProvider(() => live.values());

const start = (id: string, user: string): void => {
  store.recordStart({ id, user, ipv4: null, ipv6: null, peer: '192.0.2.1:1', transport: 'h2', startedAt: Date.now() });
  live.set(id, { id, counters: { bytesIn: 0, packetsIn: 0, bytesOut: 0, packetsOut: 0 } });
};

for (let i = 1; i <= 5; i++) start(`s${i}`, i % 2 === 0 ? 'bob' : 'alice');
for (const [n, s] of [...live.values()].entries()) {
  s.counters.bytesIn = 1000 * (n + 1);
  s.counters.packetsIn = n + 1;
  s.counters.bytesOut = 500 * (n + 1);
  s.counters.packetsOut = 2 * (n + 1);
}

function queueMoreWork(): void {
  for (const s of live.values()) s.counters.bytesIn += 1_000_000;
  for (let i = 6; i <= 8; i++) start(`s${i}`, 'carol');
  const s1 = live.get('s1')!;
  live.delete('s1');
  store.recordEnd({ id: 's1', endedAt: Date.now(), reason: 'client_closed', message: null, counters: s1.counters });
  store.recordRejection({ user: 'eve', source: '192.0.2.99', reason: 'auth_failed', at: Date.now() });
}

setInterval(() => undefined, 1000); // stay alive until killed
