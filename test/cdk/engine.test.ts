import { Match } from 'aws-cdk-lib/assertions';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ASL_FILE, ENGINE_FUNCTIONS } from '../../cdk/engine.ts';
import { RUNTIME_PROVIDED, schemaOf } from '../../core/config/schema.ts';
import { LAMBDAS, type LambdaName } from '../../lambdas/catalog.ts';
import { actionsOf, logicalId, roleStatements, synthCtdStack } from './helpers.ts';

const { stack, template } = synthCtdStack();
const asl = readFileSync(ASL_FILE, 'utf8');
const machine = Object.values(template.findResources('AWS::StepFunctions::StateMachine'))[0]!;
const substitutions: Record<string, unknown> = machine.Properties.DefinitionSubstitutions;

describe('Construct: Engine', () => {
  describe('State machine', () => {
    it('is STANDARD, named ctd-deployment, logs ALL without execution data, traces', () => {
      template.hasResourceProperties('AWS::StepFunctions::StateMachine', {
        StateMachineName: 'ctd-deployment',
        StateMachineType: 'STANDARD',
        LoggingConfiguration: Match.objectLike({ Level: 'ALL', IncludeExecutionData: false }),
        TracingConfiguration: { Enabled: true },
      });
    });

    it('substitutes every ${placeholder} of the ASL, and nothing else', () => {
      const placeholders = new Set([...asl.matchAll(/\$\{([^}]+)\}/g)].map((m) => m[1]!));
      expect(placeholders.size).toBeGreaterThan(0);
      expect(new Set(Object.keys(substitutions))).toEqual(placeholders);
      const substituted = asl.replace(/\$\{([^}]+)\}/g, (whole, name: string) => (name in substitutions ? 'x' : whole));
      expect(substituted).not.toContain('${');
    });

    it('points each function placeholder at its own engine Lambda', () => {
      for (const [name, spec] of Object.entries(ENGINE_FUNCTIONS)) {
        if (!('substitution' in spec)) continue;
        const fn = stack.engine.functions[name as keyof typeof ENGINE_FUNCTIONS];
        expect(substitutions[spec.substitution]).toEqual({ 'Fn::GetAtt': [logicalId(fn), 'Arn'] });
      }
      // The family, never a revision's ARN: a deploy deregisters the old revision (aws-cdk#24372).
      const family = template.toJSON().Resources[logicalId(stack.sandbox.taskDefinition)].Properties.Family;
      expect(typeof family).toBe('string');
      expect(substitutions.TaskDefinitionFamily).toBe(family);
      expect(substitutions).not.toHaveProperty('TaskDefinitionArn');
    });
  });

  describe('State machine role', () => {
    const statements = roleStatements(template, logicalId(stack.engine.stateMachine.role));
    const find = (action: string) => statements.filter((s) => actionsOf(s).includes(action));

    it('invokes exactly the functions the ASL names', () => {
      const [invoke, ...more] = find('lambda:InvokeFunction');
      expect(more).toEqual([]);
      const expected = Object.entries(ENGINE_FUNCTIONS)
        .filter(([, spec]) => 'substitution' in spec)
        .map(([name]) => ({ 'Fn::GetAtt': [logicalId(stack.engine.functions[name as 'prepare']), 'Arn'] }));
      expect(invoke!.Resource).toEqual(expect.arrayContaining(expected));
      expect(invoke!.Resource).toHaveLength(expected.length);
    });

    it('runs only the sandbox task definition (any revision of its family), only in the sandbox cluster', () => {
      const [run, ...more] = find('ecs:RunTask');
      expect(more).toEqual([]);
      const family = template.toJSON().Resources[logicalId(stack.sandbox.taskDefinition)].Properties.Family as string;
      expect(JSON.stringify(run!.Resource)).toContain(`:task-definition/${family}:*`);
      expect(run!.Condition).toEqual({
        ArnEquals: { 'ecs:cluster': { 'Fn::GetAtt': [logicalId(stack.sandbox.cluster), 'Arn'] } },
      });
    });

    it('passes only the two sandbox roles', () => {
      const [pass] = find('iam:PassRole');
      const roles = stack.sandbox.passedRoles.map((r) => ({ 'Fn::GetAtt': [logicalId(r), 'Arn'] }));
      expect(pass!.Resource).toEqual(expect.arrayContaining(roles));
      expect(pass!.Resource).toHaveLength(2);
    });

    it('has none of the .sync pattern\'s grants: the machine only starts tasks and invokes Lambdas', () => {
      const actions = statements.flatMap(actionsOf);
      expect(actions.filter((a) => /^events:|^ecs:(StopTask|DescribeTasks)$/.test(a))).toEqual([]);
      expect(actions.filter((a) => a.startsWith('ecs:'))).toEqual(['ecs:RunTask']);
    });
  });

  it('sends failed, timed-out and aborted executions of this machine to the safety net', () => {
    template.hasResourceProperties('AWS::Events::Rule', {
      EventPattern: {
        source: ['aws.states'],
        'detail-type': ['Step Functions Execution Status Change'],
        detail: {
          stateMachineArn: [Match.anyValue()],
          status: ['FAILED', 'TIMED_OUT', 'ABORTED'],
        },
      },
      Targets: [Match.objectLike({ Arn: { 'Fn::GetAtt': [logicalId(stack.engine.functions.safetyNet), 'Arn'] } })],
    });
  });

  it('sends every STOPPED task of the sandbox cluster to sandboxStopped, retried for an hour', () => {
    template.hasResourceProperties('AWS::Events::Rule', {
      EventPattern: {
        source: ['aws.ecs'],
        'detail-type': ['ECS Task State Change'],
        detail: {
          clusterArn: [{ 'Fn::GetAtt': [logicalId(stack.sandbox.cluster), 'Arn'] }],
          lastStatus: ['STOPPED'],
        },
      },
      Targets: [
        Match.objectLike({
          Arn: { 'Fn::GetAtt': [logicalId(stack.engine.functions.sandboxStopped), 'Arn'] },
          RetryPolicy: { MaximumEventAgeInSeconds: 3600, MaximumRetryAttempts: 8 },
        }),
      ],
    });
  });

  it('lets only token-releasing functions answer task tokens', () => {
    for (const [name, spec] of Object.entries(ENGINE_FUNCTIONS)) {
      const fn = stack.engine.functions[name as keyof typeof ENGINE_FUNCTIONS];
      const answers = roleStatements(template, logicalId(fn.role!)).some((s) =>
        actionsOf(s).includes('states:SendTaskSuccess'),
      );
      expect({ name, answers }).toEqual({ name, answers: 'answersTasks' in spec });
    }
  });

  it('gives each function exactly the variables its configuration schema requires (lambdas/catalog.ts)', () => {
    for (const [name, fn] of Object.entries({ ...stack.engine.functions, ...stack.api.functions })) {
      const spec = LAMBDAS[name as LambdaName];
      const vars = Object.keys(template.toJSON().Resources[logicalId(fn)].Properties.Environment.Variables as object).filter((k) => k.startsWith('CTD_'));
      const schema = schemaOf(spec.config);
      const required = Object.entries(schema.shape)
        .filter(([k, v]) => v._zod.optin !== 'optional' && !RUNTIME_PROVIDED.includes(k))
        .map(([k]) => k);
      expect({ name, missing: required.filter((k) => !vars.includes(k)) }).toEqual({ name, missing: [] });
      expect({ name, unread: vars.filter((k) => !(k in schema.shape)) }).toEqual({ name, unread: [] });
    }
  });

  it('lets only the functions that stop sandboxes do so: abortStragglers, the safety net (a stopped execution leaves its ECS tasks running), and RecordStepResult/RecordStepFailure (a pre-started sandbox whose step they skip)', () => {
    const stoppers = ['abortStragglers', 'safetyNet', 'recordStepResult', 'recordStepFailure'];
    for (const name of Object.keys(ENGINE_FUNCTIONS)) {
      const fn = stack.engine.functions[name as keyof typeof ENGINE_FUNCTIONS];
      const stops = roleStatements(template, logicalId(fn.role!)).some((s) => actionsOf(s).includes('ecs:StopTask'));
      expect({ name, stops }).toEqual({ name, stops: stoppers.includes(name) });
    }
  });

  it('lets only the safety net start executions among engine functions, and only of the deployment state machine (its cleanup-only executions)', () => {
    for (const name of Object.keys(ENGINE_FUNCTIONS)) {
      const fn = stack.engine.functions[name as keyof typeof ENGINE_FUNCTIONS];
      const starts = roleStatements(template, logicalId(fn.role!)).filter((s) => actionsOf(s).includes('states:StartExecution'));
      expect({ name, starts: starts.length }).toEqual({ name, starts: name === 'safetyNet' ? 1 : 0 });
      for (const statement of starts) expect(JSON.stringify(statement.Resource)).toContain(':stateMachine:ctd-deployment');
    }
  });

  it('runs every engine handler on Node 22, arm64, traced, with the shared environment and no cloud settings', () => {
    for (const fn of Object.values(stack.engine.functions)) {
      const props = template.toJSON().Resources[logicalId(fn)].Properties;
      expect(props).toMatchObject({
        Runtime: 'nodejs22.x',
        Architectures: ['arm64'],
        TracingConfig: { Mode: 'Active' },
        Handler: 'index.handler',
      });
      expect(Object.keys(props.Environment.Variables)).toEqual(expect.arrayContaining(['CTD_TABLE_NAME', 'CTD_STATE_MACHINE_ARN']));
      // Engine functions never talk to the target cloud; only the sandbox and the API's cloud callers do.
      expect(Object.keys(props.Environment.Variables).filter((k) => /CLOUD|KEYSTONE|EGRESS|CTD_OS_/.test(k))).toEqual([]);
    }
  });
});
