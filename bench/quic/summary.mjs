#!/usr/bin/env node
// bench/quic/summary.mjs RESULTS.txt - medians (min..max) per case of a run.sh results file, as a Markdown table.
import { readFileSync } from 'node:fs';
const rows = new Map();
for (const line of readFileSync(process.argv[2], 'utf8').split('\n')) {
  const m = line.match(/^(\S+)\s+(\d+) dgram\/s\s+([\d.]+) Mbit\/s\s+cpu\s+([\d.]+) s\s+([\d.]+) cpu-s\/GB\s+load ([\d.]+)/);
  if (!m) continue;
  const r = rows.get(m[1]) ?? { d: [], mb: [], gb: [], load: [] };
  r.d.push(+m[2]); r.mb.push(+m[3]); r.gb.push(+m[5]); r.load.push(+m[6]);
  rows.set(m[1], r);
}
const med = (a) => { const s = [...a].sort((x, y) => x - y); return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2; };
const fmt = (a, digits = 0) => `${med(a).toFixed(digits)} (${Math.min(...a).toFixed(digits)}..${Math.max(...a).toFixed(digits)})`;
console.log('| case | runs | datagrams/s received | Mbit/s received | CPU s per GB (both processes) | load average |');
console.log('| --- | --- | --- | --- | --- | --- |');
for (const [name, r] of rows) {
  console.log(`| ${name} | ${r.d.length} | ${r.d.some((x) => x > 0) ? fmt(r.d) : '-'} | ${fmt(r.mb)} | ${fmt(r.gb, 1)} | ${Math.min(...r.load)}..${Math.max(...r.load)} |`);
}
