/**
 * The live feed: one EventSource on /api/console/events (the gateway sends the same overview snapshot to every
 * open page once a second). Keeps the last samples per session and in total for the charts. Reconnects by
 * itself: EventSource retries after a dropped stream (gateway restart); when the stream is refused outright
 * the login is checked and the stream reopened with a backoff.
 */
import { useEffect, useState } from 'preact/hooks';
import { resumeLogin } from './api.js';
import type { OverviewView } from './types.js';

/** Samples kept per session for its sparkline, and in total for the rate chart (one per second). */
export const SPARK_SAMPLES = 60;
export const TOTAL_SAMPLES = 300;

export type LinkState = 'connecting' | 'live' | 'reconnecting';

export interface LiveState {
  readonly overview: OverviewView | null;
  readonly link: LinkState;
  /** Per session id: rate in and out, oldest first. */
  readonly spark: ReadonlyMap<string, { in: number[]; out: number[] }>;
  /** Total rate in and out over time: [seconds[], in[], out[]]. */
  readonly totals: [number[], number[], number[]];
  readonly failure: string | null;
}

export function useLive(onLoggedOut: () => void): LiveState {
  const [state, setState] = useState<LiveState>({ overview: null, link: 'connecting', spark: new Map(), totals: [[], [], []], failure: null });

  useEffect(() => {
    let source: EventSource | null = null;
    let retry: ReturnType<typeof setTimeout> | null = null;
    let backoff = 1000;
    let closed = false;
    const spark = new Map<string, { in: number[]; out: number[] }>();
    const totals: [number[], number[], number[]] = [[], [], []];

    const onOverview = (event: MessageEvent<string>): void => {
      const overview = JSON.parse(event.data) as OverviewView;
      backoff = 1000;
      const seen = new Set<string>();
      let totalIn = 0;
      let totalOut = 0;
      for (const s of overview.sessions) {
        seen.add(s.id);
        const h = spark.get(s.id) ?? { in: [], out: [] };
        h.in.push(s.rateIn);
        h.out.push(s.rateOut);
        if (h.in.length > SPARK_SAMPLES) {
          h.in.shift();
          h.out.shift();
        }
        spark.set(s.id, h);
        totalIn += s.rateIn;
        totalOut += s.rateOut;
      }
      for (const id of spark.keys()) if (!seen.has(id)) spark.delete(id);
      totals[0].push(Date.parse(overview.at) / 1000);
      totals[1].push(totalIn);
      totals[2].push(totalOut);
      if (totals[0].length > TOTAL_SAMPLES) for (const column of totals) column.shift();
      setState({ overview, link: 'live', spark: new Map(spark), totals: [[...totals[0]], [...totals[1]], [...totals[2]]], failure: null });
    };

    const open = (): void => {
      if (closed) return;
      source = new EventSource('/api/console/events');
      source.addEventListener('overview', onOverview as EventListener);
      source.addEventListener('failure', ((event: MessageEvent<string>) => {
        const failure = (JSON.parse(event.data) as { message: string }).message;
        setState((s) => ({ ...s, failure }));
      }) as EventListener);
      source.onerror = () => {
        setState((s) => ({ ...s, link: 'reconnecting' }));
        // CONNECTING: the browser retries by itself (the gateway said how soon). CLOSED: it gave up (HTTP error).
        if (source?.readyState !== EventSource.CLOSED) return;
        source = null;
        retry = setTimeout(() => {
          void resumeLogin().then((ok) => (ok === false ? onLoggedOut() : open()));
        }, backoff);
        backoff = Math.min(backoff * 2, 15_000);
      };
    };
    open();
    return () => {
      closed = true;
      source?.close();
      if (retry !== null) clearTimeout(retry);
    };
  }, []);

  return state;
}
