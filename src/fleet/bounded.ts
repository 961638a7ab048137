/**
 * A wait on Redis with a bound: the fleet never lets a slow Redis hold a connect or an attempt longer than
 * `ms`. The work goes on; `onLate` gets its result if it comes after the bound (to give back what it took).
 */
import type { Clock } from '../clock.js';

export function bounded<T>(clock: Clock, ms: number, work: Promise<T>, onLate: (value: T) => void = () => undefined): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    let late = false;
    const timer = clock.setTimeout(() => {
      late = true;
      reject(new Error(`Redis did not answer within ${ms} ms`));
    }, ms);
    work.then(
      (value) => {
        timer.cancel();
        if (late) onLate(value);
        else resolve(value);
      },
      (err: unknown) => {
        timer.cancel();
        reject(err);
      },
    );
  });
}
