/**
 * Deployment bodies for tests, apart from test/helpers/engine.ts so a use-case test can build one
 * without loading the local engine.
 */

/** A deployment of `run` steps behind the tenant's bastion (found in the cloud by its server name). */
export function runDeployment(
  steps: { id: string; command: string; dependsOn?: string[]; timeoutSeconds?: number }[],
  extra: Record<string, unknown> = {},
) {
  return {
    name: 'test',
    bastion: { server: 'bastion', user: 'ctd', securityGroup: 'bastion' },
    workflow: { steps: steps.map((s) => ({ action: 'run', ...s })) },
    ...extra,
  };
}
