/**
 * The console's backend views over a real Gateway with its history file: the overview snapshot, the hourly
 * series and past-session search from SQLite, and user edits that go through the users file (comments kept)
 * and a real reload.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { hourlyViewSchema, overviewViewSchema, pastSessionsViewSchema } from '../../src/admin/schemas.js';
import { loadUsersFile } from '../../src/config/load.js';
import { testPasswordHash } from '../support/config-fixture.js';
import { startHarness, type Harness } from './operator-harness.js';

let h: Harness | null = null;
let dir: string;
let usersFile: string;
let hashes: Record<string, string> = {};

beforeAll(async () => {
  hashes = Object.fromEntries(await Promise.all(['alice', 'bob'].map(async (n) => [n, await testPasswordHash(`pw-${n}`)] as const)));
});

afterEach(async () => {
  await h?.cleanup();
  h = null;
  rmSync(dir, { recursive: true, force: true });
});

function writeUsers(): string {
  dir = mkdtempSync(path.join(tmpdir(), 'qg-console-users-'));
  usersFile = path.join(dir, 'users.yaml');
  writeFileSync(
    usersFile,
    [
      '# the operator keeps notes here',
      'users:',
      '  - name: alice # the team lead',
      `    password_hash: "${hashes.alice}"`,
      '    bandwidth: 10 Mbit/s',
      '  - name: bob',
      `    password_hash: "${hashes.bob}"`,
      '    bandwidth: unlimited',
      '',
    ].join('\n'),
  );
  return usersFile;
}

async function startWithUsersFile(): Promise<Harness> {
  const users = await loadUsersFile(writeUsers());
  return startHarness({
    config: { users, usersFile },
    reload: async (gateway) => gateway.reload({ ...gateway.currentConfig, users: await loadUsersFile(usersFile) }),
  });
}

const patch = (harness: Harness, name: string, body: unknown): Promise<Response> =>
  harness.call(`/api/users/${name}`, { method: 'PATCH', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });

describe('user edits from the console', () => {
  it('write the users file in place, keeping its comments, then reload: the live bucket follows', async () => {
    h = await startWithUsersFile();
    await h.connect('alice');
    const res = await patch(h, 'alice', { bandwidth: '2 Mbit/s' });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({
      user: 'alice',
      file: usersFile,
      changes: ['bandwidth 10 Mbit/s -> 2 Mbit/s'],
      reload: { bandwidthChanged: ['alice'], usersRemoved: [], sessionsClosed: 0, needRestart: [], changed: [{ key: 'users', effect: 'live' }] },
    });
    const text = readFileSync(usersFile, 'utf8');
    expect(text).toContain('# the operator keeps notes here');
    expect(text).toContain('# the team lead');
    expect(text).toMatch(/bandwidth: 2 ?Mbit\/s/);
    expect(h.gateway.currentConfig.users.find((u) => u.name === 'alice')?.bandwidth).toBe(250_000);
    expect(h.gateway.registry.bucketOf('alice')?.rate).toBe(250_000);
    const overview = overviewViewSchema.parse(await (await h.call('/api/overview')).json());
    expect(overview.users.find((u) => u.name === 'alice')).toMatchObject({ bandwidth: 250_000, sessions: 1 });

    // Same settings again: nothing written, no reload.
    const again = await patch(h, 'alice', { bandwidth: 250_000 });
    expect(await again.json()).toEqual({ user: 'alice', file: usersFile, changes: [], reload: null });
  });

  it("disable ends the user's sessions through the reload; enable lets them back", async () => {
    h = await startWithUsersFile();
    await h.connect('bob');
    const off = (await (await patch(h, 'bob', { disabled: true })).json()) as { changes: string[]; reload: { sessionsClosed: number } };
    expect(off.changes).toEqual(['disabled']);
    expect(off.reload.sessionsClosed).toBe(1);
    expect(readFileSync(usersFile, 'utf8')).toMatch(/name: bob\n(.*\n)*\s+disabled: true/);
    await expect(h.connect('bob')).rejects.toThrow(/refused/);
    const on = (await (await patch(h, 'bob', { disabled: false })).json()) as { changes: string[] };
    expect(on.changes).toEqual(['enabled']);
    await h.connect('bob');
  });

  it('are refused with 409 when the users are inline in the server config', async () => {
    h = await startHarness({ config: { users: await loadUsersFile(writeUsers()) } });
    const res = await patch(h, 'alice', { disabled: true });
    expect(res.status).toBe(409);
    const body = (await res.json()) as { error: { code: string; message: string } };
    expect(body.error.code).toBe('QG_ERR_CONFIG_INVALID');
    expect(body.error.message).toMatch(/inline/);
  });
});

describe('history views', () => {
  it('count sessions and bytes per hour and find past sessions by user, address and end reason', async () => {
    h = await startWithUsersFile();
    const a = await h.connect('alice');
    await h.sendFromClient(a.pair, a.session, 1000);
    const b = await h.connect('bob', 'h3');
    expect((await h.call(`/api/sessions/${a.session.id}`, { method: 'DELETE' })).status).toBe(200);
    h.clock.advance(1000);

    const hourly = hourlyViewSchema.parse(await (await h.call('/api/history/hourly?window_hours=3')).json());
    expect(hourly.available).toBe(true);
    expect(hourly.hours).toHaveLength(3);
    const last = hourly.hours.at(-1);
    expect(last?.sessions).toBe(2);
    expect(last?.bytesIn).toBeGreaterThanOrEqual(1000);
    expect(hourly.hours.slice(0, 2).every((x) => x.sessions === 0)).toBe(true);

    const all = pastSessionsViewSchema.parse(await (await h.call('/api/history/sessions')).json());
    expect(all.sessions.map((s) => s.user).sort()).toEqual(['alice', 'bob']);
    const killed = pastSessionsViewSchema.parse(await (await h.call('/api/history/sessions?q=ADMIN_kill')).json());
    expect(killed.sessions).toHaveLength(1);
    expect(killed.sessions[0]).toMatchObject({ id: a.session.id, user: 'alice', status: 'closed', endReason: 'admin_kill', transport: 'h2' });
    expect(killed.sessions[0]?.bytesIn).toBeGreaterThanOrEqual(1000);
    const byAddress = pastSessionsViewSchema.parse(await (await h.call(`/api/history/sessions?q=${encodeURIComponent(b.session.ipv4 ?? '')}`)).json());
    expect(byAddress.sessions.map((s) => s.id)).toEqual([b.session.id]);
    expect(byAddress.sessions[0]).toMatchObject({ status: 'open', endedAt: null, endReason: null });
    // LIKE wildcards in the search are literal.
    const wildcard = pastSessionsViewSchema.parse(await (await h.call('/api/history/sessions?q=%25')).json());
    expect(wildcard.sessions).toEqual([]);
  });
});
