#!/usr/bin/env node
// bench/cpuprofile-top.mjs - where a quicgate process spent its CPU, from a V8 .cpuprofile (node --cpu-prof).
//
//   QG_NODE_OPTS="--cpu-prof --cpu-prof-dir=/tmp/qgb-prof" PHASES=qg_h2 SUITE=tcp_up REPS=1 bench/compare.sh
//   node bench/cpuprofile-top.mjs /tmp/qgb-prof/*.cpuprofile [N]
//
// Prints per profile: total sampled time, idle/GC/program share, the top N (default 25) functions by self
// time (function, file:line, ms, %), and self time summed per package/file group (node internals, the
// webtransport library, quicgate src, ...).
import { readFileSync } from 'node:fs';

const args = process.argv.slice(2);
const n = /^\d+$/.test(args.at(-1) ?? '') ? Number(args.pop()) : 25;
if (args.length === 0) {
  console.error('usage: cpuprofile-top.mjs FILE.cpuprofile... [N]');
  process.exit(2);
}

function group(url) {
  if (url === '') return '(native/vm)';
  if (url.startsWith('node:')) return url.split('/')[0].replace(/^node:internal.*/, 'node:internal') === 'node:internal' ? `node:${url.slice(5).split('/').slice(0, 2).join('/')}` : url;
  const m = url.match(/node_modules\/((?:@[^/]+\/)?[^/]+)\/(.*)$/);
  if (m) return `${m[1]}/${m[2].split('/').slice(-2).join('/')}`;
  const d = url.match(/\/(dist|src)\/(.*)$/);
  if (d) return `quicgate:${d[2]}`;
  return url;
}

for (const file of args) {
  const prof = JSON.parse(readFileSync(file, 'utf8'));
  const byId = new Map(prof.nodes.map((node) => [node.id, node]));
  const self = new Map();
  const dts = prof.timeDeltas;
  for (let i = 0; i < prof.samples.length; i++) {
    const id = prof.samples[i];
    self.set(id, (self.get(id) ?? 0) + (dts[i] ?? 0));
  }
  const perFn = new Map();
  const perGroup = new Map();
  let total = 0;
  for (const [id, us] of self) {
    const node = byId.get(id);
    const cf = node.callFrame;
    const key = `${cf.functionName || '(anonymous)'}  ${cf.url.replace(/^.*\/(node_modules|dist|src)\//, '$1/')}:${cf.lineNumber + 1}`;
    perFn.set(key, (perFn.get(key) ?? 0) + us);
    const g = ['(idle)', '(garbage collector)', '(program)'].includes(cf.functionName) ? cf.functionName : group(cf.url);
    perGroup.set(g, (perGroup.get(g) ?? 0) + us);
    total += us;
  }
  const busy = total - (perGroup.get('(idle)') ?? 0);
  console.log(`\n== ${file}: ${(total / 1e6).toFixed(2)} s sampled, ${(busy / 1e6).toFixed(2)} s not idle`);
  console.log(`-- top ${n} functions by self time (% of not-idle)`);
  for (const [k, us] of [...perFn].filter(([k]) => !k.startsWith('(idle)')).sort((a, b) => b[1] - a[1]).slice(0, n)) {
    console.log(`${(us / 1e3).toFixed(0).padStart(8)} ms ${((100 * us) / busy).toFixed(1).padStart(5)} %  ${k}`);
  }
  console.log('-- self time per group');
  for (const [g, us] of [...perGroup].filter(([g]) => g !== '(idle)').sort((a, b) => b[1] - a[1]).slice(0, n)) {
    console.log(`${(us / 1e3).toFixed(0).padStart(8)} ms ${((100 * us) / busy).toFixed(1).padStart(5)} %  ${g}`);
  }
}
