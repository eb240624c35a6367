import type { NetworkSpec, SecurityGroupSpec, VmSpec } from '../../core/deployment/schema.ts';
import { ErrorName, StepError } from '../../core/errors.ts';
import type { BastionInfo, CloudContext, CloudDriver, VmInfo } from '../../core/ports.ts';

const UNREACHABLE_STATUSES = new Set([502, 503, 504]);
const UNREACHABLE_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'UND_ERR_SOCKET', 'UND_ERR_CONNECT_TIMEOUT']);

/** The code of a fetch failure (undici wraps the socket error in `cause`). */
function networkCode(e: unknown): string | undefined {
  const cause = (e as { cause?: { code?: string; cause?: { code?: string } } }).cause;
  return cause?.code ?? cause?.cause?.code;
}

const enc = encodeURIComponent;

/**
 * The CloudDriver of the local cloud (local/cloud/server.ts), over its REST API. Failures map
 * to the error table: 502/503/504 and refused or reset connections are Ctd.BackendUnreachable
 * (retried by the state machine), any other failure Ctd.ProvisioningError. Deleting what is
 * already gone (404) succeeds, so a retried deprovision or bastion-close does not fail; creating a
 * network or security group this deployment already has (409) succeeds, so a retried provision
 * does not fail (it reuses VMs it finds: see sandbox/actions/provision.ts).
 * The token travels only in the X-Auth-Token header; it never appears in an error.
 */
export class LocalCloudDriver implements CloudDriver {
  private readonly endpoint: string;

  constructor(opts: { endpoint: string }) {
    this.endpoint = opts.endpoint.replace(/\/+$/, '');
  }

  private async request(
    token: string,
    method: string,
    path: string,
    what: string,
    opts: { body?: unknown; missingOk?: boolean; existingOk?: boolean } = {},
  ): Promise<unknown> {
    let res: Response;
    try {
      res = await fetch(`${this.endpoint}${path}`, {
        method,
        headers: { 'x-auth-token': token, ...(opts.body === undefined ? {} : { 'content-type': 'application/json' }) },
        body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
      });
    } catch (e) {
      const code = networkCode(e);
      const detail = code ? `: ${code}` : '';
      if (code === undefined || UNREACHABLE_CODES.has(code)) {
        throw new StepError(ErrorName.BackendUnreachable, `The backend server is unreachable (${what}${detail})`);
      }
      throw new StepError(ErrorName.ProvisioningError, `${what} failed${detail}`);
    }
    const text = await res.text();
    if (res.ok) return text ? (JSON.parse(text) as unknown) : undefined;
    if (res.status === 404 && opts.missingOk) return undefined;
    if (res.status === 409 && opts.existingOk) return undefined;
    let message = text;
    try {
      message = (JSON.parse(text) as { message?: string }).message ?? text;
    } catch {
      // Not JSON: keep the raw body as the message.
    }
    if (UNREACHABLE_STATUSES.has(res.status)) {
      throw new StepError(ErrorName.BackendUnreachable, `The backend server is unreachable (${what}: HTTP ${res.status} ${message})`);
    }
    throw new StepError(ErrorName.ProvisioningError, `${what} failed: HTTP ${res.status} ${message}`);
  }

  async identify(token: string): Promise<{ tenantId: string } | undefined> {
    try {
      return (await this.request(token, 'GET', '/identity/whoami', 'identifying the token')) as { tenantId: string };
    } catch (e) {
      if (e instanceof StepError && e.errorName === ErrorName.ProvisioningError && / HTTP 401 /.test(e.message)) return undefined;
      throw e;
    }
  }

  async describeBastion(ctx: CloudContext, securityGroup: string): Promise<BastionInfo> {
    return (await this.request(ctx.token, 'GET', `/bastions/${enc(securityGroup)}`, `describing the bastion of "${securityGroup}"`)) as BastionInfo;
  }

  async egressCidr(ctx: CloudContext): Promise<string> {
    return ((await this.request(ctx.token, 'GET', '/egress', 'finding the egress address')) as { cidr: string }).cidr;
  }

  async addBastionRule(
    ctx: CloudContext,
    input: { securityGroup: string; cidr: string; port: number; description: string },
  ): Promise<{ ruleId: string }> {
    const body = { cidr: input.cidr, port: input.port, description: input.description, deploymentId: ctx.deploymentId };
    return (await this.request(ctx.token, 'POST', `/bastions/${enc(input.securityGroup)}/rules`, `adding a rule to security group "${input.securityGroup}"`, {
      body,
    })) as { ruleId: string };
  }

  async deleteBastionRule(ctx: CloudContext, input: { securityGroup: string; ruleId: string }): Promise<void> {
    await this.request(ctx.token, 'DELETE', `/bastions/${enc(input.securityGroup)}/rules/${enc(input.ruleId)}`, `deleting rule ${input.ruleId}`, {
      missingOk: true,
    });
  }

  async setBastionForwarding(ctx: CloudContext, input: { securityGroup: string; enabled: boolean }): Promise<void> {
    const what = `${input.enabled ? 'enabling' : 'disabling'} TCP forwarding on the bastion`;
    await this.request(ctx.token, 'PUT', `/bastions/${enc(input.securityGroup)}/forwarding`, what, { body: { enabled: input.enabled } });
  }

  private dep(ctx: CloudContext): string {
    return `/deployments/${enc(ctx.deploymentId)}`;
  }

  async createNetwork(ctx: CloudContext, spec: NetworkSpec): Promise<void> {
    await this.request(ctx.token, 'POST', `${this.dep(ctx)}/networks`, `creating network "${spec.name}"`, { body: spec, existingOk: true });
  }

  async deleteNetwork(ctx: CloudContext, name: string): Promise<void> {
    await this.request(ctx.token, 'DELETE', `${this.dep(ctx)}/networks/${enc(name)}`, `deleting network "${name}"`, { missingOk: true });
  }

  async createSecurityGroup(ctx: CloudContext, spec: SecurityGroupSpec): Promise<void> {
    await this.request(ctx.token, 'POST', `${this.dep(ctx)}/security-groups`, `creating security group "${spec.name}"`, { body: spec, existingOk: true });
  }

  async deleteSecurityGroup(ctx: CloudContext, name: string): Promise<void> {
    await this.request(ctx.token, 'DELETE', `${this.dep(ctx)}/security-groups/${enc(name)}`, `deleting security group "${name}"`, {
      missingOk: true,
    });
  }

  async createVm(ctx: CloudContext, spec: VmSpec, userData: string): Promise<VmInfo> {
    return (await this.request(ctx.token, 'POST', `${this.dep(ctx)}/vms`, `creating VM "${spec.name}"`, { body: { spec, userData } })) as VmInfo;
  }

  async deleteVm(ctx: CloudContext, name: string): Promise<void> {
    await this.request(ctx.token, 'DELETE', `${this.dep(ctx)}/vms/${enc(name)}`, `deleting VM "${name}"`, { missingOk: true });
  }

  async describeVms(ctx: CloudContext): Promise<VmInfo[]> {
    return (await this.request(ctx.token, 'GET', `${this.dep(ctx)}/vms`, 'listing VMs')) as VmInfo[];
  }
}
