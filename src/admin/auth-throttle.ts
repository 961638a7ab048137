/**
 * Admin token guessing is throttled per source like tunnel passwords: the tunnel's AdmissionThrottle
 * (src/gateway/admission.ts, same source key: IPv4 address or IPv6 /64, same budget `auth_attempts`).
 *
 *   a request that presents the token (console login, bearer header) ─► attempt(source)
 *     budget left ─► the token is checked ─► right: succeeded() gives the attempt back; wrong: counted
 *     budget spent ─► 429 QG_ERR_ADMIN_THROTTLED with Retry-After (until the window ends), the token is not
 *     even compared, so a throttled guesser learns nothing
 *   a console cookie is an HMAC: not guessable, not throttled.
 */
import type { Logger } from 'pino';
import type { Clock } from '../clock.js';
import { AdmissionThrottle } from '../gateway/admission.js';
import { AdminHttpError } from './http-error.js';

export interface AdminAuthStats {
  /** Attempts with a wrong token (console login or bearer). */
  readonly wrongToken: number;
  /** Attempts refused with 429 before the token was compared. */
  readonly throttled: number;
}

export interface AdminAuthThrottleOptions {
  readonly perSourcePerMinute: number;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly windowMs?: number;
}

export class AdminAuthThrottle {
  private readonly throttle: AdmissionThrottle;
  private wrong = 0;

  constructor(options: AdminAuthThrottleOptions) {
    this.throttle = new AdmissionThrottle(options);
  }

  /**
   * Checks `isRight()` within the source's budget. Resolves to whether the token was right; throws the 429
   * when the source has spent its budget (without calling isRight).
   */
  async check(source: string | undefined, isRight: () => boolean): Promise<boolean> {
    const key = source ?? 'unknown';
    if (!(await this.throttle.admit(key))) {
      const seconds = Math.max(1, Math.ceil(this.throttle.retryAfterMs / 1000));
      throw new AdminHttpError(429, 'QG_ERR_ADMIN_THROTTLED', `too many wrong admin tokens from this address; try again in ${seconds} s`, {
        headers: { 'Retry-After': String(seconds) },
      });
    }
    if (isRight()) {
      await this.throttle.succeeded(key);
      return true;
    }
    this.wrong++;
    return false;
  }

  get stats(): AdminAuthStats {
    return { wrongToken: this.wrong, throttled: this.throttle.throttled };
  }

  close(): void {
    this.throttle.close();
  }
}
