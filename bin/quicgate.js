#!/usr/bin/env node
// Entry point: runs the compiled CLI (npm install builds dist/ through the postinstall script).
import('../dist/cli/main.js').then((m) => m.main(process.argv)).catch((err) => {
  process.stderr.write(`quicgate: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
