import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { Match } from 'aws-cdk-lib/assertions';
import { describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../../cdk/functions.ts';
import { actionsOf, logicalId, roleStatements, synthCtdStack } from './helpers.ts';

const { stack, template } = synthCtdStack({ 'ctd:cloud': 'aws', 'ctd:cloudEndpoint': 'https://cloud.example' });

describe('Construct: Sandbox', () => {
  it('runs the runner container read-only, unprivileged, non-root, logging to CloudWatch', () => {
    template.hasResourceProperties('AWS::ECS::TaskDefinition', {
      RequiresCompatibilities: ['FARGATE'],
      RuntimePlatform: { CpuArchitecture: 'ARM64', OperatingSystemFamily: 'LINUX' },
      ContainerDefinitions: [
        Match.objectLike({
          Name: 'runner',
          ReadonlyRootFilesystem: true,
          Privileged: false,
          User: '1000:1000',
          LogConfiguration: Match.objectLike({ LogDriver: 'awslogs' }),
          MountPoints: Match.arrayWith([
            { ContainerPath: '/tmp', ReadOnly: false, SourceVolume: 'tmp' },
            { ContainerPath: '/work', ReadOnly: false, SourceVolume: 'work' },
          ]),
          Environment: Match.arrayWith([
            Match.objectLike({ Name: 'CTD_TABLE_NAME' }),
            Match.objectLike({ Name: 'CTD_KMS_KEY_ID' }),
            { Name: 'CTD_CLOUD', Value: 'aws' },
            { Name: 'CTD_CLOUD_ENDPOINT', Value: 'https://cloud.example' },
          ]),
        }),
      ],
    });
  });

  it('gives the runner writable scratch mounts: each is a VOLUME of the image, /work owned by its user', () => {
    // Fargate seeds a bind mount from the image only at a VOLUME path; elsewhere it is root's, 0755.
    const dockerfile = readFileSync(path.join(REPO_ROOT, 'sandbox/Dockerfile'), 'utf8');
    const volumes = [...dockerfile.matchAll(/^VOLUME (\[.*\])$/gm)].flatMap((m) => JSON.parse(m[1]!) as string[]);
    const [container] = Object.values(template.findResources('AWS::ECS::TaskDefinition'))[0]!.Properties.ContainerDefinitions;
    const mounts = (container.MountPoints as { ContainerPath: string }[]).map((m) => m.ContainerPath);
    expect(mounts.filter((p) => !volumes.includes(p))).toEqual([]);
    expect(dockerfile).toMatch(/^USER node$/m);
    expect(dockerfile).toMatch(/chown node:node \/work\b/);
    // The image's `node` user is uid 1000: the one the task definition runs as.
    expect(container.User).toBe('1000:1000');
  });

  it('enables container insights on the cluster', () => {
    template.hasResourceProperties('AWS::ECS::Cluster', {
      ClusterSettings: [{ Name: 'containerInsights', Value: 'enabled' }],
    });
  });

  it('lets sandboxes out but nothing in', () => {
    const sg = template.toJSON().Resources[logicalId(stack.network.securityGroup)].Properties;
    expect(sg.SecurityGroupIngress).toBeUndefined();
    template.resourceCountIs('AWS::EC2::SecurityGroupIngress', 0);
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
