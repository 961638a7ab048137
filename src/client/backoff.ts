/**
 * Reconnect delays: exponential from `initialMs` up to `maxMs`, with "equal jitter" (half fixed, half random)
 * so that many clients cut off by one gateway restart do not all return in the same instant.
 */
export interface BackoffOptions {
  readonly initialMs: number;
  readonly maxMs: number;
  /** null: unlimited attempts. */
  readonly maxAttempts: number | null;
  readonly random?: () => number;
}

export class Backoff {
  private attempt = 0;
  private readonly random: () => number;

  constructor(private readonly options: BackoffOptions) {
    this.random = options.random ?? Math.random;
  }

  /** Attempts made since the last success. */
  get attempts(): number {
    return this.attempt;
  }

  get exhausted(): boolean {
    return this.options.maxAttempts !== null && this.attempt >= this.options.maxAttempts;
  }

  /** Delay before the next attempt, counting it. */
  next(): number {
    const ceiling = Math.min(this.options.maxMs, this.options.initialMs * 2 ** Math.min(this.attempt, 30));
    this.attempt++;
    return ceiling / 2 + (ceiling / 2) * this.random();
  }

  reset(): void {
    this.attempt = 0;
  }
}
