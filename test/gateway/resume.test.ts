/**
 * Resuming a session after a reconnect (issue 12 §1): the client proves it owns its old session with the resume
 * secret of that session's assignment; the gateway ends the old one at once (`resumed`: counted, in the history
 * and metrics, never a cap rejection) and gives the same addresses back. Real Gateway + operator surface over
 * in-memory parts and a fake clock.
 */
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { FakeClock } from '../../src/clock.js';
import type { UserConfig } from '../../src/config/types.js';
import type { CloseInfo } from '../../src/transport/types.js';
import { sessionLimits, testPasswordHash, userConfig } from '../support/config-fixture.js';
import { nextControl } from '../support/memory-gateway.js';
import { samples, startHarness, type Harness } from './operator-harness.js';

let hashes: Record<string, string> = {};
beforeAll(async () => {
  hashes = Object.fromEntries(await Promise.all(['alice', 'bob'].map(async (n) => [n, await testPasswordHash(`pw-${n}`)] as const)));
});
const user = (name: string, overrides: Partial<UserConfig> = {}): UserConfig => userConfig(name, { passwordHash: hashes[name] ?? '', ...overrides });

let h: Harness | null = null;
afterEach(async () => {
  await h?.cleanup();
  h = null;
});

/** Connect through admission and return the client's assignment. */
async function connectWith(harness: Harness, name: string, resume: { sessionId: string; secret: string } | null = null) {
  const outcome = await harness.listener.connect(name, `pw-${name}`, { resume });
  if ('refused' in outcome) return { refused: outcome.refused } as const;
  const assign = await nextControl(outcome.pair.client, 'assign');
  return { pair: outcome.pair, assign } as const;
}

describe('session resume', () => {
  it('under at_limit reject with max_sessions 1, a reconnect with the resume secret ends the ghost and keeps the addresses', async () => {
    h = await startHarness({
      clock: new FakeClock(),
      config: { users: [user('alice', { maxSessions: 1 })], limits: sessionLimits({ idleTimeoutMs: 0, atLimit: 'reject' }) },
    });
    const first = await connectWith(h, 'alice');
    if ('refused' in first) throw new Error('first connect refused');
    expect(first.assign.resumeSecret).toMatch(/^[A-Za-z0-9_-]{43}$/);
    const oldClosed = new Promise<CloseInfo>((resolve) => void first.pair.client.closed.then(resolve));

    // The old link is dead without a word (the gateway's idle timeout has not fired): without the claim the
    // cap refuses the reconnect.
    const plain = await connectWith(h, 'alice');
    expect('refused' in plain && plain.refused).toMatchObject({ status: 429, code: 'user_limit' });

    const second = await connectWith(h, 'alice', { sessionId: first.assign.sessionId, secret: first.assign.resumeSecret! });
    if ('refused' in second) throw new Error(`resume refused: ${JSON.stringify(second.refused)}`);
    expect(second.assign.ipv4).toEqual(first.assign.ipv4);
    expect(second.assign.ipv6).toEqual(first.assign.ipv6);
    expect(second.assign.sessionId).not.toBe(first.assign.sessionId);
    expect(second.assign.resumeSecret).not.toBe(first.assign.resumeSecret);
    expect((await oldClosed).reason).toBe('resumed');

    const sessions = h.gateway.sessions;
    expect(sessions.size).toBe(1);
    expect(sessions.list()[0]!.id).toBe(second.assign.sessionId);
    const stats = sessions.stats();
    expect(stats.ended.resumed).toBe(1);
    expect(stats.rejections.user_limit).toBe(1); // only the plain attempt
    const metrics = samples(await (await h.call('/metrics')).text());
    expect(metrics.get('quicgate_sessions_ended_total{reason="resumed"}')).toBe(1);
    await h.surface.history?.flush();
    expect(h.rows<{ id: string; close_reason: string | null }>('SELECT id, close_reason FROM sessions ORDER BY started_at, id')).toContainEqual({
      id: first.assign.sessionId,
      close_reason: 'resumed',
    });
    // The secret is never logged.
    const logged = JSON.stringify(h.log.lines);
    expect(logged).not.toContain(first.assign.resumeSecret);
    expect(logged).not.toContain(second.assign.resumeSecret);
  });

  it('refuses a wrong secret, another user\'s session and a secret of an ended session as a resume (no session ends)', async () => {
    h = await startHarness({
      clock: new FakeClock(),
      config: { users: [user('alice', { maxSessions: 1 }), user('bob')], limits: sessionLimits({ idleTimeoutMs: 0, atLimit: 'reject' }) },
    });
    const a = await connectWith(h, 'alice');
    const b = await connectWith(h, 'bob');
    if ('refused' in a || 'refused' in b) throw new Error('connect refused');
    const secret = a.assign.resumeSecret!;
    const flipped = (secret[0] === 'A' ? 'B' : 'A') + secret.slice(1);

    const wrong = await connectWith(h, 'alice', { sessionId: a.assign.sessionId, secret: flipped });
    expect('refused' in wrong && wrong.refused).toMatchObject({ code: 'user_limit' });
    const short = await connectWith(h, 'alice', { sessionId: a.assign.sessionId, secret: secret.slice(0, 10) });
    expect('refused' in short && short.refused).toMatchObject({ code: 'user_limit' });
    // bob presents alice's session: a new session of bob's, alice's stays.
    const stolen = await connectWith(h, 'bob', { sessionId: a.assign.sessionId, secret });
    expect('refused' in stolen).toBe(false);
    expect(h.gateway.sessions.get(a.assign.sessionId)?.state.kind).toBe('open');
    expect(h.gateway.sessions.stats().ended.resumed).toBe(0);
    expect(h.gateway.sessions.stats().resumeRefused).toBe(1);

    // After the old session ended for another reason, its claim just opens a new session (the address comes
    // back from the pool's memory of the user's last one).
    h.gateway.sessions.kill(a.assign.sessionId);
    const late = await connectWith(h, 'alice', { sessionId: a.assign.sessionId, secret });
    if ('refused' in late) throw new Error('late connect refused');
    expect(late.assign.ipv4).toEqual(a.assign.ipv4);
    expect(h.gateway.sessions.stats().resumeRefused).toBe(2);
    const metrics = samples(await (await h.call('/metrics')).text());
    expect(metrics.get('quicgate_resume_refused_total')).toBe(2);
    expect(metrics.get('quicgate_session_listener_errors_total')).toBe(0);
  });

  it('does not count the resumed session against the total limit either', async () => {
    h = await startHarness({
      clock: new FakeClock(),
      config: { users: [user('alice')], limits: sessionLimits({ idleTimeoutMs: 0, maxTotalSessions: 1 }) },
    });
    const a = await connectWith(h, 'alice');
    if ('refused' in a) throw new Error('connect refused');
    const again = await connectWith(h, 'alice', { sessionId: a.assign.sessionId, secret: a.assign.resumeSecret! });
    expect('refused' in again).toBe(false);
    expect(h.gateway.sessions.size).toBe(1);
  });
});
