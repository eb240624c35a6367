import { RemovalPolicy } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import { Platform } from 'aws-cdk-lib/aws-ecr-assets';
import * as ecs from 'aws-cdk-lib/aws-ecs';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as logs from 'aws-cdk-lib/aws-logs';
import { Construct } from 'constructs';
import { ENV, RUNNER_CONTAINER_NAME, TELEMETRY } from '../core/config/names.ts';
import { REPO_ROOT } from './functions.ts';
import { acknowledge } from './nag.ts';

export { RUNNER_CONTAINER_NAME };

/** The runner's working directory and HOME; each step works in a directory of its own under /tmp. */
export const SANDBOX_WORK_DIR = '/work';

/**
 * What the runner keeps of Docker's default capabilities (Fargate can only take them away): it
 * hands the step's work dir to the step user (CHOWN), starts the user's code as that user
 * (SETUID, SETGID), stops it (KILL) and removes what it left (DAC_OVERRIDE, FOWNER).
 */
export const RUNNER_CAPABILITIES = ['CHOWN', 'DAC_OVERRIDE', 'FOWNER', 'KILL', 'SETGID', 'SETUID'] as const;
const DROPPED_CAPABILITIES = [
  ecs.Capability.AUDIT_WRITE,
  ecs.Capability.FSETID,
  ecs.Capability.MKNOD,
  ecs.Capability.NET_BIND_SERVICE,
  ecs.Capability.NET_RAW,
  ecs.Capability.SETFCAP,
  ecs.Capability.SETPCAP,
  ecs.Capability.SYS_CHROOT,
];

/** Staged with the image asset only when needed; keeping node_modules out keeps synth fast. */
export const IMAGE_CONTEXT_EXCLUDES = ['node_modules', '**/node_modules', 'cdk.out', '.git', '.ctd', 'test', 'coverage', '*.log'];

export interface SandboxProps {
  readonly vpc: ec2.IVpc;
  readonly environment: Record<string, string>;
  readonly logRetention: logs.RetentionDays;
}

/**
 * One Fargate task per step attempt: read-only root file system with scratch volumes for /tmp and
 * the work dir, logs to CloudWatch. The task role is what a step may do in AWS. The runner is root
 * with six capabilities so that the user's code runs as another user (the image's `step`, see
 * sandbox/stepUser.ts), which can read neither the runner's environment nor its memory, and so
 * never the task role's credentials.
 */
export class Sandbox extends Construct {
  readonly cluster: ecs.Cluster;
  readonly taskDefinition: ecs.FargateTaskDefinition;
  readonly container: ecs.ContainerDefinition;
  readonly logGroup: logs.LogGroup;

  constructor(scope: Construct, id: string, props: SandboxProps) {
    super(scope, id);
    this.cluster = new ecs.Cluster(this, 'Cluster', {
      vpc: props.vpc,
      containerInsightsV2: ecs.ContainerInsights.ENABLED,
    });
    this.logGroup = new logs.LogGroup(this, 'Logs', {
      retention: props.logRetention,
      removalPolicy: RemovalPolicy.DESTROY,
    });
    this.taskDefinition = new ecs.FargateTaskDefinition(this, 'Task', {
      cpu: 1024,
      memoryLimitMiB: 2048,
      runtimePlatform: {
        cpuArchitecture: ecs.CpuArchitecture.ARM64,
        operatingSystemFamily: ecs.OperatingSystemFamily.LINUX,
      },
      volumes: [{ name: 'tmp' }, { name: 'work' }],
    });
    this.container = this.taskDefinition.addContainer('Runner', {
      containerName: RUNNER_CONTAINER_NAME,
      image: ecs.ContainerImage.fromAsset(REPO_ROOT, {
        file: 'sandbox/Dockerfile',
        exclude: IMAGE_CONTEXT_EXCLUDES,
        platform: Platform.LINUX_ARM64,
      }),
      essential: true,
      readonlyRootFilesystem: true,
      privileged: false,
      user: '0:0',
      workingDirectory: SANDBOX_WORK_DIR,
      environment: { HOME: SANDBOX_WORK_DIR, [ENV.logLevel]: TELEMETRY.logLevel, ...props.environment },
      logging: ecs.LogDrivers.awsLogs({ streamPrefix: 'sandbox', logGroup: this.logGroup }),
      linuxParameters: new ecs.LinuxParameters(this, 'LinuxParameters', { initProcessEnabled: true }),
    });
    this.container.linuxParameters?.dropCapabilities(...DROPPED_CAPABILITIES);
    this.container.addMountPoints(
      { sourceVolume: 'tmp', containerPath: '/tmp', readOnly: false },
      { sourceVolume: 'work', containerPath: SANDBOX_WORK_DIR, readOnly: false },
    );
    acknowledge(
      this.taskDefinition,
      'AwsSolutions-ECS2',
      'Only non-secret configuration (table name, key id, cloud kind and endpoint, egress addresses); the user token is read from DynamoDB and decrypted with KMS at run time.',
    );
    acknowledge(
      this.taskDefinition.obtainExecutionRole(),
      'AwsSolutions-IAM5[Resource::*]',
      'ecr:GetAuthorizationToken, needed to pull the runner image, supports no resource-level permissions.',
    );
  }

  get taskRole(): iam.IRole {
    return this.taskDefinition.taskRole;
  }

  /** Roles the state machine hands to ECS when it starts a task. */
  get passedRoles(): iam.IRole[] {
    return [this.taskDefinition.taskRole, this.taskDefinition.obtainExecutionRole()];
  }
}
