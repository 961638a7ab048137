/**
 * Wires the session manager's events into the session history: a start row when a session opens, its end
 * (final counters, reason) when it closes, a count per refused request's source and reason, and the live sessions' counters with
 * every flush (so a crash loses at most one flush interval of byte counts). Recording only copies into the
 * store's memory queue; the store writes on its own timer.
 */
import type { Clock } from '../clock.js';
import type { HistoryStore } from '../history/index.js';
import { sourceKey } from './admission.js';
import type { Session } from './session.js';
import type { SessionManager } from './sessions.js';

/** The part of HistoryStore the recorder uses (lets tests pass a store double if they must). */
export type RecordingStore = Pick<HistoryStore, 'recordStart' | 'recordEnd' | 'recordRejection' | 'setSnapshotProvider'>;

export interface HistoryRecorder {
  /** Stop recording (listeners removed, snapshot provider cleared). Idempotent. */
  detach(): void;
}

export function attachHistoryRecorder(sessions: SessionManager, store: RecordingStore, clock: Clock): HistoryRecorder {
  const start = (s: Session): void =>
    store.recordStart({ id: s.id, user: s.user, ipv4: s.ipv4, ipv6: s.ipv6, peer: s.peer, transport: s.transport, startedAt: s.startedAt });

  // Sessions opened before we were attached still get their row.
  for (const s of sessions.list()) start(s);
  const offOpened = sessions.onOpened(start);
  const offClosed = sessions.onClosed((s, reason, message) => {
    const endedAt = s.state.kind === 'closed' ? s.state.endedAt : clock.wallNow();
    store.recordEnd({ id: s.id, endedAt, reason, message: message ?? null, counters: s.counters });
  });
  const offRejected = sessions.onRejected((user, source, reason) => {
    // Counted per throttling key (IPv4 address, IPv6 /64): rotating addresses inside a /64 adds no rows.
    store.recordRejection({ user: user === '' ? null : user, source: sourceKey(source), reason, at: clock.wallNow() });
  });
  // Session satisfies CounterSnapshot; the store copies the counters when it writes.
  store.setSnapshotProvider(() => sessions.list());

  let attached = true;
  return {
    detach() {
      if (!attached) return;
      attached = false;
      offOpened();
      offClosed();
      offRejected();
      store.setSnapshotProvider(null);
    },
  };
}
