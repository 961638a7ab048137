// UDP probe for the spoofing test.
//   listen ADDR PORT              prints {"from": "...", "text": "..."} per datagram received
//   send BIND_ADDR DST PORT COUNT sends COUNT datagrams from BIND_ADDR (which may be a forged address on lo)
import dgram from 'node:dgram';

const [mode, a, b, c, d] = process.argv.slice(2);
if (mode === 'listen') {
  const sock = dgram.createSocket('udp4');
  sock.on('message', (msg, rinfo) => process.stdout.write(`${JSON.stringify({ from: rinfo.address, text: msg.toString() })}\n`));
  sock.bind(Number(b), a, () => process.stdout.write(`${JSON.stringify({ listening: true })}\n`));
} else if (mode === 'send') {
  const sock = dgram.createSocket('udp4');
  sock.bind(0, a, async () => {
    for (let i = 0; i < Number(d); i++) {
      await new Promise((r) => sock.send(`from ${a} #${i}`, Number(c), b, r));
      await new Promise((r) => setTimeout(r, 20));
    }
    sock.close();
  });
} else {
  process.stderr.write('usage: udp-probe.mjs listen ADDR PORT | send BIND DST PORT COUNT\n');
  process.exit(2);
}
