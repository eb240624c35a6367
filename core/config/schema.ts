// zod/mini: the same checks as zod's full API, tree-shaken to what this file uses. The step runner parses
// its configuration at every start and would otherwise load all of zod for it (docs/BENCHMARKS.md §2).
import * as z from 'zod/mini';
import { CLOUD_KINDS, ENV } from './names.ts';

/**
 * The configuration of every process, parsed from its environment at start-up. Each Lambda's
 * schema is the union of the sections its catalog entry names (lambdas/catalog.ts); the CDK app
 * sets exactly those variables, so what cdk gives and what the code reads cannot drift.
 */

const nonEmpty = z.string().check(z.trim(), z.minLength(1, 'must not be empty'));
const arn = (service: string) => nonEmpty.check(z.regex(new RegExp(`^arn:[\\w-]+:${service}:`), `must be an ${service} ARN`));
const url = nonEmpty.check(z.refine((v) => URL.canParse(v), 'must be a URL'));
const address = z.union([z.ipv4(), z.cidrv4(), z.ipv6(), z.cidrv6()]);
/** A comma list of IP addresses or CIDRs (blanks around commas allowed); the first bad entry is named. */
const addressList = z.string().check(
  z.superRefine((value, ctx) => {
    const bad = splitList(value).find((a) => !address.safeParse(a).success);
    if (bad !== undefined) ctx.addIssue({ code: 'custom', message: `"${bad}" is not an IP address or CIDR` });
  }),
);
const oneOf = <const T extends readonly [string, ...string[]]>(values: T, what: string) =>
  z.enum(values, { error: (i) => (i.input === undefined ? 'required' : `unknown ${what} (known: ${values.join(', ')})`) });

/** The entries of a comma list variable, trimmed, empty ones dropped. */
export function splitList(value: string | undefined): string[] {
  return (value ?? '').split(',').map((a) => a.trim()).filter(Boolean);
}


export const CONFIG_SECTIONS = {
  /** Every process: where the table is. */
  store: z.object({ AWS_REGION: nonEmpty, [ENV.tableName]: nonEmpty }),
  /** Encrypts (submit), decrypts (sandbox) or shreds (cleanup, safety net) the user's token. */
  vault: z.object({ [ENV.kmsKeyId]: nonEmpty }),
  /** Submit only: whom each deployment's KMS grant names (docs/ARCHITECTURE.md, "Secrets"). */
  tokenGrants: z.object({ [ENV.tokenDecrypter]: arn('iam'), [ENV.tokenRetirer]: arn('iam') }),
  /** Starts executions, reads their history, or answers task tokens. */
  executions: z.object({ [ENV.stateMachineArn]: arn('states'), [ENV.consoleUrl]: z.optional(url) }),
  /** Stops sandbox tasks (cancel, abortStragglers). */
  sandboxes: z.object({ [ENV.clusterArn]: arn('ecs') }),
  /** Talks to the target cloud (docs/OPENSTACK.md, "Configuration"). */
  cloud: z.object({
    [ENV.cloud]: oneOf(CLOUD_KINDS, 'cloud kind'),
    [ENV.keystoneUrl]: url,
    [ENV.egressAddresses]: z.optional(addressList),
    [ENV.osInterface]: z.optional(oneOf(['public', 'internal', 'admin'], 'catalog interface')),
    [ENV.osRegion]: z.optional(nonEmpty),
  }),
  /** Decides when sandboxes start ahead of their release; all optional, checked where read (prestartFromEnv). */
  prestart: z.object({
    [ENV.prestart]: z.optional(nonEmpty),
    [ENV.prestartMaxWaiting]: z.optional(nonEmpty),
    [ENV.prestartStartSeconds]: z.optional(nonEmpty),
    [ENV.prestartMaxIdleSeconds]: z.optional(nonEmpty),
  }),
} as const;

export type ConfigSection = keyof typeof CONFIG_SECTIONS;

/** The sandbox (Fargate task) reads its table, decrypts the token, answers its task token and acts on the cloud. */
export const SANDBOX_CONFIG: readonly ConfigSection[] = ['store', 'vault', 'cloud'];

/** Set by the runtime itself (Lambda, Fargate), never by the stack: Lambda refuses reserved names. */
export const RUNTIME_PROVIDED: readonly string[] = ['AWS_REGION'];

/** The variables a section reads, as the CDK app must set them. */
export function sectionVariables(section: ConfigSection): string[] {
  return Object.keys(CONFIG_SECTIONS[section].shape);
}

export function schemaOf(sections: readonly ConfigSection[]): z.ZodMiniObject {
  return sections.reduce<z.ZodMiniObject>((schema, s) => z.extend(schema, CONFIG_SECTIONS[s].shape), z.object({}));
}

/** Parses a process's environment; a missing or wrong variable is an error naming it and saying why. */
export function parseConfig(who: string, sections: readonly ConfigSection[], env: Record<string, string | undefined>): Record<string, string | undefined> {
  const parsed = schemaOf(sections).safeParse(env);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.code === 'invalid_type' ? 'required' : i.message}`);
    throw new Error(`configuration of ${who} is invalid: ${problems.join('; ')}`);
  }
  return parsed.data as Record<string, string | undefined>;
}
