import { Match } from 'aws-cdk-lib/assertions';
import { describe, expect, it } from 'vitest';
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

  it('lets the task role report on its task token and never delete items', () => {
    const statements = roleStatements(template, logicalId(stack.sandbox.taskRole));
    const actions = statements.flatMap(actionsOf);
    expect(actions).toEqual(
      expect.arrayContaining(['states:SendTaskSuccess', 'states:SendTaskFailure', 'states:SendTaskHeartbeat']),
    );
    expect(actions).not.toContain('dynamodb:DeleteItem');
    expect(actions.filter((a) => a.endsWith('*'))).toEqual([]);
  });
});
