import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { Match } from 'aws-cdk-lib/assertions';
import { describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../../cdk/functions.ts';
import { RUNNER_CAPABILITIES } from '../../cdk/sandbox.ts';
import { CODE_CACHE_SETTINGS } from '../../local/sandbox/runnerBundle.ts';
import { actionsOf, logicalId, roleStatements, synthCtdStack } from './helpers.ts';

const { stack, template } = synthCtdStack({ 'ctd:cloud': 'openstack', 'ctd:keystoneUrl': 'https://keystone.example/v3' });

describe('Construct: Sandbox', () => {
  it('runs the runner container read-only, unprivileged, logging to CloudWatch', () => {
    template.hasResourceProperties('AWS::ECS::TaskDefinition', {
      RequiresCompatibilities: ['FARGATE'],
      RuntimePlatform: { CpuArchitecture: 'ARM64', OperatingSystemFamily: 'LINUX' },
      ContainerDefinitions: [
        Match.objectLike({
          Name: 'runner',
          ReadonlyRootFilesystem: true,
          Privileged: false,
          User: '0:0',
          LogConfiguration: Match.objectLike({ LogDriver: 'awslogs' }),
          MountPoints: Match.arrayWith([
            { ContainerPath: '/tmp', ReadOnly: false, SourceVolume: 'tmp' },
            { ContainerPath: '/work', ReadOnly: false, SourceVolume: 'work' },
          ]),
          Environment: Match.arrayWith([
            Match.objectLike({ Name: 'CTD_TABLE_NAME' }),
            Match.objectLike({ Name: 'CTD_KMS_KEY_ID' }),
            { Name: 'CTD_CLOUD', Value: 'openstack' },
            { Name: 'CTD_KEYSTONE_URL', Value: 'https://keystone.example/v3' },
          ]),
        }),
      ],
    });
  });

  const dockerfile = readFileSync(path.join(REPO_ROOT, 'sandbox/Dockerfile'), 'utf8');
  const runner = () => Object.values(template.findResources('AWS::ECS::TaskDefinition'))[0]!.Properties.ContainerDefinitions[0];

  it("builds the image's code cache with local mode's placeholder settings, so both cache the clients' construction", () => {
    // The RUN instruction with its continuation lines joined.
    const run = dockerfile.replace(/\\\n\s*/g, ' ').match(/^RUN (CTD_TASK_FROM_STDIN=1 CTD_RUNNER_CODE_CACHE=write .*)$/m)?.[1] ?? '';
    expect(run).toContain('node /app/runner.cjs');
    for (const [name, value] of Object.entries(CODE_CACHE_SETTINGS)) expect(run).toContain(`${name}=${value}`);
  });

  it('gives the runner writable scratch mounts: each is a VOLUME of the image', () => {
    // Fargate seeds a bind mount from the image only at a VOLUME path; elsewhere it is root's, 0755.
    const volumes = [...dockerfile.matchAll(/^VOLUME (\[.*\])$/gm)].flatMap((m) => JSON.parse(m[1]!) as string[]);
    const mounts = (runner().MountPoints as { ContainerPath: string }[]).map((m) => m.ContainerPath);
    expect(mounts.filter((p) => !volumes.includes(p))).toEqual([]);
  });

  it("keeps the runner only the capabilities it needs to run the user's code as the image's step user", () => {
    const dockerDefaults = ['AUDIT_WRITE', 'CHOWN', 'DAC_OVERRIDE', 'FOWNER', 'FSETID', 'KILL', 'MKNOD', 'NET_BIND_SERVICE', 'NET_RAW', 'SETFCAP', 'SETGID', 'SETPCAP', 'SETUID', 'SYS_CHROOT'];
    const { Drop: dropped, Add: added } = runner().LinuxParameters.Capabilities as { Drop: string[]; Add?: string[] };
    expect(added ?? []).toEqual([]);
    expect(dockerDefaults.filter((c) => !dropped.includes(c))).toEqual([...RUNNER_CAPABILITIES]);
    // The step user exists in the image, is not root, and is the one the runner is told to use.
    const uid = /useradd --uid (\d+) .* step\b/.exec(dockerfile)?.[1];
    expect(Number(uid)).toBeGreaterThan(0);
    expect(dockerfile).toContain(`CTD_STEP_UID=${uid} CTD_STEP_GID=${uid}`);
    expect(dockerfile).not.toMatch(/^USER /m);
    // And it has no setuid program left to climb back to root through.
    expect(dockerfile).toMatch(/find \/ -xdev -type f -perm \/6000 -exec chmod ug-s \{\} \+/);
  });

  it('enables container insights on the cluster', () => {
    template.hasResourceProperties('AWS::ECS::Cluster', {
      ClusterSettings: [{ Name: 'containerInsights', Value: 'enabled' }],
    });
  });

  it('lets sandboxes out but nothing in', () => {
    const id = logicalId(stack.network.securityGroup);
    const sg = template.toJSON().Resources[id].Properties;
    expect(sg.SecurityGroupIngress).toBeUndefined();
    const ingress = Object.values(template.findResources('AWS::EC2::SecurityGroupIngress'));
    expect(ingress.filter((r) => JSON.stringify(r.Properties.GroupId).includes(`"${id}"`))).toEqual([]);
  });

  // BatchWriteItem (step logs) could carry deletes too; IAM cannot split it. No DeleteItem, no wildcard.
  it('lets the task role report on its task token, with no DeleteItem and no wildcard', () => {
    const statements = roleStatements(template, logicalId(stack.sandbox.taskRole));
    const actions = statements.flatMap(actionsOf);
    expect(actions).toEqual(
      expect.arrayContaining(['states:SendTaskSuccess', 'states:SendTaskFailure', 'states:SendTaskHeartbeat']),
    );
    expect(actions).not.toContain('dynamodb:DeleteItem');
    expect(actions.filter((a) => a.endsWith('*'))).toEqual([]);
  });
});
