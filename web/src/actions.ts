/**
 * Actions that change the gateway: each one asks for confirmation in a modal dialog (keyboard: Tab, Enter,
 * Escape), runs, and reports its result in the page's status line (announced to screen readers).
 */
import { html } from 'htm/preact';
import { useEffect, useRef, useState } from 'preact/hooks';
import { api, ApiError, enc } from './api.js';
import { rate } from './format.js';
import type { SessionView, UserSummary, UserUpdateResult } from './types.js';

export interface Outcome {
  readonly ok: boolean;
  readonly text: string;
}

export interface PendingAction {
  readonly title: string;
  readonly detail: string;
  readonly confirmLabel: string;
  /** A field the operator fills in (the new limit); its value goes to run(). */
  readonly input?: { readonly label: string; readonly initial: string; readonly hint: string };
  run(value: string): Promise<string>;
}

const failureText = (err: unknown): string => (err instanceof ApiError ? `${err.code}: ${err.message}` : String(err));

export function ConfirmDialog({ action, onDone }: { action: PendingAction | null; onDone: (outcome: Outcome | null) => void }) {
  const dialog = useRef<HTMLDialogElement>(null);
  const [value, setValue] = useState('');
  const [busy, setBusy] = useState(false);

  useEffect(() => {
    const el = dialog.current;
    if (el === null) return;
    if (action !== null && !el.open) {
      setValue(action.input?.initial ?? '');
      setBusy(false);
      el.showModal();
    } else if (action === null && el.open) el.close();
  }, [action]);

  const submit = async (event: Event): Promise<void> => {
    event.preventDefault();
    if (action === null || busy) return;
    setBusy(true);
    let outcome: Outcome;
    try {
      outcome = { ok: true, text: await action.run(value.trim()) };
    } catch (err) {
      outcome = { ok: false, text: `${action.title} failed: ${failureText(err)}` };
    }
    onDone(outcome);
  };

  return html`<dialog ref=${dialog} class="confirm" aria-labelledby="confirm-title" onCancel=${(e: Event) => { e.preventDefault(); onDone(null); }}>
    ${action === null
      ? null
      : html`<form method="dialog" onSubmit=${submit}>
          <h2 id="confirm-title">${action.title}</h2>
          <p>${action.detail}</p>
          ${action.input === undefined
            ? null
            : html`<label class="field">${action.input.label}
                <input name="value" value=${value} onInput=${(e: Event) => setValue((e.target as HTMLInputElement).value)} required autofocus />
                <small>${action.input.hint}</small>
              </label>`}
          <div class="buttons">
            <button type="button" onClick=${() => onDone(null)}>Cancel</button>
            <button type="submit" class="danger" disabled=${busy}>${busy ? 'Working…' : action.confirmLabel}</button>
          </div>
        </form>`}
  </dialog>`;
}

export const killSession = (s: SessionView): PendingAction => ({
  title: 'Kill session',
  detail: `End ${s.user}'s session ${s.id} (${s.ipv4 ?? s.ipv6 ?? 'no address'}, from ${s.peer}). The client is told "admin_kill" and does not reconnect.`,
  confirmLabel: 'Kill session',
  async run() {
    await api.delete(`/api/sessions/${enc(s.id)}`);
    return `Killed session ${s.id} of ${s.user}.`;
  },
});

export const killUser = (u: UserSummary): PendingAction => ({
  title: `Kill all sessions of ${u.name}`,
  detail: `End all ${u.sessions} live session(s) of ${u.name}. Their clients do not reconnect; the user can log in again.`,
  confirmLabel: 'Kill all',
  async run() {
    const r = await api.delete<{ sessionsClosed: number }>(`/api/users/${enc(u.name)}/sessions`);
    return `Killed ${r.sessionsClosed} session(s) of ${u.name}.`;
  },
});

const describeUpdate = (r: UserUpdateResult): string =>
  r.changes.length === 0 ? `${r.user} already had these settings; ${r.file} unchanged.` : `${r.user}: ${r.changes.join(', ')} — written to ${r.file} and applied.`;

export const changeLimit = (u: UserSummary): PendingAction => ({
  title: `Change the bandwidth of ${u.name}`,
  detail: `Now ${rate(u.bandwidth)}. The new limit is written to the users file (comments kept) and the gateway reloads it; live sessions follow within a second.`,
  confirmLabel: 'Write and reload',
  input: { label: 'New limit', initial: u.bandwidth === null ? 'unlimited' : rate(u.bandwidth), hint: 'e.g. 20 Mbit/s, 2.5 MB/s or unlimited' },
  async run(value) {
    return describeUpdate(await api.patch<UserUpdateResult>(`/api/users/${enc(u.name)}`, { bandwidth: value }));
  },
});

export const toggleUser = (u: UserSummary): PendingAction => ({
  title: `${u.disabled ? 'Enable' : 'Disable'} ${u.name}`,
  detail: u.disabled
    ? `Let ${u.name} log in again. Written to the users file, then reloaded.`
    : `Refuse new logins of ${u.name} and end their ${u.sessions} live session(s). Written to the users file, then reloaded.`,
  confirmLabel: u.disabled ? 'Enable' : 'Disable',
  async run() {
    return describeUpdate(await api.patch<UserUpdateResult>(`/api/users/${enc(u.name)}`, { disabled: !u.disabled }));
  },
});
