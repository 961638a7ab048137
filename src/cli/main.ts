/**
 * The `quicgate` command line: one program, a subcommand per job. Each action validates its options once and
 * ends through fail() with a one-line reason and a distinct exit code.
 */
import { Command, Option } from 'commander';
import { fail } from './fail.js';
import { runServer } from './server-command.js';
import { runClient } from './client-command.js';
import { runCert } from './cert-command.js';
import { registerUsersCommands } from './users-command.js';
import { registerSessionsCommands } from './sessions-command.js';
import { registerStatsCommand } from './stats-command.js';

export function buildProgram(): Command {
  const program = new Command('quicgate')
    .description('VPN gateway over WebTransport (HTTP/3 and HTTP/2) with exact per-user bandwidth limits')
    .version('0.1.0')
    .showHelpAfterError();

  program
    .command('server')
    .description('run the gateway (embedded defaults when no --config is given)')
    .option('-c, --config <file>', 'server config (YAML)')
    .action((opts: { config?: string }) => runServer(opts).catch(fail));

  program
    .command('client')
    .description('connect to a gateway and bring up the tunnel; reconnects by itself')
    .option('-c, --config <file>', 'client config (YAML)')
    .option('--server <url>', 'gateway URL, e.g. https://vpn.example.net:4433/')
    .option('--user <name>', 'user name')
    .option('--password-file <file>', 'file holding the password')
    .addOption(new Option('--transport <kind>', 'transport').choices(['auto', 'quic', 'h3', 'h2']))
    .option('--ca <file>', 'CA certificate (PEM) to verify the gateway')
    .option('--pin <sha256>', 'pinned SHA-256 of the gateway certificate (hex); repeatable', collect, [])
    .option('--tun <name>', 'TUN device name')
    .action((opts: ClientCliOptions) => runClient(opts).catch(fail));

  program
    .command('cert')
    .description('create (or show) the private CA and a short-lived server certificate in the data directory')
    .option('-c, --config <file>', 'server config, for the data directory and names')
    .option('--data-dir <dir>', 'data directory (overrides the config)')
    .option('--name <host>', 'extra DNS name or IP address for this certificate (put it in tls.names so renewals keep it); repeatable', collect, [])
    .option('--renew', 'issue a new server certificate even if the current one is still valid')
    .action((opts: CertCliOptions) => runCert(opts).catch(fail));

  registerUsersCommands(program);
  registerSessionsCommands(program);
  registerStatsCommand(program);
  return program;
}

export interface ClientCliOptions {
  readonly config?: string;
  readonly server?: string;
  readonly user?: string;
  readonly passwordFile?: string;
  readonly transport?: 'auto' | 'quic' | 'h3' | 'h2';
  readonly ca?: string;
  readonly pin: string[];
  readonly tun?: string;
}

export interface CertCliOptions {
  readonly config?: string;
  readonly dataDir?: string;
  readonly name: string[];
  readonly renew?: boolean;
}

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

export async function main(argv: readonly string[]): Promise<void> {
  await buildProgram().parseAsync(argv as string[]);
}
