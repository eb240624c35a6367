import { App, Validations } from 'aws-cdk-lib';
import { AwsSolutionsChecks } from 'cdk-nag';
import { CtdStack } from './stack.ts';

// Env-agnostic on purpose: the template deploys to any account/region, the VPC picks two AZs
// with Fn::GetAZs at deploy time, and synth needs no credentials or context lookups.
const app = new App();
new CtdStack(app, 'CtdOrchestrator', {
  description: 'CTD Orchestrator: agentless deployment orchestrator (API, Step Functions engine, Fargate sandboxes)',
});
Validations.of(app).addPlugins(new AwsSolutionsChecks(app));
app.synth();
