/**
 * The web console in a real browser against a real gateway: Debian's chromium, driven by playwright-core,
 * runs inside the gateway's namespace (through `ip netns exec`, the control channel is a pipe) and opens the
 * admin listener on the underlay address. Real clients in their own namespaces, real iperf3 through the
 * tunnel. Writes the screenshots in docs/ that the README shows.
 *
 *   qge-…-s   gateway  192.0.2.1 (admin listener :9090, tunnel 198.18.0.1)
 *   qge-…-c1  alice (QUIC)     192.0.2.11
 *   qge-…-c2  bob   (HTTP/2)   192.0.2.12
 */
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseRate } from '../../src/config/units.js';
import type { Topology } from './helpers/netns.js';
import { startClient, startGateway, startTestbed, stopTestbed, type GatewayFiles, type QuicgateProcess, type TestUser } from './helpers/quicgate.js';

const TOKEN = 'e2e-console-token-0123456789';
const CONSOLE = 'http://192.0.2.1:9090';
const GW4 = '198.18.0.1';
const DOCS = resolve(import.meta.dirname, '../../docs');
const CHROMIUM = '/usr/bin/chromium';
const CHROMIUM_FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'];
// Rates a busy shared machine still reaches; what is tested is the holding and the following, not speed.
const FIRST_LIMIT = '6 Mbit/s';
const SECOND_LIMIT = '1.5 Mbit/s';
const USERS: TestUser[] = [
  { name: 'alice', password: 'alice-pw', bandwidth: FIRST_LIMIT, maxSessions: 2 },
  { name: 'bob', password: 'bob-pw', bandwidth: '3 Mbit/s' },
];
const SERVER_YAML = `
listen: { address: 192.0.2.1, port: 4433 }
tunnel:
  ipv4: { network: 198.18.0.0/16 }
limits:
  max_sessions_per_user: 4
  max_total_sessions: 100
  idle_timeout: 6s
keepalive_interval: 1s
log_level: info
admin: { listen: 192.0.2.1, port: 9090, token: ${TOKEN} }
history: { flush_interval: 1s }
`;

let topo: Topology;
let files: GatewayFiles;
let gateway: QuicgateProcess;
let alice: QuicgateProcess;
let bob: QuicgateProcess;
let context: BrowserContext;
let page: Page;
let profileDir: string;
let aliceIperf: Promise<IperfIntervals> | null = null;

interface IperfIntervals {
  /** Wall time (ms) the iperf3 client was started; the intervals' offsets count from about then. */
  readonly startedAt: number;
  readonly intervals: readonly { readonly start: number; readonly end: number; readonly bps: number }[];
}

/** iperf3 from a client namespace to a server on the gateway's tunnel address, with its 0.5 s intervals. */
async function iperfIntervals(ns: string, port: number, seconds: number): Promise<IperfIntervals> {
  const server = topo.spawn(topo.server, 'iperf3', ['-s', '-1', '-J', '-B', GW4, '-p', String(port)]);
  try {
    await sleep(400);
    const startedAt = Date.now();
    const args = ['-c', GW4, '-p', String(port), '-J', '-i', '0.5', '-t', String(seconds), '--get-server-output'];
    const { stdout } = await topo.exec(ns, 'iperf3', args, (seconds + 30) * 1000);
    type Intervals = { intervals: { sum: { start: number; end: number; bits_per_second: number } }[] };
    // The receiver's intervals: what passed the gateway (the sender's are what went into its socket buffer).
    const received = (JSON.parse(stdout) as { server_output_json: Intervals }).server_output_json;
    // iperf3 ends with a stub interval of a few ms (what was in flight at the end): not a rate over 0.5 s.
    const whole = received.intervals.filter((i) => i.sum.end - i.sum.start >= 0.4);
    return { startedAt, intervals: whole.map((i) => ({ start: i.sum.start, end: i.sum.end, bps: i.sum.bits_per_second })) };
  } finally {
    server.kill('SIGKILL');
  }
}

/** At 390 px the named tables must fit: neither the page nor a table's box scrolls sideways. */
async function expectNoSidewaysScroll(testIds: readonly string[]): Promise<void> {
  const widths = await page.evaluate((ids) => {
    // Runs in the page; the test project has no DOM types.
    interface Box { scrollWidth: number; clientWidth: number; closest(sel: string): Box | null }
    const document = (globalThis as unknown as { document: { documentElement: Box; querySelector(sel: string): Box | null } }).document;
    const doc = document.documentElement;
    return {
      page: [doc.scrollWidth, doc.clientWidth] as const,
      tables: ids.map((id) => {
        const table = document.querySelector(`[data-testid="${id}"]`);
        const box = table?.closest('.scroll') ?? null;
        return table === null || box === null ? null : ([id, box.scrollWidth, box.clientWidth] as const);
      }),
    };
  }, testIds);
  expect(widths.page[0], 'page scroll width at 390 px').toBeLessThanOrEqual(widths.page[1]);
  for (const t of widths.tables) {
    expect(t, 'table present').not.toBeNull();
    expect(t![1], `${t![0]} table scroll width at 390 px`).toBeLessThanOrEqual(t![2] + 1);
  }
}

/** Run by Node in the gateway's namespace: log in, log out, and try the cookie once more. Prints JSON. */
const LOGIN_LOGOUT_JS = `
const [base, token] = process.argv.slice(1);
const login = await fetch(base + '/api/console/login', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ token }) });
const cookie = (login.headers.get('set-cookie') ?? '').split(';')[0];
const { csrfToken } = await login.json();
const logout = await fetch(base + '/api/console/logout', { method: 'POST', headers: { Cookie: cookie, 'X-CSRF-Token': csrfToken } });
const after = await fetch(base + '/api/sessions', { headers: { Cookie: cookie } });
console.log(JSON.stringify({ login: login.status, logout: logout.status, cookie, after: after.status }));
`;
const STATUS_JS = `
const [base, cookie] = process.argv.slice(1);
console.log((await fetch(base + '/api/sessions', { headers: { Cookie: cookie } })).status);
`;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function until<T>(what: string, probe: () => Promise<T | null | undefined | false>, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown = null;
  for (;;) {
    try {
      const value = await probe();
      if (value !== null && value !== undefined && value !== false) return value;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms${last === null ? '' : ` (${String(last)})`}`);
    await sleep(250);
  }
}

const sessionRows = (user?: string) => page.locator(user === undefined ? '[data-testid=session-row]' : `[data-testid=session-row][data-user="${user}"]`);

/** The gauge of a user: fraction of the limit used now, as the page shows it. */
async function gaugeFraction(user: string): Promise<number> {
  return Number(await page.locator(`[data-testid=user-row][data-user="${user}"] [data-testid=user-gauge]`).getAttribute('data-fraction'));
}

/** Confirms the open dialog; the page's reported result and when the confirmation was clicked. */
async function confirmDialog(value?: string): Promise<{ text: string; clickedAt: number }> {
  const dialog = page.locator('dialog[open]');
  await dialog.waitFor();
  if (value !== undefined) await dialog.locator('input').fill(value);
  const before = (await page.locator('[data-testid=outcome]').textContent()) ?? '';
  const clickedAt = Date.now();
  await dialog.locator('button[type=submit]').click();
  const text = await until('the action to report its result', async () => {
    const now = (await page.locator('[data-testid=outcome]').textContent()) ?? '';
    return now !== '' && now !== before ? now : null;
  }, 20_000);
  return { text, clickedAt };
}

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) throw new Error(`the console tests need Debian's chromium at ${CHROMIUM} (apt-get install chromium; scripts/test.sh does)`);
  ({ topo, files, gateway } = await startTestbed(2, USERS, SERVER_YAML));
  // A comment the console's edits must keep: the file on disk stays the operator's.
  writeFileSync(files.usersFile, `# users of the console e2e test; edited by the console, comments kept\n${readFileSync(files.usersFile, 'utf8')}`);

  // Chromium in the gateway's namespace: a wrapper that enters it and runs /usr/bin/chromium itself.
  profileDir = mkdtempSync(join(tmpdir(), 'qg-chromium-'));
  const wrapper = join(files.dir, 'chromium-in-gateway-ns.sh');
  writeFileSync(wrapper, `#!/bin/sh\nexec ip netns exec ${topo.server} ${CHROMIUM} "$@"\n`);
  chmodSync(wrapper, 0o755);
  context = await chromium.launchPersistentContext(profileDir, {
    executablePath: wrapper,
    headless: true,
    args: CHROMIUM_FLAGS,
    viewport: { width: 1280, height: 860 },
    timeout: 60_000,
  });
  page = context.pages()[0] ?? (await context.newPage());
  page.setDefaultTimeout(30_000);
}, 120_000);

afterAll(async () => {
  await context?.close().catch(() => undefined);
  if (profileDir !== undefined) rmSync(profileDir, { recursive: true, force: true });
  await stopTestbed({ topo, files });
});

describe('web console in chromium against a real gateway', () => {
  it('refuses a wrong token, logs in with the right one, and sets a strict session cookie', async () => {
    await page.goto(`${CONSOLE}/`);
    expect(page.url()).toBe(`${CONSOLE}/console/`);
    await page.locator('input[name=token]').fill('not-the-admin-token-000000');
    await page.locator('button[type=submit]').click();
    await expect.poll(() => page.locator('[data-testid=login-error]').textContent()).toBe('Wrong admin token.');
    expect(await context.cookies()).toEqual([]);
    await page.screenshot({ path: join(DOCS, 'console-login.png') });

    const loginAnswer = page.waitForResponse((r) => r.url().endsWith('/api/console/login') && r.status() === 200);
    await page.locator('input[name=token]').fill(TOKEN);
    await page.locator('button[type=submit]').click();
    const setCookie = (await (await loginAnswer).headerValue('set-cookie')) ?? '';
    expect(setCookie).toMatch(/^qg_console=v1\.[^;]+; Path=\/; HttpOnly; SameSite=Strict; Max-Age=\d+$/);
    // Plain HTTP here, so no Secure flag (the browser would never send it back); over TLS it is set.
    const cookies = await context.cookies();
    expect(cookies).toHaveLength(1);
    expect(cookies[0]).toMatchObject({ name: 'qg_console', httpOnly: true, sameSite: 'Strict', secure: false, path: '/' });
    expect(cookies[0]?.value).not.toContain(TOKEN);
    expect(await page.evaluate('document.cookie')).toBe('');
    await page.locator('[data-testid=link].live').waitFor();
    expect(page.url()).not.toContain(TOKEN);
  });

  it('shows two live sessions with moving rates and the gauge near the limit while iperf3 runs', async () => {
    alice = startClient(topo, topo.clients[0]!, files.clientConfig('alice', 'alice', 'alice-pw', { transport: 'quic' }), 'alice');
    bob = startClient(topo, topo.clients[1]!, files.clientConfig('bob', 'bob', 'bob-pw', { transport: 'h2' }), 'bob');
    await Promise.all([alice.waitForMsg('tunnel up', 30_000), bob.waitForMsg('tunnel up', 30_000)]);
    await until('two session rows', async () => (await sessionRows().count()) === 2);
    expect(await sessionRows('alice').locator('.tag').textContent()).toBe('QUIC');
    expect(await sessionRows('bob').locator('.tag').textContent()).toBe('HTTP/2');
    expect(await sessionRows('alice').locator('td.mono').first().textContent()).toMatch(/^198\.18\.\d+\.\d+/);

    // alice's upload runs through the whole rest of the file's traffic steps (the limit change included).
    aliceIperf = iperfIntervals(topo.clients[0]!, 5601, 45);
    aliceIperf.catch(() => undefined); // awaited (and its failure reported) by the limit test
    const bobIperf = iperfIntervals(topo.clients[1]!, 5602, 8);
    const samples: number[] = [];
    const highest = { alice: 0, bob: 0 };
    await until('both users near their limits on the gauge', async () => {
      samples.push(Number(await sessionRows('alice').getAttribute('data-rate-in')));
      highest.alice = Math.max(highest.alice, await gaugeFraction('alice'));
      highest.bob = Math.max(highest.bob, await gaugeFraction('bob'));
      return highest.alice >= 0.7 && highest.bob >= 0.7;
    }, 30_000);
    await sleep(1500);
    samples.push(Number(await sessionRows('alice').getAttribute('data-rate-in')));
    expect(new Set(samples).size, `rates seen: ${samples.join(', ')}`).toBeGreaterThan(1);
    expect(await gaugeFraction('alice')).toBeLessThanOrEqual(1);
    const gaugeText = (await page.locator('[data-user="alice"] [data-testid=user-gauge]').getAttribute('aria-valuetext')) ?? '';
    expect(gaugeText).toMatch(/bit\/s of 6 Mbit\/s$/);
    await page.screenshot({ path: join(DOCS, 'console-now.png'), fullPage: true });
    await page.setViewportSize({ width: 390, height: 844 });
    await sleep(500);
    await expectNoSidewaysScroll(['users', 'sessions']);
    await page.screenshot({ path: join(DOCS, 'console-now-390.png'), fullPage: true });
    await page.setViewportSize({ width: 1280, height: 860 });
    await bobIperf;
  }, 120_000);

  it('kills a session: it disappears and the client exits with its reason', async () => {
    // By keyboard: Enter opens the confirmation, Escape cancels it, Tab reaches the confirm button past Cancel.
    const bobKill = sessionRows('bob').locator('button');
    await bobKill.focus();
    await page.keyboard.press('Enter');
    await page.locator('dialog[open]').waitFor();
    await page.keyboard.press('Escape');
    await page.locator('dialog[open]').waitFor({ state: 'detached' });
    expect(await sessionRows('bob').count()).toBe(1);
    await bobKill.focus();
    await page.keyboard.press('Enter');
    await page.locator('dialog[open]').waitFor();
    expect(await page.evaluate('document.activeElement?.textContent')).toBe('Cancel');
    await page.keyboard.press('Tab');
    const before = (await page.locator('[data-testid=outcome]').textContent()) ?? '';
    await page.keyboard.press('Enter');
    const outcome = await until('the kill to report its result', async () => {
      const now = (await page.locator('[data-testid=outcome]').textContent()) ?? '';
      return now !== before && now !== '' ? now : null;
    });
    expect(outcome).toMatch(/^Killed session \S+ of bob\.$/);
    await until('bob gone from the page', async () => (await sessionRows('bob').count()) === 0);
    expect(await sessionRows('alice').count()).toBe(1);
    const closed = await bob.waitForMsg('the gateway closed the session and said not to reconnect', 15_000);
    expect(closed.reason).toBe('admin_kill');
    expect((await bob.exited).code).toBe(3);
  });

  it("changes alice's limit through the users file, and the measured rate follows within 2 s", async () => {
    await page.locator('[aria-label="Change the limit of alice"]').click();
    // From the click: the request, the file edit and the reload all count against the 2 s.
    const { text: outcome, clickedAt: changedAt } = await confirmDialog(SECOND_LIMIT);
    expect(outcome).toMatch(/^alice: bandwidth 6 Mbit\/s -> 1.5 Mbit\/s — written to .*users\.yaml and applied\.$/);
    const usersFile = readFileSync(files.usersFile, 'utf8');
    expect(usersFile).toContain('# users of the console e2e test; edited by the console, comments kept');
    expect(usersFile).toMatch(/bandwidth: 1\.5 ?Mbit\/s/);
    // The page shows it with its next snapshot (one a second).
    await expect.poll(() => page.locator('[data-user="alice"] [data-testid=user-limit]').textContent(), { timeout: 5000 }).toBe('1.5 Mbit/s');

    const measured = await aliceIperf!;
    const newLimitBps = parseRate(SECOND_LIMIT) * 8;
    const oldLimitBps = parseRate(FIRST_LIMIT) * 8;
    const at = (i: { start: number }): number => measured.startedAt + i.start * 1000;
    const before = measured.intervals.filter((i) => at(i) < changedAt - 1500 && i.start >= 2);
    const after = measured.intervals.filter((i) => at(i) >= changedAt + 2000);
    expect(before.length).toBeGreaterThan(2);
    expect(after.length).toBeGreaterThan(4);
    // Before: held near the old limit (well above the new one), so the check below discriminates.
    const beforeMean = before.reduce((a, i) => a + i.bps, 0) / before.length;
    expect(beforeMean).toBeGreaterThan(newLimitBps * 2);
    expect(beforeMean).toBeLessThan(oldLimitBps * 1.15);
    const afterMax = Math.max(...after.map((i) => i.bps));
    const firstUnder = measured.intervals.find((i) => at(i) >= changedAt && i.bps < newLimitBps * 1.3);
    console.log(
      `limit ${FIRST_LIMIT} -> ${SECOND_LIMIT}: before ${(beforeMean / 1e6).toFixed(2)} Mbit/s mean; from 2 s after the click ${(afterMax / 1e6).toFixed(2)} Mbit/s max; ` +
        `first 0.5 s interval under the new limit +30 % starts ${firstUnder === undefined ? '?' : ((at(firstUnder) - changedAt) / 1000).toFixed(2)} s after the click`,
    );
    for (const i of after) expect(i.bps, `interval ${i.start}-${i.end} s`).toBeLessThan(newLimitBps * 1.3);
    // The page shows it too: the gauge is against the new limit.
    expect((await page.locator('[data-user="alice"] [data-testid=user-gauge]').getAttribute('aria-valuemax')) ?? '').toBe(String(parseRate(SECOND_LIMIT)));
  }, 120_000);

  it('refuses state changes made with the cookie but without the CSRF token', async () => {
    const answers = await page.evaluate(async () => {
      const attempt = async (headers: Record<string, string>): Promise<{ status: number; code: string }> => {
        const res = await fetch('/api/users/alice/sessions', { method: 'DELETE', headers, credentials: 'same-origin' });
        return { status: res.status, code: ((await res.json()) as { error: { code: string } }).error.code };
      };
      return [await attempt({}), await attempt({ 'X-CSRF-Token': 'forged-0123456789' })];
    });
    expect(answers).toEqual([
      { status: 403, code: 'QG_ERR_ADMIN_FORBIDDEN' },
      { status: 403, code: 'QG_ERR_ADMIN_FORBIDDEN' },
    ]);
    expect(await sessionRows('alice').count()).toBe(1);
  });

  it('shows the ended session in the history, with its end reason, top users and rejections', async () => {
    // One refused login, for the rejections table.
    const intruder = startClient(topo, topo.clients[1]!, files.clientConfig('intruder', 'bob', 'not-bobs-password', { transport: 'h2', tun: 'qgc1' }), 'intruder');
    expect((await intruder.exited).code).toBe(3);
    await page.goto(`${CONSOLE}/console/#history`);
    const bobPast = page.locator('[data-testid=past-sessions] tr[data-reason="admin_kill"]');
    await until('the killed session in the history', async () => {
      if ((await bobPast.count()) > 0) return true;
      await page.reload();
      return false;
    });
    expect(await bobPast.locator('th').textContent()).toBe('bob');
    expect((await page.locator('[data-testid=top-users] tbody th').allTextContents()).sort()).toEqual(['alice', 'bob']);
    await until('the refused login under rejections', async () => {
      if ((await page.locator('[data-testid=rejections] tbody th').allTextContents()).includes('auth failed')) return true;
      await page.reload();
      return false;
    });
    await page.locator('details.as-table summary').click();
    const thisHour = page.locator('[data-testid=hourly-table] tbody tr').last();
    expect(Number(await thisHour.getAttribute('data-sessions'))).toBeGreaterThanOrEqual(2);
    await page.locator('[data-testid=search]').fill('bob');
    await until('the search to narrow the list to bob', async () => {
      const users = await page.locator('[data-testid=past-sessions] tbody th').allTextContents();
      return users.length > 0 && users.every((u) => u === 'bob');
    });
    const href = (await page.locator('[data-testid=csv]').getAttribute('href')) ?? '';
    expect(href).toMatch(/^\/api\/history\/sessions\?.*format=csv/);
    const csv = await page.evaluate(async (url) => (await fetch(url)).text(), href);
    expect(csv.split('\r\n')[0]).toBe('id,user,ipv4,ipv6,peer,transport,startedAt,endedAt,durationSeconds,bytesIn,bytesOut,status,endReason,endMessage,gateway');
    expect(csv).toMatch(/,bob,198\.18\.[^\r\n]*,admin_kill,/);
    await page.locator('[data-testid=search]').fill('');
    await sleep(800);
    await page.screenshot({ path: join(DOCS, 'console-history.png'), fullPage: true });
    await page.setViewportSize({ width: 390, height: 844 });
    await sleep(300);
    await expectNoSidewaysScroll(['past-sessions']);
    await page.setViewportSize({ width: 1280, height: 860 });
  });

  it('reconnects by itself after the gateway restarts; a cookie logged out before stays refused', async () => {
    await page.goto(`${CONSOLE}/console/#now`);
    await page.locator('[data-testid=link].live').waitFor();
    // A second login (Node's fetch inside the gateway's namespace), logged out at once.
    const revoked = JSON.parse((await topo.exec(topo.server, process.execPath, ['--input-type=module', '-e', LOGIN_LOGOUT_JS, CONSOLE, TOKEN])).stdout) as { login: number; logout: number; cookie: string; after: number };
    expect(revoked).toMatchObject({ login: 200, logout: 200, after: 401 });
    expect(gateway.stderrText.join('\n')).not.toContain(TOKEN);
    gateway.signal('SIGTERM');
    await gateway.exited;
    await page.locator('[data-testid=link].reconnecting').waitFor({ timeout: 20_000 });
    gateway = startGateway(topo, files);
    await gateway.waitForMsg('gateway up', 30_000);
    await page.locator('[data-testid=link].live').waitFor({ timeout: 30_000 });
    // Same login (the cookie survives a restart), and alice's client is back.
    await until('alice back on the page', async () => (await sessionRows('alice').count()) === 1, 30_000);
    // The new gateway process refuses the logged-out cookie (kept in its data directory), the page's still works.
    expect(Number((await topo.exec(topo.server, process.execPath, ['--input-type=module', '-e', STATUS_JS, CONSOLE, revoked.cookie])).stdout)).toBe(401);
    expect(await page.evaluate(async () => (await fetch('/api/sessions')).status)).toBe(200);
    const logged = gateway.stderrText.join('\n');
    expect(logged).not.toContain(TOKEN);
  }, 90_000);
});
