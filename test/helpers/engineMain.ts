/**
 * A local engine in a process of its own, for tests that SIGKILL it: options come as JSON in
 * CTD_TEST_ENGINE (LocalEngineOptions), and one JSON line on stdout says where everything is.
 */
import { startLocalEngine, type LocalEngineOptions } from '../../local/engine.ts';

const opts = JSON.parse(process.env.CTD_TEST_ENGINE ?? '{}') as LocalEngineOptions;
// Its log on stderr, without the metric lines: the test keeps the tail for a failing cell's message.
const log = (line: string) => void (line.startsWith('emf ') || line.includes('"_aws"') ? undefined : process.stderr.write(`${line}\n`));
const engine = await startLocalEngine({ apiPort: 0, cloudFaultInjection: true, log, ...opts });
process.stdout.write(
  `${JSON.stringify({ apiUrl: engine.apiUrl, cloudUrl: engine.cloudUrl, keystoneUrl: engine.keystoneUrl, endpoints: engine.endpoints, stateDir: engine.stateDir })}\n`,
);
const stop = () => void engine.stop().finally(() => process.exit(0));
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
