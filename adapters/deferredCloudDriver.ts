import type { CloudDriver } from '../core/ports.ts';

/**
 * A CloudDriver whose module loads on its first call: the step runner starts without the OpenStack
 * adapter (and the zod schemas it parses responses with), which only provisioning and bastion steps use.
 * Every driver method is async, so the wait for the module hides behind the first call's promise.
 */
export function deferredCloudDriver(load: () => Promise<CloudDriver>): CloudDriver {
  let loading: Promise<CloudDriver> | undefined;
  const driver = () => {
    // A failed load is retried by the next call, as lazy() retries a failed build.
    loading ??= load().catch((e: unknown) => {
      loading = undefined;
      throw e;
    });
    return loading;
  };
  const via =
    <K extends keyof CloudDriver>(method: K) =>
    async (...args: Parameters<CloudDriver[K]>): Promise<Awaited<ReturnType<CloudDriver[K]>>> => {
      const d = await driver();
      return (d[method] as (...a: Parameters<CloudDriver[K]>) => Promise<Awaited<ReturnType<CloudDriver[K]>>>).apply(d, args);
    };
  return {
    identify: via('identify'),
    egressCidrs: via('egressCidrs'),
    describeBastion: via('describeBastion'),
    openBastionRule: via('openBastionRule'),
    closeBastionRules: via('closeBastionRules'),
    grantBastionAccess: via('grantBastionAccess'),
    revokeBastionAccess: via('revokeBastionAccess'),
    ensureNetwork: via('ensureNetwork'),
    ensureSecurityGroup: via('ensureSecurityGroup'),
    ensureSshAccess: via('ensureSshAccess'),
    ensureVm: via('ensureVm'),
    describeVms: via('describeVms'),
    deleteVm: via('deleteVm'),
    deleteResources: via('deleteResources'),
    sweep: via('sweep'),
  };
}
