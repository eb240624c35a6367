import { Match } from 'aws-cdk-lib/assertions';
import type { IConstruct } from 'constructs';
import { describe, expect, it } from 'vitest';
import { CtdStack } from '../../cdk/stack.ts';
import { logicalId, synthCtdStack, testApp } from './helpers.ts';

const { stack, template } = synthCtdStack({
  'ctd:cloud': 'openstack',
  'ctd:keystoneUrl': 'https://iam.example.com/v3',
  'ctd:osRegion': 'eu-de',
  'ctd:prestartMaxWaiting': '60',
  'ctd:prestartStartSeconds': '45',
  'ctd:prestartMaxIdleSeconds': '300',
});
const resources = template.toJSON().Resources as Record<string, { Type: string; Properties: Record<string, unknown>; DeletionPolicy?: string }>;
const ofType = (type: string) => Object.entries(resources).filter(([, r]) => r.Type === type);
const containerEnv = () =>
  Object.fromEntries(
    (Object.values(template.findResources('AWS::ECS::TaskDefinition'))[0]!.Properties.ContainerDefinitions[0].Environment as { Name: string; Value: unknown }[]).map((e) => [e.Name, e.Value]),
  );

describe('Construct: SandboxNetwork', () => {
  it('reaches AWS through VPC endpoints: S3 and DynamoDB gateways, ECR api+dkr, KMS, Step Functions, Logs', () => {
    const services = ofType('AWS::EC2::VPCEndpoint').map(([, r]) => JSON.stringify(r.Properties.ServiceName));
    for (const service of ['.s3', '.dynamodb', '.ecr.api', '.ecr.dkr', '.kms', '.states', '.logs']) {
      expect(services.filter((s) => s.includes(`${service}"`)), service).toHaveLength(1);
    }
    for (const [, r] of ofType('AWS::EC2::VPCEndpoint')) {
      if (r.Properties.VpcEndpointType === 'Interface') expect(r.Properties.PrivateDnsEnabled).toBe(true);
    }
  });

  it('opens the interface endpoints to the sandboxes only, on 443', () => {
    const sandboxSg = logicalId(stack.network.securityGroup);
    const ingress = ofType('AWS::EC2::SecurityGroupIngress').map(([, r]) => r.Properties);
    expect(ingress).toHaveLength(5);
    for (const rule of ingress) {
      expect(rule).toMatchObject({ FromPort: 443, ToPort: 443, IpProtocol: 'tcp', SourceSecurityGroupId: { 'Fn::GetAtt': [sandboxSg, 'GroupId'] } });
    }
  });

  it('leaves through NAT gateways with Elastic IPs the stack owns and keeps, handed to the sandbox as CTD_EGRESS_ADDRESSES', () => {
    const eips = ofType('AWS::EC2::EIP');
    expect(eips.map(([id]) => id).sort()).toEqual(stack.network.egressIps.map((e) => logicalId(e)).sort());
    expect(eips.every(([, r]) => r.DeletionPolicy === 'Retain')).toBe(true);
    const nats = ofType('AWS::EC2::NatGateway');
    expect(nats).toHaveLength(2);
    expect(nats.map(([, r]) => r.Properties.AllocationId)).toEqual(
      expect.arrayContaining(eips.map(([id]) => ({ 'Fn::GetAtt': [id, 'AllocationId'] }))),
    );
    expect(containerEnv().CTD_EGRESS_ADDRESSES).toEqual({ 'Fn::Join': [',', eips.map(([id]) => ({ Ref: id }))] });
    template.hasOutput('EgressAddresses', { Value: { 'Fn::Join': [',', Match.anyValue()] } });
  });
});

describe('Stack: cloud context', () => {
  it('gives the cloud settings to the sandbox, the authorizer and submit, and to no other function', () => {
    expect(containerEnv()).toMatchObject({ CTD_CLOUD: 'openstack', CTD_KEYSTONE_URL: 'https://iam.example.com/v3', CTD_OS_REGION: 'eu-de' });
    expect(containerEnv()).not.toHaveProperty('CTD_CLOUD_ENDPOINT');
    const withCloud = Object.entries({ ...stack.api.functions, ...stack.engine.functions })
      .filter(([, fn]) => (resources[logicalId(fn)]!.Properties.Environment as { Variables: Record<string, unknown> }).Variables.CTD_CLOUD === 'openstack')
      .map(([name]) => name);
    expect(withCloud.sort()).toEqual(['authorizer', 'submit']);
    expect((resources[logicalId(stack.api.functions.authorizer)]!.Properties.Environment as { Variables: Record<string, unknown> }).Variables).toMatchObject({
      CTD_KEYSTONE_URL: 'https://iam.example.com/v3',
    });
  });

  it('gives the pre-start context to every engine function, and to nothing else', () => {
    const env = (fn: IConstruct) => (resources[logicalId(fn)]!.Properties.Environment as { Variables: Record<string, unknown> }).Variables;
    for (const fn of Object.values(stack.engine.functions)) expect(env(fn)).toMatchObject({ CTD_PRESTART_MAX_WAITING: '60', CTD_PRESTART_START_SECONDS: '45', CTD_PRESTART_MAX_IDLE_SECONDS: '300' });
    for (const fn of Object.values(stack.api.functions)) expect(env(fn)).not.toHaveProperty('CTD_PRESTART_MAX_WAITING');
    expect(containerEnv()).not.toHaveProperty('CTD_PRESTART_MAX_WAITING');
    // Unset, the engine's own defaults hold: no variable at all.
    expect(env(stack.engine.functions.awaitDependencies)).not.toHaveProperty('CTD_PRESTART');
  });

  it.each([
    [{ 'ctd:cloud': 'aws' }, /-c ctd:cloud: unknown cloud kind "aws" \(known: openstack\)/],
    [{ 'ctd:cloud': 'local' }, /-c ctd:cloud: unknown cloud kind "local"/],
    [{ 'ctd:keystoneUrl': 'http://iam.example.com/v3' }, /-c ctd:keystoneUrl: must be an https:\/\/ URL/],
    [{ 'ctd:keystoneUrl': '' }, /-c ctd:keystoneUrl: required/],
    [{ 'ctd:prestart': 'maybe' }, /-c ctd:prestart: /],
    [{ 'ctd:prestartMaxWaiting': '0' }, /-c ctd:prestartMaxWaiting: must be a whole number ≥ 1/],
    [{ 'ctd:prestartStartSeconds': 'soon' }, /-c ctd:prestartStartSeconds: must be a number of seconds > 0/],
    [{ 'ctd:prestartMaxIdleSeconds': '0' }, /-c ctd:prestartMaxIdleSeconds: must be a number of seconds > 0/],
    [{ 'ctd:prestartMaxIdleSeconds': '60', 'ctd:prestartStartSeconds': '' }, /-c ctd:prestartMaxIdleSeconds: must be at least 2 × the start to hide, 120 s/],
  ])('refuses %j at synth time, naming the context key', (context, message) => {
    expect(() => new CtdStack(testApp(context), 'CtdBadContext')).toThrow(message);
  });

  it('needs no context beyond cdk.json for `cdk synth`', () => {
    expect(() => new CtdStack(testApp(), 'CtdDefault')).not.toThrow();
  });
});
