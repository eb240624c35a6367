import { RemovalPolicy } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as logs from 'aws-cdk-lib/aws-logs';
import { Construct } from 'constructs';

/**
 * Where sandboxes run: private subnets in two AZs, out through NAT (the bastion rule admits the
 * NAT addresses), nothing inbound. Flow logs record what sandboxes talk to.
 */
export class SandboxNetwork extends Construct {
  readonly vpc: ec2.Vpc;
  readonly securityGroup: ec2.SecurityGroup;
  readonly subnets: ec2.SubnetSelection = { subnetType: ec2.SubnetType.PRIVATE_WITH_EGRESS };

  constructor(scope: Construct, id: string, props: { logRetention: logs.RetentionDays }) {
    super(scope, id);
    this.vpc = new ec2.Vpc(this, 'Vpc', {
      maxAzs: 2,
      natGateways: 2,
      subnetConfiguration: [
        { name: 'public', subnetType: ec2.SubnetType.PUBLIC, cidrMask: 24 },
        { name: 'sandbox', subnetType: ec2.SubnetType.PRIVATE_WITH_EGRESS, cidrMask: 20 },
      ],
    });
    const flowLogs = new logs.LogGroup(this, 'FlowLogs', {
      retention: props.logRetention,
      removalPolicy: RemovalPolicy.DESTROY,
    });
    this.vpc.addFlowLog('FlowLog', {
      destination: ec2.FlowLogDestination.toCloudWatchLogs(flowLogs),
      trafficType: ec2.FlowLogTrafficType.ALL,
    });
    this.securityGroup = new ec2.SecurityGroup(this, 'SandboxSecurityGroup', {
      vpc: this.vpc,
      description: 'CTD sandboxes: egress only (cloud APIs, the bastion, AWS endpoints)',
      allowAllOutbound: true,
    });
  }

  /** Public addresses sandboxes leave through: what the bastion's security-group rule must admit. */
  egressAddresses(): string[] {
    return this.vpc.publicSubnets.flatMap((subnet) => {
      const eip = subnet.node.tryFindChild('EIP');
      return eip instanceof ec2.CfnEIP ? [eip.ref] : [];
    });
  }
}
