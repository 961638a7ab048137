/** The Now view: gateway health, users against their limits (with actions), live sessions with rates. */
import { html } from 'htm/preact';
import { Chart, Sparkline } from './charts.js';
import { changeLimit, killSession, killUser, toggleUser, type PendingAction } from './actions.js';
import { clock, percent, rate, size, span } from './format.js';
import type { LiveState } from './live.js';
import type { OverviewView, UserSummary } from './types.js';

const DAY_MS = 86_400_000;

function Health({ o }: { o: OverviewView }) {
  const g = o.gateway;
  const now = Date.parse(o.at);
  const certLeft = g.certificateNotAfter === null ? null : Date.parse(g.certificateNotAfter) - now;
  const drops = Object.entries(g.drops).filter(([, n]) => n > 0).sort((a, b) => b[1] - a[1]);
  return html`<section class="cards" aria-label="Gateway health" data-testid="health">
    <div class="card ${g.status === 'ok' ? 'good' : 'bad'}" data-testid="gateway-card">
      <h3>Gateway <span class="mono">${g.id}</span></h3>
      <p class="big">${g.status === 'ok' ? 'OK' : 'Degraded'}</p>
      <p>up ${span(g.uptimeSeconds * 1000)}</p>
    </div>
    <div class="card ${g.history === 'degraded' ? 'bad' : 'good'}" data-testid="history-health">
      <h3>History</h3>
      <p class="big">${g.history === 'ok' ? 'Recording' : g.history === 'disabled' ? 'Disabled' : 'Degraded'}</p>
      <p>${g.historyError ?? (g.history === 'ok' ? `${g.historyBackend === 'postgres' ? "PostgreSQL (the fleet's)" : 'SQLite'} writes succeed` : '')}</p>
    </div>
    <div class="card ${certLeft !== null && certLeft < 3 * DAY_MS ? 'bad' : 'good'}">
      <h3>Certificate</h3>
      <p class="big">${certLeft === null ? 'unknown' : certLeft <= 0 ? 'expired' : `${span(certLeft)} left`}</p>
      <p>${g.certificateNotAfter === null ? '' : `expires ${clock(g.certificateNotAfter)}`}</p>
    </div>
    <div class="card ${g.sessions >= g.maxSessions ? 'bad' : 'good'}">
      <h3>Sessions</h3>
      <p class="big" data-testid="session-count">${g.sessions} / ${g.maxSessions}</p>
      <${Gauge} value=${g.sessions} max=${g.maxSessions} label="Sessions against the gateway's cap" text=${percent(g.sessions / Math.max(1, g.maxSessions))} />
    </div>
    <div class="card">
      <h3>Drops</h3>
      ${drops.length === 0
        ? html`<p class="big">none</p>`
        : html`<ul class="drops">${drops.map(([reason, n]) => html`<li><span>${reason.replaceAll('_', ' ')}</span> <b>${n.toLocaleString()}</b> packets</li>`)}</ul>`}
    </div>
  </section>`;
}

export function Gauge({ value, max, label, text, testId }: { value: number; max: number; label: string; text: string; testId?: string }) {
  const fraction = max > 0 ? Math.min(1, value / max) : 0;
  const level = fraction >= 0.9 ? 'full' : fraction >= 0.6 ? 'high' : 'low';
  return html`<div class="gauge ${level}" role="meter" aria-label=${label} aria-valuemin="0" aria-valuemax=${max} aria-valuenow=${Math.round(value)} aria-valuetext=${text} data-testid=${testId} data-fraction=${fraction.toFixed(3)}>
    <div class="gauge-fill" style=${{ width: `${(fraction * 100).toFixed(1)}%` }}></div>
    <span class="gauge-text">${text}</span>
  </div>`;
}

function UserRow({ u, ask }: { u: UserSummary; ask: (a: PendingAction) => void }) {
  const used = u.rateIn + u.rateOut;
  const quota = u.quota;
  return html`<tr data-testid="user-row" data-user=${u.name} class=${u.disabled ? 'disabled' : ''}>
    <th scope="row">${u.name}${u.disabled ? html` <span class="tag">disabled</span>` : null}</th>
    <td data-testid="user-limit" data-label="Limit">${rate(u.bandwidth)}</td>
    <td class="wide" data-label="Live rate">
      ${u.bandwidth === null
        ? html`<span data-testid="user-rate">${rate(used)}</span> <small>(no limit)</small>`
        : html`<${Gauge} value=${used} max=${u.bandwidth} label=${`${u.name}: rate against the limit`} text=${`${rate(used)} of ${rate(u.bandwidth)}`} testId="user-gauge" />`}
    </td>
    <td data-label="Sessions">${u.sessions} / ${u.maxSessions}</td>
    <td data-label="Quota used">${quota === null ? '–' : html`${size(quota.used)} of ${size(quota.bytes)} <small>per ${quota.period}${quota.exceeded ? ', exceeded' : ''}</small>`}</td>
    <td class="actions">
      <button onClick=${() => ask(changeLimit(u))} aria-label=${`Change the limit of ${u.name}`}>Limit…</button>
      <button onClick=${() => ask(toggleUser(u))}>${u.disabled ? 'Enable…' : 'Disable…'}</button>
      <button onClick=${() => ask(killUser(u))} disabled=${u.sessions === 0} class="danger" aria-label=${`Kill all sessions of ${u.name}`}>Kill all…</button>
    </td>
  </tr>`;
}

export function NowView({ live, ask }: { live: LiveState; ask: (a: PendingAction) => void }) {
  const o = live.overview;
  if (o === null) return html`<p class="muted">Waiting for the first snapshot…</p>`;
  const now = Date.parse(o.at);
  return html`<div class="view">
    ${o.gateway.fleet
      ? html`<p class="muted" data-testid="fleet-scope">This page shows gateway ${o.gateway.id}'s own users' rates and sessions; the fleet's sessions: <code>quicgate sessions list</code> (GET /api/sessions).</p>`
      : null}
    <${Health} o=${o} />
    <section aria-labelledby="users-h">
      <h2 id="users-h">Users</h2>
      <div class="scroll"><table class="grid stack" data-testid="users">
        <thead><tr><th scope="col">User</th><th scope="col">Limit</th><th scope="col">Live rate (in + out) against the limit</th><th scope="col">Sessions</th><th scope="col">Quota used</th><th scope="col">Actions</th></tr></thead>
        <tbody>${o.users.map((u) => html`<${UserRow} key=${u.name} u=${u} ask=${ask} />`)}</tbody>
      </table></div>
    </section>
    <section aria-labelledby="sessions-h">
      <h2 id="sessions-h">Live sessions <small>(${o.sessions.length})</small></h2>
      <${Chart} title="Total rate, last 5 minutes" unit="rate" data=${live.totals} testId="total-chart"
        series=${[{ label: 'in (client → gateway)', stroke: '#2a7ab0' }, { label: 'out (gateway → client)', stroke: '#c2571a' }]} height=${160} />
      ${o.sessions.length === 0
        ? html`<p class="muted">No live sessions.</p>`
        : html`<div class="scroll"><table class="grid stack" data-testid="sessions">
            <thead><tr><th scope="col">User</th><th scope="col">Tunnel addresses</th><th scope="col">Transport</th><th scope="col">Peer</th><th scope="col">Since</th><th scope="col">Bytes in / out</th><th scope="col">Rate in / out</th><th scope="col">Last minute</th><th scope="col"><span class="sr">Actions</span></th></tr></thead>
            <tbody>${o.sessions.map((s) => {
              const h = live.spark.get(s.id) ?? { in: [], out: [] };
              return html`<tr key=${s.id} data-testid="session-row" data-session=${s.id} data-user=${s.user} data-rate-in=${s.rateIn} data-rate-out=${s.rateOut}>
                <th scope="row">${s.user}</th>
                <td class="mono" data-label="Addresses">${[s.ipv4, s.ipv6].filter((a) => a !== null).join(' ')}</td>
                <td data-label="Transport"><span class="tag ${s.transport}">${s.transport === 'quic' ? 'QUIC' : s.transport === 'h3' ? 'HTTP/3' : s.transport === 'h2' ? 'HTTP/2' : s.transport}</span></td>
                <td class="mono" data-label="Peer">${s.peer}</td>
                <td title=${clock(s.startedAt)} data-label="Since">${span(now - Date.parse(s.startedAt))}</td>
                <td data-label="Bytes in / out">${size(s.bytesIn)} / ${size(s.bytesOut)}</td>
                <td data-testid="session-rate" data-label="Rate in / out">${rate(s.rateIn)} / ${rate(s.rateOut)}</td>
                <td data-label="Last minute"><${Sparkline} a=${h.in} b=${h.out} label=${`rate of ${s.user}'s session over the last minute`} /></td>
                <td><button class="danger" onClick=${() => ask(killSession(s))} aria-label=${`Kill session ${s.id} of ${s.user}`}>Kill…</button></td>
              </tr>`;
            })}</tbody>
          </table></div>`}
    </section>
  </div>`;
}
