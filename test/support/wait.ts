/** Waiting for in-memory parts that deliver on later macrotasks (setImmediate), for unit tests. */

/** One macrotask. */
export const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/** `rounds` macrotasks. */
export async function settle(rounds = 1): Promise<void> {
  for (let i = 0; i < rounds; i++) await tick();
}

/** Resolves once `cond()` holds, checking after each macrotask; fails naming `what` after `tries`. */
export async function until(cond: () => boolean, what: string, tries = 300): Promise<void> {
  for (let i = 0; i < tries; i++) {
    if (cond()) return;
    await tick();
  }
  throw new Error(`timed out waiting for ${what}`);
}
