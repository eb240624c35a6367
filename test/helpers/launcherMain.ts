/**
 * Local sandboxes in a process of their own, for tests that SIGKILL it (the engine dying): it starts
 * one running task per step id in CTD_TEST_LAUNCHER ({ stateDir, isolate, runner, steps }) and says
 * on stdout, as one JSON line, its spawner's pid and the tasks' process groups.
 */
import { TASK_ENV } from '../../core/config/names.ts';
import { LocalSandboxes } from '../../local/sandbox/launcher.ts';

const opts = JSON.parse(process.env.CTD_TEST_LAUNCHER ?? '{}') as { stateDir: string; isolate: boolean; runner: string; steps: string[] };
const launcher = new LocalSandboxes({
  stateDir: opts.stateDir,
  baseEnv: { PATH: process.env.PATH ?? '/usr/bin:/bin' },
  isolate: opts.isolate,
  warm: 1,
  runnerCommand: [process.execPath, '-e', opts.runner],
  onTaskStopped: async () => undefined,
  log: (line) => void process.stderr.write(`${line}\n`),
});
const signal = new AbortController().signal;
for (const stepId of opts.steps) {
  await launcher.runTask({ Cluster: 'c', Overrides: { ContainerOverrides: [{ Name: 'runner', Environment: [{ Name: TASK_ENV.stepId, Value: stepId }] }] } }, signal);
}
process.stdout.write(`${JSON.stringify({ spawnerPid: launcher.spawnerPid, groups: Object.fromEntries(launcher.processGroups()) })}\n`);
// Held open until killed: the test SIGKILLs this process.
setInterval(() => undefined, 60_000);
