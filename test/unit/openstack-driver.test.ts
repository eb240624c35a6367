import { describe, expect, it } from 'vitest';
import { OpenStackDriver, type OpenStackDriverOptions } from '../../adapters/openstack/driver.ts';
import { bodyMessage } from '../../adapters/openstack/errors.ts';
import { hostKeyFromConsole } from '../../adapters/openstack/marks.ts';
import { ErrorName, StepError } from '../../core/errors.ts';
import type { CloudContext, CloudResourceRef } from '../../core/ports.ts';

/**
 * The driver against recorded OpenStack-shaped answers, through an injected fetch: the only
 * fake is at the HTTP boundary. test/e2e/openstack-real.test.ts drives it against a real cloud.
 */

const TOKEN = 'gAAAAABsecret-token-value-0123456789';
const PROJECT = 'a1b2c3d4e5f60718293a4b5c6d7e8f90';
const DEP = 'd-0000000001abcdef0123';

interface Call {
  method: string;
  url: string;
  headers: Record<string, string>;
  body?: unknown;
}
type Handler = (call: Call, match: RegExpExecArray) => Response | Promise<Response>;

const json = (status: number, body: unknown) => new Response(JSON.stringify(body), { status, headers: { 'content-type': 'application/json' } });
const empty = (status: number) => new Response(null, { status });

/** OTC's gateway page when the service behind it is down (terraform-provider-opentelekomcloud#916). */
const OTC_502 = `<html>
<head><title>502 Bad Gateway</title></head>
<body>
<center><h1>The backend server is unreachable</h1></center>
<hr><center>nginx</center>
</body>
</html>`;

const tokenBody = {
  token: {
    expires_at: '2030-01-01T00:00:00.000000Z',
    project: { id: PROJECT, name: 'demo', domain: { id: 'default', name: 'Default' } },
    user: { id: 'u1', name: 'demo' },
    catalog: [
      { type: 'compute', name: 'nova', endpoints: [{ id: 'e1', interface: 'public', region_id: 'RegionOne', region: 'RegionOne', url: 'http://nova.test/v2.1' }] },
      { type: 'network', name: 'neutron', endpoints: [{ id: 'e2', interface: 'public', region_id: 'RegionOne', region: 'RegionOne', url: 'http://neutron.test' }] },
      { type: 'image', name: 'glance', endpoints: [{ id: 'e3', interface: 'public', region_id: 'RegionOne', region: 'RegionOne', url: 'http://glance.test' }] },
    ],
  },
};

/** A scripted cloud: Keystone answers the token; every other call must match a route. */
function fakeCloud(routes: [string, RegExp, Handler][], driverOpts: Partial<OpenStackDriverOptions> = {}) {
  const calls: Call[] = [];
  const fetch = async (input: string | URL | Request, init?: RequestInit): Promise<Response> => {
    const url = String(input);
    const method = init?.method ?? 'GET';
    const headers = Object.fromEntries(Object.entries((init?.headers ?? {}) as Record<string, string>).map(([k, v]) => [k.toLowerCase(), v]));
    const call: Call = { method, url, headers, ...(init?.body ? { body: JSON.parse(String(init.body)) as unknown } : {}) };
    calls.push(call);
    if (method === 'GET' && url === 'http://keystone.test/v3/auth/tokens') {
      return headers['x-subject-token'] === TOKEN && headers['x-auth-token'] === TOKEN
        ? json(200, tokenBody)
        : json(401, { error: { code: 401, title: 'Unauthorized', message: 'The request you have made requires authentication.' } });
    }
    for (const [m, pattern, handler] of routes) {
      const match = m === method ? pattern.exec(url) : null;
      if (match) return handler(call, match);
    }
    throw new Error(`unexpected call ${method} ${url}`);
  };
  const driver = new OpenStackDriver({
    keystoneUrl: 'http://keystone.test/v3',
    egressCidrs: ['198.51.100.7', '203.0.113.0/28'],
    fetch,
    pollIntervalMs: 1,
    activeTimeoutMs: 1000,
    deleteTimeoutMs: 1000,
    sleep: async () => {},
    ...driverOpts,
  });
  return { driver, calls };
}

function context() {
  const recorded: CloudResourceRef[] = [];
  const forgotten: CloudResourceRef[] = [];
  const ctx: CloudContext = {
    token: TOKEN,
    deploymentId: DEP,
    record: async (ref) => void recorded.push(ref),
    forget: async (ref) => void forgotten.push(ref),
  };
  return { ctx, recorded, forgotten };
}

async function failure(promise: Promise<unknown>): Promise<StepError> {
  try {
    await promise;
  } catch (e) {
    if (e instanceof StepError) return e;
    throw e;
  }
  throw new Error('expected a StepError');
}

const network = { name: 'private', cidr: '10.0.0.0/24' };
const noNetworks: [string, RegExp, Handler] = ['GET', /neutron\.test\/v2\.0\/networks\?name=/, () => json(200, { networks: [] })];

describe('Class: OpenStackDriver', () => {
  describe('Method: identify', () => {
    it("gives the token's project as tenant, asking Keystone with the token as caller and subject", async () => {
      const { driver, calls } = fakeCloud([]);
      expect(await driver.identify(TOKEN)).toEqual({ tenantId: PROJECT });
      expect(calls[0]!.headers['x-auth-token']).toBe(TOKEN);
      expect(calls[0]!.headers['x-subject-token']).toBe(TOKEN);
    });

    it('gives undefined for a token Keystone refuses', async () => {
      const { driver } = fakeCloud([]);
      expect(await driver.identify('expired')).toBeUndefined();
    });
  });

  describe('Error mapping (the error table)', () => {
    it("maps OTC's HTML 502 to Ctd.BackendUnreachable with the page reduced to its text", async () => {
      const { driver } = fakeCloud([noNetworks, ['POST', /\/v2\.0\/networks$/, () => new Response(OTC_502, { status: 502, headers: { 'content-type': 'text/html' } })]]);
      const error = await failure(driver.ensureNetwork(context().ctx, { network, index: 0 }));
      expect(error.errorName).toBe(ErrorName.BackendUnreachable);
      expect(error.message).toContain('The backend server is unreachable');
      expect(error.message).toContain('502 Bad Gateway');
      expect(error.message).not.toMatch(/<[a-z/]/i);
    });

    it('maps a JSON 503 to Ctd.BackendUnreachable', async () => {
      const { driver } = fakeCloud([['GET', /\/v2\.0\/networks\?name=/, () => json(503, { message: 'Service Unavailable' })]]);
      const error = await failure(driver.ensureNetwork(context().ctx, { network, index: 0 }));
      expect(error.errorName).toBe(ErrorName.BackendUnreachable);
      expect(error.message).toContain('HTTP 503: Service Unavailable');
    });

    it("maps OTC's text on another status to Ctd.BackendUnreachable too", async () => {
      const { driver } = fakeCloud([noNetworks, ['POST', /\/v2\.0\/networks$/, () => new Response(OTC_502, { status: 500 })]]);
      expect((await failure(driver.ensureNetwork(context().ctx, { network, index: 0 }))).errorName).toBe(ErrorName.BackendUnreachable);
    });

    it('maps a refused connection to Ctd.BackendUnreachable', async () => {
      const { driver } = fakeCloud([
        ['GET', /neutron\.test/, () => Promise.reject(new TypeError('fetch failed', { cause: Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:9696'), { code: 'ECONNREFUSED' }) }))],
      ]);
      const error = await failure(driver.ensureNetwork(context().ctx, { network, index: 0 }));
      expect(error.errorName).toBe(ErrorName.BackendUnreachable);
      expect(error.message).toContain('ECONNREFUSED');
    });

    it('fails at once on a refused token, saying so', async () => {
      const ctx = { ...context().ctx, token: 'revoked-token' };
      const { driver } = fakeCloud([]);
      const error = await failure(driver.ensureNetwork(ctx, { network, index: 0 }));
      expect(error.errorName).toBe(ErrorName.StepFailed);
      expect(error.message).toContain('the cloud token was refused (expired or revoked)');
    });

    it('fails at once on a 401 from a service (the token expired mid-step)', async () => {
      const { driver } = fakeCloud([['GET', /\/v2\.0\/networks\?name=/, () => json(401, { error: { code: 401, message: 'The request you have made requires authentication.' } })]]);
      const error = await failure(driver.ensureNetwork(context().ctx, { network, index: 0 }));
      expect(error.errorName).toBe(ErrorName.StepFailed);
      expect(error.message).toMatch(/^the cloud token was refused \(expired or revoked\) while /);
    });

    it("gives Nova's quota message as Ctd.ProvisioningError", async () => {
      const { driver } = vmCloud({
        createServer: () =>
          json(403, { forbidden: { code: 403, message: 'Quota exceeded for instances: Requested 1, but already used 10 of 10 instances' } }),
      });
      const error = await failure(driver.ensureVm(context().ctx, { vm, userData: '#cloud-config\n' }));
      expect(error.errorName).toBe(ErrorName.ProvisioningError);
      expect(error.message).toContain('creating server web1 failed: HTTP 403: Quota exceeded for instances: Requested 1, but already used 10 of 10 instances');
    });

    it("gives Neutron's OverQuota message as Ctd.ProvisioningError", async () => {
      const { driver } = fakeCloud([
        noNetworks,
        ['POST', /\/v2\.0\/networks$/, () => json(409, { NeutronError: { type: 'OverQuota', message: "Quota exceeded for resources: ['network'].", detail: '' } })],
      ]);
      const error = await failure(driver.ensureNetwork(context().ctx, { network, index: 0 }));
      expect(error.errorName).toBe(ErrorName.ProvisioningError);
      expect(error.message).toBe("creating network private failed: HTTP 409: OverQuota: Quota exceeded for resources: ['network'].");
    });

    it("gives a server in ERROR as Ctd.ProvisioningError with Nova's fault message, without waiting further", async () => {
      const { driver, calls } = vmCloud({
        serverStatus: () => ({ status: 'ERROR', fault: { code: 500, message: 'No valid host was found. There are not enough hosts available.' } }),
      });
      const error = await failure(driver.ensureVm(context().ctx, { vm, userData: '#cloud-config\n' }));
      expect(error.errorName).toBe(ErrorName.ProvisioningError);
      expect(error.message).toBe('server web1 went to ERROR: No valid host was found. There are not enough hosts available.');
      expect(calls.filter((c) => c.method === 'GET' && /\/servers\/srv-1$/.test(c.url))).toHaveLength(1);
    });

    it('bounds the wait for ACTIVE', async () => {
      const { driver } = vmCloud({ serverStatus: () => ({ status: 'BUILD' }), activeTimeoutMs: 20 });
      const error = await failure(driver.ensureVm(context().ctx, { vm, userData: '#cloud-config\n' }));
      expect(error.errorName).toBe(ErrorName.ProvisioningError);
      expect(error.message).toMatch(/^server web1 is still BUILD \d+ s after its creation$/);
    });

    it('never puts the token in an error, even when the cloud echoes it back', async () => {
      const echo = (status: number, html = false) => () =>
        html
          ? new Response(`<html><title>Error for ${TOKEN}</title></html>`, { status })
          : json(status, { NeutronError: { type: 'BadRequest', message: `token ${TOKEN} is not allowed here` } });
      const cases: [string, RegExp, Handler][][] = [
        [noNetworks, ['POST', /\/v2\.0\/networks$/, echo(400)]],
        [noNetworks, ['POST', /\/v2\.0\/networks$/, echo(502, true)]],
        [['GET', /\/v2\.0\/networks\?name=/, echo(401)]],
        [['GET', /neutron\.test/, () => Promise.reject(new TypeError(`fetch failed for ${TOKEN}`))]],
      ];
      for (const routes of cases) {
        const error = await failure(fakeCloud(routes).driver.ensureNetwork(context().ctx, { network, index: 0 }));
        expect(error.message).not.toContain(TOKEN);
        expect(error.message).toContain('[token]');
      }
    });
  });

  describe('Marks and records', () => {
    it('names, records (before its next call) and tags every resource it creates', async () => {
      const { ctx, recorded } = context();
      const events: string[] = [];
      const ctxTraced: CloudContext = { ...ctx, record: async (ref) => void (events.push(`record ${ref.kind}`), recorded.push(ref)) };
      const { driver, calls } = fakeCloud([
        noNetworks,
        ['POST', /\/v2\.0\/networks$/, (c) => (events.push('POST network'), json(201, { network: { id: 'net-1', name: (c.body as { network: { name: string } }).network.name, project_id: PROJECT } }))],
        ['PUT', /\/v2\.0\/(networks|subnets)\/[^/]+\/tags\/(.+)$/, (_c, m) => (events.push(`tag ${m[1]}`), empty(201))],
        ['GET', /\/v2\.0\/subnets\?/, () => json(200, { subnets: [] })],
        ['POST', /\/v2\.0\/subnets$/, () => (events.push('POST subnet'), json(201, { subnet: { id: 'sub-1', name: `ctd-${DEP}-private`, network_id: 'net-1', cidr: '10.0.0.0/24' } }))],
      ]);
      await driver.ensureNetwork(ctxTraced, { network, index: 0 });
      expect(events).toEqual(['POST network', 'record network', 'tag networks', 'POST subnet', 'record subnet', 'tag subnets']);
      expect(recorded).toEqual([
        { kind: 'network', id: 'net-1', name: 'private' },
        { kind: 'subnet', id: 'sub-1', name: 'private' },
      ]);
      const created = calls.filter((c) => c.method === 'POST').map((c) => c.body);
      expect(created[0]).toEqual({ network: { name: `ctd-${DEP}-private`, admin_state_up: true } });
      expect(created[1]).toEqual({ subnet: { name: `ctd-${DEP}-private`, network_id: 'net-1', cidr: '10.0.0.0/24', ip_version: 4 } });
      expect(calls.filter((c) => c.method === 'PUT').map((c) => decodeURIComponent(c.url.split('/tags/')[1]!))).toEqual([`ctd:${DEP}`, `ctd:${DEP}`]);
    });

    it('adopts what a POST created although it answered 502: the retry finds it and creates nothing', async () => {
      const networks: { id: string; name: string; project_id: string }[] = [];
      let posts = 0;
      const { driver } = fakeCloud([
        ['GET', /\/v2\.0\/networks\?name=([^&]+)/, (_c, m) => json(200, { networks: networks.filter((n) => n.name === decodeURIComponent(m[1]!)) })],
        [
          'POST',
          /\/v2\.0\/networks$/,
          (c) => {
            posts++;
            networks.push({ id: 'net-1', name: (c.body as { network: { name: string } }).network.name, project_id: PROJECT });
            return new Response(OTC_502, { status: 502 });
          },
        ],
        ['PUT', /\/tags\//, () => empty(201)],
        ['GET', /\/v2\.0\/subnets\?/, () => json(200, { subnets: [{ id: 'sub-1', name: `ctd-${DEP}-private`, network_id: 'net-1', cidr: '10.0.0.0/24' }] })],
      ]);
      const first = context();
      expect((await failure(driver.ensureNetwork(first.ctx, { network, index: 0 }))).errorName).toBe(ErrorName.BackendUnreachable);
      const retry = context();
      await driver.ensureNetwork(retry.ctx, { network, index: 0 });
      expect(posts).toBe(1);
      expect(retry.recorded).toEqual([
        { kind: 'network', id: 'net-1', name: 'private' },
        { kind: 'subnet', id: 'sub-1', name: 'private' },
      ]);
    });

    it('opens one bastion rule per egress address, adopting the one Neutron says exists (409 SecurityGroupRuleExists)', async () => {
      const existing = '5c3ef1d4-6a7b-4c8d-9e0f-112233445566';
      const posted: unknown[] = [];
      const { driver } = fakeCloud([
        ['GET', /\/v2\.0\/security-groups\/bastion$/, () => json(404, { NeutronError: { type: 'SecurityGroupNotFound', message: 'not found' } })],
        ['GET', /\/v2\.0\/security-groups\?name=bastion$/, () => json(200, { security_groups: [{ id: 'sg-b', name: 'bastion', project_id: PROJECT }] })],
        ['GET', /\/v2\.0\/security-group-rules\?security_group_id=sg-b$/, () => json(200, { security_group_rules: [] })],
        // The 409's rule is another deployment's engine-made rule (shared by both); the new one is ours.
        ['GET', new RegExp(`/v2\\.0/security-group-rules/${existing}$`), () => json(200, { security_group_rule: { id: existing, security_group_id: 'sg-b', direction: 'ingress', description: 'ctd:d-earlier:bastion' } })],
        ['GET', /\/v2\.0\/security-group-rules\/rule-new$/, () => json(200, { security_group_rule: { id: 'rule-new', security_group_id: 'sg-b', direction: 'ingress', description: `ctd:${DEP}:bastion` } })],
        [
          'POST',
          /\/v2\.0\/security-group-rules$/,
          (c) => {
            posted.push(c.body);
            const rule = (c.body as { security_group_rule: Record<string, unknown> }).security_group_rule;
            return rule.remote_ip_prefix === '198.51.100.7/32'
              ? json(409, { NeutronError: { type: 'SecurityGroupRuleExists', message: `Security group rule already exists. Rule id is ${existing}.`, detail: '' } })
              : json(201, { security_group_rule: { ...rule, id: 'rule-new' } });
          },
        ],
      ]);
      const { ctx, recorded } = context();
      const cidrs = await driver.egressCidrs();
      expect(cidrs).toEqual(['198.51.100.7/32', '203.0.113.0/28']);
      const ids = [];
      for (const cidr of cidrs) ids.push((await driver.openBastionRule(ctx, { securityGroup: 'bastion', cidr, port: 22 })).ruleId);
      expect(ids).toEqual([existing, 'rule-new']);
      expect(recorded).toEqual([
        { kind: 'bastionRule', id: existing, name: 'bastion' },
        { kind: 'bastionRule', id: 'rule-new', name: 'bastion' },
      ]);
      expect(posted[1]).toEqual({
        security_group_rule: {
          security_group_id: 'sg-b',
          direction: 'ingress',
          ethertype: 'IPv4',
          protocol: 'tcp',
          port_range_min: 22,
          port_range_max: 22,
          remote_ip_prefix: '203.0.113.0/28',
          description: `ctd:${DEP}:bastion`,
        },
      });
    });

    function bastionCloud(rules: { id: string; security_group_id: string; direction: string; description: string }[], metadata: Record<string, string>) {
      const deletes: string[] = [];
      const { driver } = fakeCloud([
        ['GET', /\/servers\/bastion$/, () => json(200, { server: { id: 'srv-b', name: 'bastion', status: 'ACTIVE', addresses: {}, metadata } })],
        ['GET', /\/security-group-rules\/r-gone$/, () => json(404, { NeutronError: { type: 'SecurityGroupRuleNotFound', message: 'gone' } })],
        ['GET', /\/security-group-rules\/([^/?]+)$/, (_c, m) => json(200, { security_group_rule: rules.find((r) => r.id === m[1]) })],
        ['GET', /\/security-groups\/sg-b$/, () => json(200, { security_group: { id: 'sg-b', name: 'bastion', project_id: PROJECT } })],
        ['GET', /\/security-group-rules\?security_group_id=sg-b$/, () => json(200, { security_group_rules: rules.filter((r) => !deletes.includes(r.id)) })],
        ['DELETE', /\/security-group-rules\/([^/]+)$/, (_c, m) => (deletes.push(m[1]!), empty(204))],
      ]);
      return { driver, deletes };
    }
    const bastionRules = [
      { id: 'r-recorded', security_group_id: 'sg-b', direction: 'ingress', description: `ctd:${DEP}:bastion` },
      { id: 'r-unrecorded', security_group_id: 'sg-b', direction: 'ingress', description: `ctd:${DEP}:bastion` },
      { id: 'r-other', security_group_id: 'sg-b', direction: 'ingress', description: 'ctd:d-someoneelse:bastion' },
      { id: 'r-owner', security_group_id: 'sg-b', direction: 'ingress', description: 'ssh from the office' },
    ];
    const recordedRules = [
      { kind: 'bastionRule', id: 'r-recorded', name: 'bastion' },
      { kind: 'bastionRule', id: 'r-gone', name: 'bastion' },
      { kind: 'network', id: 'net-1', name: 'private' },
    ];

    it("never records (so never deletes) the tenant's own identical rule that Neutron names in its 409", async () => {
      const owners = 'a1b2c3d4-0000-4000-8000-000000000001';
      const { driver } = fakeCloud([
        ['GET', /\/v2\.0\/security-groups\/bastion$/, () => json(404, { NeutronError: { type: 'SecurityGroupNotFound', message: 'not found' } })],
        ['GET', /\/v2\.0\/security-groups\?name=bastion$/, () => json(200, { security_groups: [{ id: 'sg-b', name: 'bastion', project_id: PROJECT }] })],
        ['GET', /\/v2\.0\/security-group-rules\?security_group_id=sg-b$/, () => json(200, { security_group_rules: [] })],
        ['POST', /\/v2\.0\/security-group-rules$/, () => json(409, { NeutronError: { type: 'SecurityGroupRuleExists', message: `Security group rule already exists. Rule id is ${owners}.` } })],
        ['GET', new RegExp(`/v2\\.0/security-group-rules/${owners}$`), () => json(200, { security_group_rule: { id: owners, security_group_id: 'sg-b', direction: 'ingress', description: 'ssh from the office' } })],
      ]);
      const { ctx, recorded } = context();
      const { ruleId } = await driver.openBastionRule(ctx, { securityGroup: 'bastion', cidr: '198.51.100.7/32', port: 22 });
      expect(ruleId).toBe(owners);
      expect(recorded).toEqual([]);
    });

    it("the last deployment out deletes every engine-made bastion rule (recorded, unrecorded, another deployment's), never the owner's", async () => {
      const { driver, deletes } = bastionCloud(bastionRules, { ssh_port: '22' });
      const { ctx, forgotten } = context();
      const { deleted, keptFor } = await driver.closeBastionRules(ctx, { securityGroup: 'sg-b', server: 'bastion', recorded: recordedRules });
      expect(deletes).toEqual(['r-recorded', 'r-unrecorded', 'r-other']);
      expect(deleted).toEqual(deletes);
      expect(keptFor).toEqual([]);
      expect(forgotten.map((r) => r.id)).toEqual(['r-recorded', 'r-gone']);
    });

    it('keeps the shared rules while another deployment still holds access to the bastion', async () => {
      const { driver, deletes } = bastionCloud(bastionRules, { 'ctd-access-d-stillrunning': 'ssh-ed25519 AAAA', [`ctd-access-${DEP}`]: 'ssh-ed25519 BBBB' });
      const { ctx, forgotten } = context();
      const { deleted, keptFor } = await driver.closeBastionRules(ctx, { securityGroup: 'sg-b', server: 'bastion', recorded: recordedRules });
      expect(deletes).toEqual([]);
      expect(deleted).toEqual([]);
      expect(keptFor).toEqual(['d-stillrunning']);
      expect(forgotten.map((r) => r.id)).toEqual(['r-recorded', 'r-gone']);
    });
  });

  describe('Method: ensureSshAccess', () => {
    it("opens the VMs' port 22 to the bastion's group through a group of the engine's own", async () => {
      const posted: unknown[] = [];
      const { driver } = fakeCloud([
        ['GET', /\/security-groups\/bastion$/, () => json(404, { NeutronError: { type: 'SecurityGroupNotFound', message: 'nope' } })],
        ['GET', /\/security-groups\?name=bastion$/, () => json(200, { security_groups: [{ id: 'sg-b', name: 'bastion', project_id: PROJECT }] })],
        ['GET', /\/security-groups\?name=ctd-/, () => json(200, { security_groups: [] })],
        ['POST', /\/security-groups$/, (c) => (posted.push(c.body), json(201, { security_group: { id: 'sg-ssh', name: `ctd-${DEP}--ssh` } }))],
        ['PUT', /\/tags\//, () => empty(201)],
        ['GET', /\/security-group-rules\?security_group_id=sg-ssh$/, () => json(200, { security_group_rules: [] })],
        ['POST', /\/security-group-rules$/, (c) => (posted.push(c.body), json(201, { security_group_rule: { id: 'rule-ssh', security_group_id: 'sg-ssh', direction: 'ingress' } }))],
      ]);
      const { ctx, recorded } = context();
      await driver.ensureSshAccess(ctx, { bastionSecurityGroup: 'bastion' });
      expect(posted).toEqual([
        { security_group: { name: `ctd-${DEP}--ssh`, description: `ctd:${DEP}` } },
        {
          security_group_rule: {
            security_group_id: 'sg-ssh',
            direction: 'ingress',
            ethertype: 'IPv4',
            protocol: 'tcp',
            port_range_min: 22,
            port_range_max: 22,
            remote_group_id: 'sg-b',
            description: `ctd:${DEP}`,
          },
        },
      ]);
      expect(recorded).toEqual([
        { kind: 'securityGroup', id: 'sg-ssh', name: '-ssh' },
        { kind: 'securityGroupRule', id: 'rule-ssh', name: '-ssh' },
      ]);
    });
  });

  describe('Deletion', () => {
    it('deletes in reverse creation order, counts 404 as deleted and forgets each', async () => {
      const order: string[] = [];
      let serverGets = 0;
      const gone = new Set(['port-1', 'net-2']);
      const neutronDelete: Handler = (_c, m) => {
        order.push(`${m[1]} ${m[2]}`);
        return gone.has(m[2]!) ? json(404, { NeutronError: { type: 'NotFound', message: 'not found' } }) : empty(204);
      };
      const { driver } = fakeCloud([
        ['DELETE', /\/v2\.0\/(networks|subnets|security-groups|security-group-rules|ports|floatingips)\/([^/]+)$/, neutronDelete],
        ['GET', /\/v2\.0\/ports\?device_id=router-1$/, () => json(200, { ports: [{ id: 'rp', network_id: 'net-1', device_id: 'router-1', device_owner: 'network:router_interface', fixed_ips: [{ ip_address: '10.0.0.1', subnet_id: 'sub-1' }] }] })],
        ['PUT', /\/routers\/router-1\/remove_router_interface$/, (c) => (order.push(`remove_router_interface ${(c.body as { subnet_id: string }).subnet_id}`), json(200, {}))],
        ['DELETE', /\/v2\.0\/routers\/([^/]+)$/, (_c, m) => (order.push(`routers ${m[1]}`), empty(204))],
        ['DELETE', /\/servers\/srv-1$/, () => (order.push('servers srv-1'), empty(204))],
        ['GET', /\/servers\/srv-1$/, () => (++serverGets < 3 ? json(200, { server: { id: 'srv-1', name: 'x', status: 'ACTIVE' } }) : json(404, { itemNotFound: { code: 404, message: 'gone' } }))],
      ]);
      const refs: CloudResourceRef[] = [
        { kind: 'network', id: 'net-1', name: 'a' },
        { kind: 'subnet', id: 'sub-1', name: 'a' },
        { kind: 'router', id: 'router-1', name: 'a' },
        { kind: 'network', id: 'net-2', name: 'b' },
        { kind: 'securityGroup', id: 'sg-1', name: 'web' },
        { kind: 'securityGroupRule', id: 'rule-1', name: 'web' },
        { kind: 'bastionRule', id: 'bastion-rule', name: 'bastion' },
        { kind: 'port', id: 'port-1', name: 'web1' },
        { kind: 'server', id: 'srv-1', name: 'web1' },
        { kind: 'floatingIp', id: 'fip-1', name: 'web1' },
      ];
      const { ctx, forgotten } = context();
      await driver.deleteResources(ctx, refs);
      expect(order).toEqual([
        'floatingips fip-1',
        'servers srv-1',
        'ports port-1',
        'security-group-rules rule-1',
        'security-groups sg-1',
        'remove_router_interface sub-1',
        'routers router-1',
        'subnets sub-1',
        'networks net-2',
        'networks net-1',
      ]);
      expect(serverGets).toBe(3);
      expect(forgotten.map((r) => r.id)).toEqual(['fip-1', 'srv-1', 'port-1', 'rule-1', 'sg-1', 'router-1', 'sub-1', 'net-2', 'net-1']);
    });

    it('a failed delete is Ctd.ProvisioningError and stops before what depends on it', async () => {
      const { driver, calls } = fakeCloud([
        ['DELETE', /\/ports\/port-1$/, () => json(409, { NeutronError: { type: 'PortInUse', message: 'Port port-1 is still in use' } })],
      ]);
      const error = await failure(
        driver.deleteResources(context().ctx, [
          { kind: 'network', id: 'net-1', name: 'a' },
          { kind: 'port', id: 'port-1', name: 'web1' },
        ]),
      );
      expect(error.errorName).toBe(ErrorName.ProvisioningError);
      expect(error.message).toBe('deleting port web1 (port-1) failed: HTTP 409: PortInUse: Port port-1 is still in use');
      expect(calls.some((c) => c.url.includes('/networks/net-1'))).toBe(false);
    });

    it('sweeps by mark: name prefix, tag, description and server metadata, never what is not the deployment’s', async () => {
      const deleted: string[] = [];
      const mine = `ctd-${DEP}-`;
      const { driver } = fakeCloud([
        ['GET', /\/v2\.0\/networks$/, () => json(200, { networks: [{ id: 'net-1', name: `${mine}private`, project_id: PROJECT }, { id: 'public', name: 'public', project_id: 'admin' }, { id: 'net-x', name: 'ctd-d-other-private', project_id: PROJECT }] })],
        ['GET', /\/v2\.0\/subnets$/, () => json(200, { subnets: [] })],
        ['GET', /\/v2\.0\/routers$/, () => json(200, { routers: [{ id: 'router-1', name: 'renamed', project_id: PROJECT, tags: [`ctd:${DEP}`] }] })],
        ['GET', /\/v2\.0\/security-groups$/, () => json(200, { security_groups: [{ id: 'sg-1', name: `${mine}web`, project_id: PROJECT }, { id: 'sg-default', name: 'default', project_id: PROJECT }] })],
        ['GET', /\/v2\.0\/ports$/, () => json(200, { ports: [{ id: 'port-1', name: `${mine}web1`, network_id: 'net-1', project_id: PROJECT }, { id: 'port-other', name: `${mine}web1`, network_id: 'n', project_id: 'another-project' }] })],
        ['GET', /\/v2\.0\/floatingips$/, () => json(200, { floatingips: [{ id: 'fip-1', floating_ip_address: '203.0.113.20', port_id: 'port-1', project_id: PROJECT }, { id: 'fip-x', floating_ip_address: '203.0.113.21', port_id: 'p9', project_id: PROJECT }] })],
        ['GET', /\/servers\/detail\?name=/, () => json(200, { servers: [{ id: 'srv-1', name: `${mine}web1`, status: 'ACTIVE', metadata: { 'ctd-deployment': DEP } }] })],
        ['GET', /\/v2\.0\/ports\?device_id=router-1$/, () => json(200, { ports: [] })],
        ['GET', /\/servers\/srv-1$/, () => json(404, { itemNotFound: { code: 404, message: 'gone' } })],
        ['DELETE', /\/(?:v2\.0|v2\.1)\/([a-z-]+)\/([^/]+)$/, (_c, m) => (deleted.push(m[2]!), empty(204))],
      ]);
      const swept = await driver.sweep(context().ctx);
      expect(deleted).toEqual(['fip-1', 'srv-1', 'port-1', 'sg-1', 'router-1', 'net-1']);
      expect(swept.find((r) => r.id === 'sg-1')).toEqual({ kind: 'securityGroup', id: 'sg-1', name: 'web' });
    });
  });

  describe('Servers', () => {
    it('creates the port with its groups, then the server on that port with base64 user data, metadata and a microversion', async () => {
      const { driver, calls } = vmCloud({});
      const { ctx, recorded } = context();
      const info = await driver.ensureVm(ctx, { vm, userData: '#cloud-config\nssh_authorized_keys: [x]\n' });
      expect(info).toEqual({ name: 'web1', id: 'srv-1', address: '10.0.0.5', port: 22, status: 'active', hostKey: 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHostKey' });
      const port = calls.find((c) => c.method === 'POST' && c.url.endsWith('/ports'))!;
      expect(port.body).toEqual({ port: { name: `ctd-${DEP}-web1`, network_id: 'net-1', security_groups: ['sg-1'], admin_state_up: true } });
      const server = calls.find((c) => c.method === 'POST' && c.url.endsWith('/servers'))!;
      expect(server.headers['openstack-api-version']).toBe('compute 2.1');
      expect(server.body).toEqual({
        server: {
          name: `ctd-${DEP}-web1`,
          imageRef: 'img-1',
          flavorRef: 'flv-1',
          networks: [{ port: 'port-1' }],
          user_data: Buffer.from('#cloud-config\nssh_authorized_keys: [x]\n').toString('base64'),
          metadata: { 'ctd-deployment': DEP },
        },
      });
      expect(recorded).toEqual([
        { kind: 'port', id: 'port-1', name: 'web1' },
        { kind: 'server', id: 'srv-1', name: 'web1' },
      ]);
    });

    it('adopts a server an earlier attempt created instead of creating a second one', async () => {
      const { driver, calls } = vmCloud({ existingServer: true });
      await driver.ensureVm(context().ctx, { vm, userData: '#cloud-config\n' });
      expect(calls.some((c) => c.method === 'POST' && c.url.endsWith('/servers'))).toBe(false);
    });
  });
});

describe('Function: bodyMessage', () => {
  it.each([
    ['{"NeutronError": {"type": "OverQuota", "message": "Quota exceeded", "detail": ""}}', 'OverQuota: Quota exceeded'],
    ['{"forbidden": {"code": 403, "message": "Quota exceeded for cores"}}', 'Quota exceeded for cores'],
    ['{"error": {"code": 401, "title": "Unauthorized", "message": "requires authentication"}}', 'requires authentication'],
    [OTC_502, '502 Bad Gateway — The backend server is unreachable'],
    ['404 Not Found\n\nThe resource could not be found.\n\n   ', '404 Not Found The resource could not be found.'],
  ])('reads %j', (body, message) => {
    expect(bodyMessage(body)).toBe(message);
  });
});

describe('Function: hostKeyFromConsole', () => {
  it('picks the ed25519 key from the block cloud-init prints, without its comment', () => {
    const console = [
      'Cloud-init v. 22.4 running modules',
      '-----BEGIN SSH HOST KEY KEYS-----',
      'ecdsa-sha2-nistp256 AAAAE2VjZHNh root@web1',
      'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKey root@web1',
      'ssh-rsa AAAAB3NzaC1yc2E root@web1',
      '-----END SSH HOST KEY KEYS-----',
    ].join('\r\n');
    expect(hostKeyFromConsole(console)).toBe('ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKey');
    expect(hostKeyFromConsole('booting…')).toBeUndefined();
  });
});

const vm = { name: 'web1', network: 'private', securityGroups: ['web'], image: 'debian-12', flavor: 'm1.small', floatingIp: false };

/** The answers ensureVm reads: network and group by marked name, image and flavor by name, the server's life. */
function vmCloud(opts: {
  createServer?: Handler;
  serverStatus?: () => Record<string, unknown>;
  existingServer?: boolean;
  activeTimeoutMs?: number;
}) {
  const server = () => ({ id: 'srv-1', name: `ctd-${DEP}-web1`, metadata: { 'ctd-deployment': DEP }, addresses: { [`ctd-${DEP}-private`]: [{ addr: '10.0.0.5', version: 4, 'OS-EXT-IPS:type': 'fixed' }] }, ...(opts.serverStatus?.() ?? { status: 'ACTIVE' }) });
  // A short bound on ACTIVE needs time to pass between polls: a real (5 ms) sleep then.
  const timing = opts.activeTimeoutMs === undefined ? {} : { activeTimeoutMs: opts.activeTimeoutMs, pollIntervalMs: 5, sleep: (ms: number) => new Promise<void>((r) => setTimeout(r, ms)) };
  const cloud = fakeCloud([
    ['GET', /\/v2\.0\/networks\?name=/, () => json(200, { networks: [{ id: 'net-1', name: `ctd-${DEP}-private`, project_id: PROJECT }] })],
    ['GET', /\/v2\.0\/security-groups\?name=/, () => json(200, { security_groups: [{ id: 'sg-1', name: `ctd-${DEP}-web`, project_id: PROJECT }] })],
    ['GET', /\/v2\.0\/ports\?name=/, () => json(200, { ports: [] })],
    ['POST', /\/v2\.0\/ports$/, () => json(201, { port: { id: 'port-1', name: `ctd-${DEP}-web1`, network_id: 'net-1', fixed_ips: [{ ip_address: '10.0.0.5', subnet_id: 'sub-1' }] } })],
    ['PUT', /\/tags\//, () => empty(201)],
    ['GET', /\/servers\/detail\?name=/, () => json(200, { servers: opts.existingServer ? [server()] : [] })],
    ['GET', /glance\.test\/v2\/images\/debian-12$/, () => new Response('404 Not Found\n\nNo image found with ID debian-12\n\n', { status: 404 })],
    ['GET', /glance\.test\/v2\/images\?name=debian-12$/, () => json(200, { images: [{ id: 'img-1', name: 'debian-12' }] })],
    ['GET', /\/flavors\/m1\.small$/, () => json(404, { itemNotFound: { code: 404, message: 'Flavor m1.small could not be found.' } })],
    ['GET', /\/flavors\/detail$/, () => json(200, { flavors: [{ id: 'flv-1', name: 'm1.small' }, { id: 'flv-2', name: 'm1.large' }] })],
    ['POST', /\/servers$/, opts.createServer ?? (() => json(202, { server: { id: 'srv-1', adminPass: 'x' } }))],
    ['GET', /\/servers\/srv-1$/, () => json(200, { server: server() })],
    ['POST', /\/servers\/srv-1\/action$/, () => json(200, { output: '-----BEGIN SSH HOST KEY KEYS-----\nssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHostKey root@web1\n-----END SSH HOST KEY KEYS-----\n' })],
  ], timing);
  return cloud;
}
