import type { Clock, TimerHandle } from '../../src/clock.js';

/**
 * A clock whose timers allocate nothing: a few timer slots with handles made once, fired by advance(). Its time
 * is held as a tagged value (the field once held a string), so handing a batch's time on to shapeOrDrop, a call
 * V8 need not inline, passes the same boxed number instead of boxing a fresh one per call: what is measured is
 * the scheduler, not V8's calling convention for doubles.
 */
export class BareClock implements Clock {
  t: number = 'tagged' as unknown as number;
  private readonly due = new Float64Array(4).fill(Infinity);
  private readonly fns: ((() => void) | null)[] = [null, null, null, null];
  private readonly handles: TimerHandle[] = [0, 1, 2, 3].map((i) => ({ cancel: () => this.clear(i) }));
  constructor() {
    this.t = 0;
  }
  now(): number {
    return this.t;
  }
  wallNow(): number {
    return this.t;
  }
  setTimeout(fn: () => void, ms: number): TimerHandle {
    const i = this.fns.indexOf(null);
    if (i < 0) throw new Error('BareClock: more than 4 timers');
    this.fns[i] = fn;
    this.due[i] = this.t + ms;
    return this.handles[i]!;
  }
  setInterval(): TimerHandle {
    throw new Error('not used');
  }
  clear(i: number): void {
    this.fns[i] = null;
    this.due[i] = Infinity;
  }
  advance(ms: number): void {
    this.t += ms;
    for (;;) {
      let next = -1;
      for (let i = 0; i < 4; i++) if (this.fns[i] !== null && this.due[i]! <= this.t && (next < 0 || this.due[i]! < this.due[next]!)) next = i;
      if (next < 0) return;
      const fn = this.fns[next]!;
      this.clear(next);
      fn();
    }
  }
}
