/** The quicgate operator console: login, then the Now and History views. */
import { html } from 'htm/preact';
import { render } from 'preact';
import { useEffect, useRef, useState } from 'preact/hooks';
import { ApiError, login, logout, resumeLogin, whenLoggedOut } from './api.js';
import { ConfirmDialog, type Outcome, type PendingAction } from './actions.js';
import { HistoryView } from './history.js';
import { useLive } from './live.js';
import { NowView } from './now.js';

type View = 'now' | 'history';
const viewFromHash = (): View => (location.hash === '#history' ? 'history' : 'now');

function Login({ onIn }: { onIn: () => void }) {
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const input = useRef<HTMLInputElement>(null);
  const submit = async (event: Event): Promise<void> => {
    event.preventDefault();
    const token = input.current?.value ?? '';
    setBusy(true);
    try {
      await login(token);
      if (input.current !== null) input.current.value = '';
      onIn();
    } catch (err) {
      setError(err instanceof ApiError && err.status === 401 ? 'Wrong admin token.' : `Login failed: ${err instanceof Error ? err.message : String(err)}`);
      input.current?.select();
    } finally {
      setBusy(false);
    }
  };
  return html`<main class="login">
    <form onSubmit=${submit} aria-labelledby="login-h">
      <h1 id="login-h">quicgate console</h1>
      <label class="field">Admin token
        <input ref=${input} type="password" name="token" autocomplete="current-password" required autofocus />
      </label>
      <button type="submit" disabled=${busy}>${busy ? 'Checking…' : 'Log in'}</button>
      ${error === null ? null : html`<p class="error" role="alert" data-testid="login-error">${error}</p>`}
      <p class="muted">The token is the gateway's <code>admin.token</code>. It is exchanged for a session cookie and not kept by the page.</p>
    </form>
  </main>`;
}

function Console({ onOut }: { onOut: () => void }) {
  const [view, setView] = useState<View>(viewFromHash());
  const [pending, setPending] = useState<PendingAction | null>(null);
  const [outcome, setOutcome] = useState<Outcome | null>(null);
  const live = useLive(onOut);

  useEffect(() => {
    const onHash = (): void => setView(viewFromHash());
    addEventListener('hashchange', onHash);
    return () => removeEventListener('hashchange', onHash);
  }, []);

  const tab = (id: View, label: string) =>
    html`<a href=${`#${id}`} aria-current=${view === id ? 'page' : undefined} class=${view === id ? 'tab active' : 'tab'}>${label}</a>`;
  const linkText = live.link === 'live' ? 'live' : live.link === 'connecting' ? 'connecting…' : 'reconnecting…';
  return html`<div class="app">
    <header>
      <h1>quicgate</h1>
      <nav aria-label="Views">${tab('now', 'Now')}${tab('history', 'History')}</nav>
      <span class="link ${live.link}" data-testid="link" role="status">${linkText}</span>
      <button class="quiet" onClick=${() => void logout().then(onOut)}>Log out</button>
    </header>
    <p class="outcome ${outcome === null ? '' : outcome.ok ? 'ok' : 'failed'}" role="status" aria-live="polite" data-testid="outcome">${outcome?.text ?? ''}</p>
    ${live.failure === null ? null : html`<p class="error" role="alert">${live.failure}</p>`}
    <main>${view === 'now' ? html`<${NowView} live=${live} ask=${setPending} />` : html`<${HistoryView} />`}</main>
    <${ConfirmDialog} action=${pending} onDone=${(o: Outcome | null) => {
      setPending(null);
      if (o !== null) setOutcome(o);
    }} />
  </div>`;
}

function App() {
  const [state, setState] = useState<'checking' | 'out' | 'in'>('checking');
  useEffect(() => {
    whenLoggedOut(() => setState('out'));
    void resumeLogin().then((ok) => setState(ok === true ? 'in' : 'out'));
  }, []);
  if (state === 'checking') return html`<p class="muted">Loading…</p>`;
  return state === 'in' ? html`<${Console} onOut=${() => setState('out')} />` : html`<${Login} onIn=${() => setState('in')} />`;
}

const root = document.getElementById('app');
if (root !== null) render(html`<${App} />`, root);
