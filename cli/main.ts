import { createRequire } from 'node:module';
import { Command, CommanderError, Option } from 'commander';
import { ApiError, EndpointUnreachableError } from './client.ts';
import { CommandContext, defaultIo, type CliIo, type GlobalOptions } from './context.ts';
import { CliError, EXIT } from './errors.ts';

/**
 * `ctd` — the CLI of the CTD orchestrator. Every command is a thin shell over the HTTP API
 * (cli/client.ts), so it works the same against the local engine and a deployed API Gateway.
 * Command modules are imported inside their actions to keep `ctd --help` fast.
 *
 * Returns the exit code instead of exiting, so tests run the real CLI in-process.
 */
export async function main(argv: readonly string[], overrides: Partial<CliIo> = {}): Promise<number> {
  const io: CliIo = { ...defaultIo(), ...overrides };
  let exitCode: number = EXIT.ok;
  let ctx = new CommandContext(io, {});

  const program = new Command('ctd')
    .description('Agentless deployment orchestrator: submit deployments and follow them.')
    .version(packageVersion(), '-V, --version')
    .addOption(new Option('--endpoint <url>', 'API URL (default: the local engine from $CTD_HOME/engine.json)'))
    .addOption(new Option('--token <token>', 'cloud token (default: $CTD_TOKEN; a minted tenant-"default" token for the local engine)'))
    .option('--json', 'machine-readable output (the API response bodies)')
    .exitOverride()
    .configureOutput({
      writeOut: (s) => void io.stdout.write(s),
      writeErr: (s) => void io.stderr.write(s),
    })
    .showHelpAfterError('(run ctd --help for usage)')
    .addHelpText(
      'after',
      `
Exit codes: 0 ok · 1 deployment failed/cancelled or server error · 2 request refused (4xx) or bad usage · 3 endpoint unreachable

Examples:
  ctd local up                       run the engine here, in the foreground
  ctd deploy examples/hello-world/deployment.yaml --wait
  ctd status <id>                    summary and steps
  ctd --endpoint https://abc.execute-api.eu-west-1.amazonaws.com/prod --token "$TOKEN" ls`,
    );

  /** Wraps an action: builds the context from the global options and records the exit code. */
  const run =
    <A extends unknown[]>(action: (ctx: CommandContext, ...args: A) => Promise<number>) =>
    async (...args: [...A, Record<string, unknown>, Command]): Promise<void> => {
      const command = args[args.length - 1] as Command;
      ctx = new CommandContext(io, command.optsWithGlobals<GlobalOptions>());
      exitCode = await action(ctx, ...(args.slice(0, -1) as A));
    };

  const local = program.command('local').description('the embedded engine on this machine');
  local
    .command('up')
    .description('run the engine in the foreground (Ctrl-C stops it)')
    .addOption(new Option('--cloud <driver>', 'target cloud driver').choices(['local', 'netns']).default('local'))
    .option('--port <n>', 'API port (default 4580; 0 picks a free one)')
    .option('--time-scale <x>', 'multiply every engine time limit (timeouts, heartbeats, retry waits, the 120 s grace; not a Lambda\'s own 60 s) by x: 0.1 makes them 10× shorter')
    .action(
      run(async (c, opts: { cloud?: string; port?: string; timeScale?: string }) =>
        (await import('./commands/local.ts')).localUp(c, opts),
      ),
    );
  local
    .command('token')
    .description('print a new cloud token of the local cloud for a tenant')
    .requiredOption('--tenant <name>', 'tenant id')
    .action(run(async (c, opts: { tenant: string }) => (await import('./commands/local.ts')).localToken(c, opts)));
  local
    .command('openrc')
    .description('print an OpenStack RC (OS_AUTH_URL, OS_PROJECT_NAME, OS_PASSWORD…) of the local cloud for a tenant')
    .requiredOption('--tenant <name>', 'tenant (project) name')
    .action(run(async (c, opts: { tenant: string }) => (await import('./commands/local.ts')).localOpenrc(c, opts)));

  local
    .command('console')
    .description('print the web console address with a sign-in token (open it in a browser)')
    .option('--tenant <name>', 'tenant id', 'default')
    .action(run(async (c, opts: { tenant?: string }) => (await import('./commands/local.ts')).localConsole(c, opts)));
  local
    .command('env')
    .description('print shell exports for the AWS CLI and SDKs: the local Step Functions, DynamoDB and KMS (eval "$(ctd local env)")')
    .action(run(async (c) => (await import('./commands/local.ts')).localEnv(c)));

  program
    .command('deploy')
    .description('submit a deployment (YAML or JSON; a files/ directory beside FILE joins the bundle)')
    .argument('<file>', 'deployment file')
    .option('--wait', 'show live progress and exit with the outcome (0 only if SUCCEEDED)')
    .option('--idempotency-key <key>', 'resubmitting with the same key returns the same deployment')
    .action(
      run(async (c, file: string, opts: { wait?: boolean; idempotencyKey?: string }) =>
        (await import('./commands/deploy.ts')).deploy(c, file, opts),
      ),
    );

  program
    .command('ls')
    .description('list deployments')
    .option('--cursor <cursor>', 'next page, as printed by the previous page')
    .action(run(async (c, opts: { cursor?: string }) => (await import('./commands/read.ts')).list(c, opts)));

  program
    .command('status')
    .description("a deployment's summary and steps")
    .argument('<id>', 'deployment id')
    .action(run(async (c, id: string) => (await import('./commands/read.ts')).status(c, id)));

  program
    .command('history')
    .description("a deployment's execution history, one line per event")
    .argument('<id>', 'deployment id')
    .action(run(async (c, id: string) => (await import('./commands/read.ts')).history(c, id)));

  program
    .command('logs')
    .description("a deployment's step logs: [step host stream] text")
    .argument('<id>', 'deployment id')
    .option('--step <step>', 'only this step')
    .option('-f, --follow', 'keep printing new lines until the deployment ends')
    .action(
      run(async (c, id: string, opts: { step?: string; follow?: boolean }) =>
        (await import('./commands/read.ts')).logs(c, id, opts),
      ),
    );

  program
    .command('cancel')
    .description('cancel a deployment (running steps stop, clean-up runs)')
    .argument('<id>', 'deployment id')
    .action(run(async (c, id: string) => (await import('./commands/cancel.ts')).cancel(c, id)));

  try {
    await program.parseAsync([...argv], { from: 'user' });
    return exitCode;
  } catch (err) {
    return report(ctx, err);
  }
}

/** One readable line (plus the server's issues) per failure, and its exit code; never a stack trace. */
export function report(ctx: CommandContext, err: unknown): number {
  if (err instanceof CommanderError) {
    // Commander has already printed its message; help and version are successes.
    if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || err.exitCode === 0) return EXIT.ok;
    return EXIT.rejected;
  }
  if (err instanceof ApiError) {
    ctx.error(`error: ${err.message}${err.status >= 500 ? ` (HTTP ${err.status})` : ''}`);
    for (const issue of err.issues) {
      const text = `${issue.path || '(request)'}: ${issue.message}`;
      // Servers often make the first issue the message itself; say it once.
      if (text !== err.message) ctx.error(`  - ${text}`);
    }
    return err.status < 500 ? EXIT.rejected : EXIT.failed;
  }
  if (err instanceof EndpointUnreachableError) {
    ctx.error(`error: ${err.message}`);
    return EXIT.unreachable;
  }
  if (err instanceof CliError) {
    ctx.error(`error: ${err.message}`);
    return err.exitCode;
  }
  ctx.error(`error: ${err instanceof Error ? err.message : String(err)}`);
  return EXIT.failed;
}

function packageVersion(): string {
  try {
    return (createRequire(import.meta.url)('../package.json') as { version: string }).version;
  } catch {
    return '0.0.0';
  }
}
