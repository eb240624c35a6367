import { RemovalPolicy } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as logs from 'aws-cdk-lib/aws-logs';
import { Construct } from 'constructs';

/** One NAT gateway per AZ, each with an Elastic IP of this stack. */
const AZ_COUNT = 2;

/**
 * Where sandboxes run: private subnets in two AZs, nothing inbound. AWS services are reached
 * through VPC endpoints (image pulls, DynamoDB, KMS, Step Functions, Logs never cross the NAT);
 * the NAT remains for the target cloud only, leaving from fixed Elastic IPs that the stack owns,
 * so the bastion rule `bastion-open` adds names addresses that do not change when a NAT gateway
 * is replaced. Flow logs record what sandboxes talk to.
 */
export class SandboxNetwork extends Construct {
  readonly vpc: ec2.Vpc;
  readonly securityGroup: ec2.SecurityGroup;
  readonly subnets: ec2.SubnetSelection = { subnetType: ec2.SubnetType.PRIVATE_WITH_EGRESS };
  /** The NAT gateways' addresses: the sandboxes' source address at the target cloud. */
  readonly egressIps: ec2.CfnEIP[];
  readonly endpoints: Record<string, ec2.IVpcEndpoint> = {};

  constructor(scope: Construct, id: string, props: { logRetention: logs.RetentionDays }) {
    super(scope, id);
    this.egressIps = Array.from({ length: AZ_COUNT }, (_, i) => {
      const eip = new ec2.CfnEIP(this, `EgressIp${i + 1}`, {
        domain: 'vpc',
        tags: [{ key: 'Name', value: `ctd-sandbox-egress-${i + 1}` }],
      });
      // Tenants admit these addresses on their bastions: keep them across replacements of the VPC.
      eip.applyRemovalPolicy(RemovalPolicy.RETAIN);
      return eip;
    });
    this.vpc = new ec2.Vpc(this, 'Vpc', {
      maxAzs: AZ_COUNT,
      natGateways: AZ_COUNT,
      natGatewayProvider: ec2.NatProvider.gateway({ eipAllocationIds: this.egressIps.map((e) => e.attrAllocationId) }),
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
    this.addEndpoints();
  }

  /**
   * Gateways for S3 (ECR's image layers) and DynamoDB; interface endpoints, reachable only from the
   * sandboxes, for ECR (api, dkr), KMS, Step Functions and CloudWatch Logs (the awslogs driver).
   */
  private addEndpoints(): void {
    const subnets = [this.subnets];
    this.endpoints.s3 = this.vpc.addGatewayEndpoint('S3', { service: ec2.GatewayVpcEndpointAwsService.S3, subnets });
    this.endpoints.dynamodb = this.vpc.addGatewayEndpoint('DynamoDb', { service: ec2.GatewayVpcEndpointAwsService.DYNAMODB, subnets });
    const interfaces = {
      ecrApi: ec2.InterfaceVpcEndpointAwsService.ECR,
      ecrDocker: ec2.InterfaceVpcEndpointAwsService.ECR_DOCKER,
      kms: ec2.InterfaceVpcEndpointAwsService.KMS,
      stepFunctions: ec2.InterfaceVpcEndpointAwsService.STEP_FUNCTIONS,
      logs: ec2.InterfaceVpcEndpointAwsService.CLOUDWATCH_LOGS,
    };
    for (const [name, service] of Object.entries(interfaces)) {
      const endpoint = this.vpc.addInterfaceEndpoint(name, { service, subnets: this.subnets, privateDnsEnabled: true, open: false });
      endpoint.connections.allowDefaultPortFrom(this.securityGroup, 'CTD sandboxes');
      this.endpoints[name] = endpoint;
    }
  }

  /** Public addresses sandboxes leave through: what the bastion's security-group rule must admit. */
  egressAddresses(): string[] {
    return this.egressIps.map((eip) => eip.ref);
  }
}
