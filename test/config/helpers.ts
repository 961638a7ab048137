/** Shared by the config tests: catch a config error and look at its problems. */
import { fileURLToPath } from 'node:url';
import { isQuicgateError, type ErrorCode, type QuicgateError } from '../../src/errors.js';
import type { ConfigIssue } from '../../src/config/load.js';

export const FIXTURES = fileURLToPath(new URL('../fixtures/config/', import.meta.url));

export function fixture(name: string): string {
  return `${FIXTURES}${name}`;
}

export async function thrown(fn: () => unknown, code: ErrorCode): Promise<QuicgateError> {
  try {
    await fn();
  } catch (err) {
    if (isQuicgateError(err, code)) return err;
    throw err;
  }
  throw new Error(`expected ${code}, nothing was thrown`);
}

/** The problems of a QG_ERR_CONFIG_INVALID, checked to match the message line by line. */
export async function problems(fn: () => unknown): Promise<ConfigIssue[]> {
  const err = await thrown(fn, 'QG_ERR_CONFIG_INVALID');
  const issues = err.details?.['issues'] as ConfigIssue[];
  const lines = err.message.split('\n').slice(1);
  if (lines.length !== issues.length) throw new Error(`message has ${lines.length} problem lines, details ${issues.length}`);
  return issues;
}

/** The one problem at `path`; fails when there is none. */
export function problemAt(issues: readonly ConfigIssue[], path: string): ConfigIssue {
  const found = issues.find((i) => i.path === path);
  if (!found) throw new Error(`no problem at ${path}; got: ${issues.map((i) => i.path).join(', ')}`);
  return found;
}
