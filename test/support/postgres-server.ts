/**
 * A real PostgreSQL (Debian's postgresql package) for tests: initdb into a temp directory, the postmaster on
 * its own loopback port with password (scram) auth, and a unix socket in that directory: sockets live in the
 * file system, so a gateway in a network namespace of its own reaches the server through it (socketUrl). As root it runs as the `postgres` user
 * (the postmaster refuses root). stop() is an immediate shutdown (SIGQUIT: no checkpoint, like an outage) and
 * start() brings it back on the same port and data. dispose() stops it and removes the directory; a process
 * exit handler does the same should a test fail before dispose(). pause() SIGSTOPs the postmaster and every
 * process it forked (a server that hangs: connections stay open, nothing answers, new connections wait in the
 * listen backlog), resume() SIGCONTs them; dispose() resumes first. fsync is off (the OS keeps what a killed
 * postmaster wrote); commits stay synchronous, so a stop loses no committed row.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { freePort, waitForPort } from './redis-server.js';

export interface TestPostgres {
  readonly port: number;
  readonly password: string;
  /** URL of a database on this server (default: the `postgres` database), with the password in it. */
  url(database?: string): string;
  /** The same, through the unix socket (reachable from any network namespace on this machine). */
  socketUrl(database?: string): string;
  /** Creates an empty database and returns its URL. */
  createDatabase(name: string): Promise<string>;
  /** Start again after stop(), on the same port and data. */
  start(): Promise<void>;
  /** Immediate shutdown (SIGQUIT to the postmaster): connections drop, nothing is checkpointed. */
  stop(): Promise<void>;
  /** SIGSTOP to the postmaster and all its processes: the server hangs (no answer, no error) until resume(). */
  pause(): void;
  /** SIGCONT to the processes pause() stopped (and any forked since): the server answers again. */
  resume(): void;
  /** Stop and remove the directory. */
  dispose(): Promise<void>;
  /** Whether the server is running now. */
  readonly running: boolean;
}

/** The newest Debian PostgreSQL's binaries directory; fails (never skips) when the package is missing. */
export function postgresBinDir(): string {
  const root = '/usr/lib/postgresql';
  const versions = existsSync(root) ? readdirSync(root).filter((v) => existsSync(join(root, v, 'bin', 'postgres'))) : [];
  const newest = versions.sort((a, b) => Number(b) - Number(a))[0];
  if (newest === undefined) throw new Error(`no PostgreSQL under ${root}: install Debian's postgresql package (scripts/test.sh does)`);
  return join(root, newest, 'bin');
}

export async function startTestPostgres(): Promise<TestPostgres> {
  const bin = postgresBinDir();
  const port = await freePort();
  const password = 'qg-test-secret';
  const dir = mkdtempSync(join(tmpdir(), 'qg-postgres-'));
  const data = join(dir, 'data');
  // The postmaster refuses to run as root: as root, everything runs as the package's `postgres` user.
  const asRoot = userInfo().uid === 0;
  const owner = asRoot ? postgresUser() : null;
  const ids = owner === null ? {} : { uid: owner.uid, gid: owner.gid };
  if (owner !== null) chownSync(dir, owner.uid, owner.gid);
  const pwfile = join(dir, 'pwfile');
  writeFileSync(pwfile, `${password}\n`, { mode: 0o600 });
  if (owner !== null) chownSync(pwfile, owner.uid, owner.gid);

  let removed = false;
  let child: ChildProcess | null = null;
  let paused = false;
  /** The postmaster first, then the processes it forked (backends, checkpointer, walwriter, ...). */
  const serverPids = (): number[] => {
    const root = child?.pid;
    return root === undefined ? [] : [root, ...childPids(root)];
  };
  const signalAll = (signal: NodeJS.Signals): void => {
    for (const pid of serverPids()) {
      try {
        process.kill(pid, signal);
      } catch {
        // exited meanwhile
      }
    }
  };
  const removeNow = (): void => {
    if (removed) return;
    removed = true;
    if (paused) signalAll('SIGCONT');
    child?.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  };
  process.once('exit', removeNow);

  const init = spawnSync(
    join(bin, 'initdb'),
    ['-D', data, '-U', 'postgres', '--auth-local=scram-sha-256', '--auth-host=scram-sha-256', `--pwfile=${pwfile}`, '--locale=C', '-E', 'UTF8', '--no-sync'],
    { ...ids, encoding: 'utf8' },
  );
  if (init.status !== 0) {
    removeNow();
    throw new Error(`initdb failed (${init.status}): ${init.stderr}`);
  }

  const start = async (): Promise<void> => {
    if (child !== null) return;
    const args = ['-D', data, '-p', String(port), '-c', 'listen_addresses=127.0.0.1', '-c', `unix_socket_directories=${dir}`, '-c', 'fsync=off',
      '-c', 'full_page_writes=off', '-c', 'shared_buffers=16MB', '-c', 'max_connections=60'];
    const proc = spawn(join(bin, 'postgres'), args, { ...ids, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    proc.stderr?.on('data', (b: Buffer) => void (stderr = (stderr + b.toString()).slice(-4000)));
    child = proc;
    proc.once('exit', () => {
      if (child === proc) child = null;
    });
    try {
      await waitForPort(port, 20_000);
      await waitForQueries(port, password, 20_000);
    } catch (err) {
      throw new Error(`${(err as Error).message}; postgres said: ${stderr}`);
    }
  };
  const stop = async (): Promise<void> => {
    const proc = child;
    if (proc === null) return;
    child = null;
    await new Promise<void>((resolve) => {
      proc.once('exit', () => resolve());
      proc.kill('SIGQUIT');
    });
  };
  try {
    await start();
  } catch (err) {
    removeNow();
    throw err;
  }
  const url = (database = 'postgres'): string => `postgres://postgres:${password}@127.0.0.1:${port}/${database}`;
  return {
    port,
    password,
    url,
    socketUrl: (database = 'postgres') => `postgres://postgres:${password}@localhost/${database}?host=${encodeURIComponent(dir)}&port=${port}`,
    async createDatabase(name: string): Promise<string> {
      const client = new pg.Client({ connectionString: url() });
      await client.connect();
      try {
        await client.query(`CREATE DATABASE "${name.replace(/"/g, '')}"`);
      } finally {
        await client.end();
      }
      return url(name);
    },
    start,
    stop,
    pause() {
      if (child === null) throw new Error('pause(): the test PostgreSQL is not running');
      paused = true;
      signalAll('SIGSTOP');
    },
    resume() {
      paused = false;
      signalAll('SIGCONT');
    },
    async dispose() {
      if (paused) signalAll('SIGCONT');
      paused = false;
      await stop();
      removeNow();
      process.removeListener('exit', removeNow);
    },
    get running() {
      return child !== null;
    },
  };
}

/** The processes whose parent is `pid` (from /proc: no tool needed). */
function childPids(pid: number): number[] {
  const out: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      // Field 4 of /proc/<pid>/stat is the parent; the name (field 2) is in parentheses and may hold spaces.
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      if (Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === pid) out.push(Number(name));
    } catch {
      // exited meanwhile
    }
  }
  return out;
}

function postgresUser(): { uid: number; gid: number } {
  const r = spawnSync('id', ['-u', 'postgres'], { encoding: 'utf8' });
  const g = spawnSync('id', ['-g', 'postgres'], { encoding: 'utf8' });
  if (r.status !== 0 || g.status !== 0) throw new Error('running as root but there is no postgres user (Debian\'s postgresql package creates it)');
  return { uid: Number(r.stdout.trim()), gid: Number(g.stdout.trim()) };
}

/** The port accepting connections is not enough: the server may still be starting up ("the database system is starting up"). */
async function waitForQueries(port: number, password: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const client = new pg.Client({ host: '127.0.0.1', port, user: 'postgres', password, database: 'postgres' });
    try {
      await client.connect();
      await client.query('SELECT 1');
      await client.end();
      return;
    } catch (err) {
      await client.end().catch(() => undefined);
      if (Date.now() > deadline) throw new Error(`PostgreSQL on port ${port} did not answer within ${timeoutMs} ms: ${(err as Error).message}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}
