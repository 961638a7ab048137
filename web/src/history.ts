/**
 * The History view: sessions and bytes per hour over a chosen window, top users, rejections by reason, and
 * a searchable list of past sessions with their end reason (CSV export of the same query). Refreshed every
 * 30 s while shown (bounded polling; the history changes slowly).
 */
import { html } from 'htm/preact';
import { useEffect, useMemo, useState } from 'preact/hooks';
import { api, ApiError, enc } from './api.js';
import { Chart } from './charts.js';
import { clock, size, span } from './format.js';
import type { HourlyView, PastSessionsView, StatsView } from './types.js';

const WINDOWS = [
  { hours: 6, label: '6 hours' },
  { hours: 24, label: '24 hours' },
  { hours: 168, label: '7 days' },
  { hours: 720, label: '30 days' },
] as const;
const REFRESH_MS = 30_000;
const SCOPE_TEXT: Record<StatsView['scope']['history'], string> = {
  fleet: 'The whole fleet: every gateway writes this PostgreSQL history',
  gateway: "This gateway's own history (SQLite)",
  memory: 'Figures this gateway counted since it started',
};

interface Loaded {
  readonly hourly: HourlyView;
  readonly stats: StatsView;
  readonly past: PastSessionsView;
}

export function HistoryView() {
  const [windowHours, setWindowHours] = useState<number>(24);
  const [search, setSearch] = useState('');
  const [query, setQuery] = useState('');
  const [data, setData] = useState<Loaded | null>(null);
  const [error, setError] = useState<string | null>(null);

  // The search runs 300 ms after the last keystroke.
  useEffect(() => {
    const t = setTimeout(() => setQuery(search.trim()), 300);
    return () => clearTimeout(t);
  }, [search]);

  const sessionsUrl = (format: 'json' | 'csv'): string =>
    `/api/history/sessions?window_hours=${windowHours}&limit=500${query === '' ? '' : `&q=${enc(query)}`}${format === 'csv' ? '&format=csv' : ''}`;

  useEffect(() => {
    let stop = false;
    const load = async (): Promise<void> => {
      try {
        const [hourly, stats, past] = await Promise.all([
          api.get<HourlyView>(`/api/history/hourly?window_hours=${windowHours}`),
          api.get<StatsView>(`/api/stats?window_hours=${windowHours}`),
          api.get<PastSessionsView>(sessionsUrl('json')),
        ]);
        if (!stop) {
          setData({ hourly, stats, past });
          setError(null);
        }
      } catch (err) {
        if (!stop) setError(err instanceof ApiError ? err.message : 'the gateway cannot be reached; retrying');
      }
    };
    void load();
    const timer = setInterval(() => void load(), REFRESH_MS);
    return () => {
      stop = true;
      clearInterval(timer);
    };
  }, [windowHours, query]);

  const series = useMemo(() => {
    const hours = data?.hourly.hours ?? [];
    const x = hours.map((h) => Date.parse(h.hour) / 1000);
    return {
      sessions: [x, hours.map((h) => h.sessions)] as [number[], number[]],
      bytes: [x, hours.map((h) => h.bytesIn), hours.map((h) => h.bytesOut)] as [number[], number[], number[]],
    };
  }, [data]);

  const rejections = Object.entries(data?.stats.rejections ?? {}).sort((a, b) => (b[1] ?? 0) - (a[1] ?? 0));
  return html`<div class="view">
    <div class="toolbar">
      <label>Window
        <select value=${windowHours} onChange=${(e: Event) => setWindowHours(Number((e.target as HTMLSelectElement).value))} data-testid="window">
          ${WINDOWS.map((w) => html`<option value=${w.hours}>${w.label}</option>`)}
        </select>
      </label>
      ${error === null ? null : html`<span class="error" role="alert">${error}</span>`}
    </div>
    ${data !== null && !data.hourly.available ? html`<p class="error">History is disabled or degraded: only live figures are available.</p>` : null}
    ${data === null ? null : html`<p class="muted" data-testid="history-scope">${SCOPE_TEXT[data.stats.scope.history]} (answered by ${data.stats.scope.gateway})</p>`}
    <div class="two">
      <${Chart} title="Sessions started per hour" unit="count" data=${series.sessions} testId="sessions-chart" padX=${1800} series=${[{ label: 'sessions', stroke: '#2a7ab0', fill: 'rgba(42,122,176,0.35)', bars: true }]} />
      <${Chart} title="Bytes per hour" unit="bytes" data=${series.bytes} testId="bytes-chart" padX=${1800}
        series=${[{ label: 'in', stroke: '#2a7ab0', fill: 'rgba(42,122,176,0.15)' }, { label: 'out', stroke: '#c2571a', fill: 'rgba(194,87,26,0.15)' }]} />
    </div>
    <details class="as-table">
      <summary>Hourly figures as a table</summary>
      <div class="scroll"><table class="grid" data-testid="hourly-table">
        <thead><tr><th scope="col">Hour</th><th scope="col">Sessions</th><th scope="col">Bytes in</th><th scope="col">Bytes out</th></tr></thead>
        <tbody>${(data?.hourly.hours ?? []).filter((h) => h.sessions > 0 || h.bytesIn > 0 || h.bytesOut > 0).map(
          (h) => html`<tr data-hour=${h.hour} data-sessions=${h.sessions}><td>${clock(h.hour)}</td><td>${h.sessions}</td><td>${size(h.bytesIn)}</td><td>${size(h.bytesOut)}</td></tr>`,
        )}</tbody>
      </table></div>
    </details>
    <div class="two">
      <section aria-labelledby="top-h"><h2 id="top-h">Top users</h2>
        <table class="grid" data-testid="top-users"><thead><tr><th scope="col">User</th><th scope="col">Bytes</th></tr></thead>
          <tbody>${(data?.stats.topUsers ?? []).map((t) => html`<tr><th scope="row">${t.user}</th><td>${size(t.bytes)}</td></tr>`)}</tbody></table>
      </section>
      <section aria-labelledby="rej-h"><h2 id="rej-h">Rejections by reason</h2>
        ${rejections.length === 0 ? html`<p class="muted">None in this window.</p>` : html`<table class="grid" data-testid="rejections"><thead><tr><th scope="col">Reason</th><th scope="col">Count</th></tr></thead>
          <tbody>${rejections.map(([reason, n]) => html`<tr><th scope="row">${reason.replaceAll('_', ' ')}</th><td>${n}</td></tr>`)}</tbody></table>`}
      </section>
    </div>
    <section aria-labelledby="past-h">
      <h2 id="past-h">Sessions <small>(${data?.past.sessions.length ?? 0}${data?.past.sessions.length === 500 ? '+, newest first' : ''})</small></h2>
      <div class="toolbar">
        <label>Search <input type="search" value=${search} placeholder="user, address, id, reason, gateway…" onInput=${(e: Event) => setSearch((e.target as HTMLInputElement).value)} data-testid="search" /></label>
        <a class="button" href=${sessionsUrl('csv')} download="quicgate-sessions.csv" data-testid="csv">Export CSV</a>
      </div>
      <div class="scroll"><table class="grid stack" data-testid="past-sessions">
        <thead><tr><th scope="col">User</th><th scope="col">Started</th><th scope="col">Duration</th><th scope="col">Transport</th><th scope="col">Gateway</th><th scope="col">Tunnel addresses</th><th scope="col">Peer</th><th scope="col">Bytes in / out</th><th scope="col">End reason</th></tr></thead>
        <tbody>${(data?.past.sessions ?? []).map(
          (s) => html`<tr data-session=${s.id} data-reason=${s.endReason ?? 'open'}>
            <th scope="row">${s.user}</th><td data-label="Started">${clock(s.startedAt)}</td>
            <td data-label="Duration">${s.durationSeconds === null ? 'open' : span(s.durationSeconds * 1000)}</td><td data-label="Transport">${s.transport}</td><td data-label="Gateway">${s.gateway}</td>
            <td class="mono" data-label="Addresses">${[s.ipv4, s.ipv6].filter((a) => a !== null).join(' ')}</td><td class="mono" data-label="Peer">${s.peer}</td>
            <td data-label="Bytes in / out">${size(s.bytesIn)} / ${size(s.bytesOut)}</td>
            <td data-label="End reason">${s.status === 'open' ? html`<span class="tag">open</span>` : html`<span title=${s.endMessage ?? ''}>${(s.endReason ?? 'unknown').replaceAll('_', ' ')}</span>`}</td>
          </tr>`,
        )}</tbody>
      </table></div>
    </section>
  </div>`;
}
