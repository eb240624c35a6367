import { CfnOutput, Fn, Stack, type StackProps } from 'aws-cdk-lib';
import { ENV } from '../core/config/names.ts';
import { SANDBOX_CONFIG } from '../core/config/schema.ts';
import { environmentOf } from '../lambdas/catalog.ts';
import * as logs from 'aws-cdk-lib/aws-logs';
import type { Construct } from 'constructs';
import { Api } from './api.ts';
import { readContext } from './context.ts';
import { DeploymentsTable } from './data.ts';
import { Engine } from './engine.ts';
import { TokenKey } from './keys.ts';
import { SandboxNetwork } from './network.ts';
import { Observability } from './observability.ts';
import { SANDBOX_TABLE_ACCESS, stateMachineArn, taskResponseStatement } from './permissions.ts';
import { Sandbox } from './sandbox.ts';

export { CONTEXT } from './context.ts';

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
  readonly observability: Observability;

  constructor(scope: Construct, id: string, props: CtdStackProps = {}) {
    super(scope, id, props);
    const logRetention = props.logRetention ?? logs.RetentionDays.ONE_MONTH;
    const context = readContext(this.node);
    // What the OpenStack driver reads (docs/OPENSTACK.md): only the sandbox and the API functions that ask the cloud get it.
    const cloud: Record<string, string> = {
      [ENV.cloud]: context.cloud,
      [ENV.keystoneUrl]: context.keystoneUrl,
      ...(context.osInterface ? { [ENV.osInterface]: context.osInterface } : {}),
      ...(context.osRegion ? { [ENV.osRegion]: context.osRegion } : {}),
    };

    this.data = new DeploymentsTable(this, 'Data');
    this.tokenKey = new TokenKey(this, 'TokenKey');
    this.network = new SandboxNetwork(this, 'Network', { logRetention });
    const egress = { [ENV.egressAddresses]: Fn.join(',', this.network.egressAddresses()) };
    const shared = {
      [ENV.tableName]: this.data.table.tableName,
      [ENV.kmsKeyId]: this.tokenKey.key.keyId,
    };

    this.sandbox = new Sandbox(this, 'Sandbox', {
      vpc: this.network.vpc,
      logRetention,
      // The bastion-open step admits these NAT addresses (the stack's Elastic IPs) to the bastion's SSH port.
      environment: environmentOf(SANDBOX_CONFIG, { ...shared, ...cloud, ...egress }),
    });
    this.data.grantAccess(this.sandbox.taskRole, ...SANDBOX_TABLE_ACCESS);
    this.sandbox.taskRole.addToPrincipalPolicy(taskResponseStatement(this, true));
    // No standing kms:Decrypt for the sandbox: each deployment's grant (made at submit) is its only way.

    // Every value the stack knows; each function takes those of its configuration sections (lambdas/catalog.ts).
    // Unset keys leave the engine's defaults (adapters/aws/engineDeps.ts).
    const prestart: Record<string, string> = {
      ...(context.prestart ? { [ENV.prestart]: context.prestart } : {}),
      ...(context.prestartMaxWaiting ? { [ENV.prestartMaxWaiting]: context.prestartMaxWaiting } : {}),
      ...(context.prestartStartSeconds ? { [ENV.prestartStartSeconds]: context.prestartStartSeconds } : {}),
      ...(context.prestartMaxIdleSeconds ? { [ENV.prestartMaxIdleSeconds]: context.prestartMaxIdleSeconds } : {}),
    };
    const values = {
      ...shared,
      ...cloud,
      ...prestart,
      [ENV.stateMachineArn]: stateMachineArn(this),
      [ENV.clusterArn]: this.sandbox.cluster.clusterArn,
    };
    this.engine = new Engine(this, 'Engine', {
      data: this.data,
      network: this.network,
      sandbox: this.sandbox,
      values,
      logRetention,
    });
    const retirer = this.engine.functions.deleteSecrets.role!;
    this.api = new Api(this, 'Api', {
      data: this.data,
      tokenKey: this.tokenKey,
      sandbox: this.sandbox,
      tokenGrants: { decrypter: this.sandbox.taskRole, retirer },
      // Only submit reads these (its tokenGrants section): whom each deployment's grant names.
      values: { ...values, [ENV.tokenDecrypter]: this.sandbox.taskRole.roleArn, [ENV.tokenRetirer]: retirer.roleArn },
      logRetention,
    });
    this.tokenKey.allowShred(this.api.functions.submit.role!, 'FailedSubmitRevokesItsGrant', { revoke: true });
    this.tokenKey.allowShred(retirer, 'CleanupRetiresDeploymentGrants', { revoke: false });
    this.tokenKey.allowShred(this.engine.functions.safetyNet.role!, 'SafetyNetRevokesDeploymentGrants', { revoke: true });

    this.observability = new Observability(this, 'Observability', {
      stateMachine: this.engine.stateMachine,
      safetyNet: this.engine.functions.safetyNet,
      sandboxStopped: this.engine.functions.sandboxStopped,
      deleteSecrets: this.engine.functions.deleteSecrets,
    });

    new CfnOutput(this, 'EgressAddresses', {
      value: Fn.join(',', this.network.egressAddresses()),
      description: 'Where sandboxes reach bastions from: the addresses bastion-open admits',
    });
    new CfnOutput(this, 'ApiUrl', { value: this.api.restApi.url });
    new CfnOutput(this, 'StateMachineArn', { value: this.engine.stateMachine.stateMachineArn });
    new CfnOutput(this, 'TableName', { value: this.data.table.tableName });
  }
}
