import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { readBundle } from '../cli/bundle.ts';
import { CtdClient } from '../cli/client.ts';
import { waitForDeployment, printOutcome } from '../cli/commands/deploy.ts';
import { CommandContext, defaultIo } from '../cli/context.ts';
import { startLocalEngine } from '../local/engine.ts';

/**
 * `npm run demo`: the embedded engine with the pure-npm local cloud deploys examples/hello-world
 * (bastion + 2 VMs, a Python HTTP service pushed over SSH and started), shows its progress,
 * prints each VM's answer, then stops everything it started. Exit 0 only when both VMs answered.
 */
const EXAMPLE = fileURLToPath(new URL('../examples/hello-world/deployment.yaml', import.meta.url));
const verbose = process.argv.includes('--verbose');
/** `--state DIR` keeps the engine's state for inspection (tests read it); by default a temp dir, removed. */
const keptState = process.argv.includes('--state') ? process.argv[process.argv.indexOf('--state') + 1] : undefined;
/** `--keep` leaves the engine running after the outcome, console and all, until Ctrl-C. */
const keepRunning = process.argv.includes('--keep');

async function demo(): Promise<number> {
  const started = Date.now();
  const stateDir = keptState ?? (await mkdtemp(join(tmpdir(), 'ctd-demo-')));
  const engineLog: string[] = [];
  const engine = await startLocalEngine({
    stateDir,
    apiPort: 0,
    log: (line) => (verbose ? console.error(`  engine: ${line}`) : engineLog.push(line)),
  });
  try {
    console.log(`CTD Orchestrator demo — embedded engine at ${engine.apiUrl} (local cloud, no AWS account)`);
    const token = await engine.mintToken('demo');
    const client = new CtdClient({ endpoint: engine.apiUrl, token: { get: async () => token } });
    const ctx = new CommandContext(defaultIo(), { endpoint: engine.apiUrl, token });

    const deployment = await readBundle(EXAMPLE);
    const { deploymentId, consoleUrl } = await client.submit(deployment);
    console.log(`deploying examples/hello-world as ${deploymentId}\n`);
    const view = await waitForDeployment(ctx, client, deploymentId);
    console.log('');
    // The console URL outlives the demo's engine only with --keep: do not print a link that dies with it.
    const { consoleUrl: _gone, ...outcome } = view;
    printOutcome(ctx, keepRunning ? { ...view, consoleUrl: view.consoleUrl ?? consoleUrl } : outcome);

    const { lines } = await client.logs(deploymentId, { step: 'check' });
    const answers = new Map(lines.filter((l) => l.stream === 'stdout' && l.host).map((l) => [l.host!, l.text]));
    console.log('\nanswers through the bastion:');
    for (const vm of ['web1', 'web2']) console.log(`  ${vm}: ${answers.get(vm) ?? '(no answer)'}`);
    const { events } = await client.history(deploymentId);
    console.log(`\nhistory: ${events.length} Step Functions events`);

    const ok = view.status === 'SUCCEEDED' && ['web1', 'web2'].every((vm) => answers.get(vm)?.startsWith('Hello World'));
    console.log(`\n${ok ? 'demo succeeded' : 'demo FAILED'} in ${((Date.now() - started) / 1000).toFixed(1)} s`);
    if (!ok && !verbose) console.error(engineLog.slice(-40).join('\n'));
    if (keepRunning) {
      console.log(`\nThe engine keeps running so you can look around:`);
      console.log(`  console  ${engine.consoleUrl}/#/deployments/${deploymentId}?token=${encodeURIComponent(token)}`);
      console.log(`  CLI      CTD_HOME=${stateDir} npx ctd history ${deploymentId}`);
      console.log('Press Ctrl-C to stop it; its state is removed then.');
      await new Promise<void>((resolve) => process.once('SIGINT', () => resolve()));
    } else {
      console.log(`\nThe demo's engine and its state are removed now. To look around in the console first: npm run demo -- --keep`);
    }
    return ok ? 0 : 1;
  } finally {
    await engine.stop();
    if (!keptState) await rm(stateDir, { recursive: true, force: true });
  }
}

demo().then(
  (code) => process.exit(code),
  (e: unknown) => {
    console.error(`demo failed: ${e instanceof Error ? e.message : String(e)}`);
    process.exit(1);
  },
);
