/**
 * Reloads one at a time: SIGHUP and POST /api/reload may overlap, and two reloads that read the files in one
 * order and apply them in the other would leave the older file in force. Each queued reload reads the files
 * only when its turn comes, so the last file read is the one applied last.
 */
export class ReloadQueue<T> {
  private tail: Promise<unknown> = Promise.resolve();

  constructor(private readonly task: () => Promise<T>) {}

  /** Runs the task after every earlier one has settled; a failed reload does not block the next. */
  run(): Promise<T> {
    const result = this.tail.then(() => this.task());
    this.tail = result.catch(() => undefined);
    return result;
  }
}
