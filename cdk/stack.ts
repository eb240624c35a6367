import { CfnOutput, Fn, Stack, type StackProps } from 'aws-cdk-lib';
import * as logs from 'aws-cdk-lib/aws-logs';
import type { Construct } from 'constructs';
import { Api } from './api.ts';
import { DeploymentsTable } from './data.ts';
import { Engine } from './engine.ts';
import { TokenKey } from './keys.ts';
import { SandboxNetwork } from './network.ts';
import { SANDBOX_TABLE_ACCESS, stateMachineArn, taskResponseStatement } from './permissions.ts';
import { Sandbox } from './sandbox.ts';

/** Context keys read by the stack (`cdk synth -c ctd:cloud=aws`). */
export const CONTEXT = { cloud: 'ctd:cloud', cloudEndpoint: 'ctd:cloudEndpoint' } as const;

export interface CtdStackProps extends StackProps {
  readonly logRetention?: logs.RetentionDays;
}

/** One self-hosted CTD Orchestrator instance: API, engine, sandboxes, data and keys. */
export class CtdStack extends Stack {
  readonly data: DeploymentsTable;
  readonly tokenKey: TokenKey;
  readonly network: SandboxNetwork;
  readonly sandbox: Sandbox;
  readonly engine: Engine;
  readonly api: Api;

  constructor(scope: Construct, id: string, props: CtdStackProps = {}) {
    super(scope, id, props);
    const logRetention = props.logRetention ?? logs.RetentionDays.ONE_MONTH;
    const cloud = {
      CTD_CLOUD: String(this.node.tryGetContext(CONTEXT.cloud) ?? 'openstack'),
      CTD_CLOUD_ENDPOINT: String(this.node.tryGetContext(CONTEXT.cloudEndpoint) ?? ''),
    };

    this.data = new DeploymentsTable(this, 'Data');
    this.tokenKey = new TokenKey(this, 'TokenKey');
    this.network = new SandboxNetwork(this, 'Network', { logRetention });
    const shared = {
      CTD_TABLE_NAME: this.data.table.tableName,
      CTD_KMS_KEY_ID: this.tokenKey.key.keyId,
      ...cloud,
    };

    this.sandbox = new Sandbox(this, 'Sandbox', {
      vpc: this.network.vpc,
      logRetention,
      // The bastion-open step admits these NAT addresses to the bastion's SSH port.
      environment: { ...shared, CTD_EGRESS_ADDRESSES: Fn.join(',', this.network.egressAddresses()) },
    });
    this.data.grantAccess(this.sandbox.taskRole, ...SANDBOX_TABLE_ACCESS);
    this.sandbox.taskRole.addToPrincipalPolicy(taskResponseStatement(this, true));
    this.tokenKey.allowDecrypt(this.sandbox.taskRole);

    const environment = {
      ...shared,
      CTD_STATE_MACHINE_ARN: stateMachineArn(this),
      CTD_CLUSTER_ARN: this.sandbox.cluster.clusterArn,
    };
    this.engine = new Engine(this, 'Engine', {
      data: this.data,
      network: this.network,
      sandbox: this.sandbox,
      environment,
      logRetention,
    });
    this.api = new Api(this, 'Api', {
      data: this.data,
      tokenKey: this.tokenKey,
      sandbox: this.sandbox,
      environment,
      logRetention,
    });

    new CfnOutput(this, 'ApiUrl', { value: this.api.restApi.url });
    new CfnOutput(this, 'StateMachineArn', { value: this.engine.stateMachine.stateMachineArn });
    new CfnOutput(this, 'TableName', { value: this.data.table.tableName });
  }
}
