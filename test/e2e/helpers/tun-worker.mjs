// e2e helper (run inside a namespace): a worker thread opens a TUN with the raw addon and starts reading, then
// the worker is terminated with the device still open. Regression check: the process must not crash (the
// addon's pending uv_close callback must outlive the worker) and the device must be gone afterwards.
// Prints {"opened":name,"linksAfter":n}. Plain .mjs because tsx does not hook worker threads.
import { execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { Worker, isMainThread, parentPort } from 'node:worker_threads';

const addonPath = new URL('../../../native/build/Release/quicgate_tun.node', import.meta.url).pathname;

if (isMainThread) {
  const worker = new Worker(new URL(import.meta.url));
  const opened = await new Promise((resolve, reject) => {
    worker.once('message', resolve);
    worker.once('error', reject);
  });
  await worker.terminate();
  await new Promise((resolve) => setTimeout(resolve, 100));
  const links = execFileSync('ip', ['-o', 'link', 'show'], { encoding: 'utf8' });
  const linksAfter = links.split('\n').filter((line) => line.includes(`${opened}:`)).length;
  process.stdout.write(`${JSON.stringify({ opened, linksAfter })}\n`);
} else {
  const { Tun } = createRequire(import.meta.url)(addonPath);
  const tun = new Tun('qgtw%d');
  tun.startReading(Buffer.alloc(64 * 1536), new Uint32Array(64), 1536, () => undefined);
  parentPort.postMessage(tun.name);
}
