import type { Node } from 'constructs';
import { z } from 'zod';
import { DEFAULT_PRESTART_START_SECONDS, idleLimitTooShort } from '../adapters/aws/engineDeps.ts';
import { CLOUD_KINDS } from '../core/config/names.ts';

/** Context keys read by the stack: `cdk deploy -c ctd:cloud=openstack -c ctd:keystoneUrl=https://…/v3`. */
export const CONTEXT = {
  cloud: 'ctd:cloud',
  keystoneUrl: 'ctd:keystoneUrl',
  osInterface: 'ctd:osInterface',
  osRegion: 'ctd:osRegion',
  /** Pre-start (docs/ARCHITECTURE.md): on|off, the cap on sandboxes waiting per deployment, the start to hide in seconds,
   * the longest one pre-started sandbox waits once up, in seconds. */
  prestart: 'ctd:prestart',
  prestartMaxWaiting: 'ctd:prestartMaxWaiting',
  prestartStartSeconds: 'ctd:prestartStartSeconds',
  prestartMaxIdleSeconds: 'ctd:prestartMaxIdleSeconds',
} as const;

const httpsUrl = z
  .string()
  .refine((v) => URL.canParse(v) && new URL(v).protocol === 'https:', 'must be an https:// URL (the Keystone v3 base, e.g. https://iam.eu-de.otc.t-systems.com/v3)');

const contextSchema = z.object({
  cloud: z.enum(CLOUD_KINDS, {
    error: (i) => (i.input === undefined ? 'required' : `unknown cloud kind ${JSON.stringify(i.input)} (known: ${CLOUD_KINDS.join(', ')})`),
  }),
  keystoneUrl: httpsUrl,
  osInterface: z.enum(['public', 'internal', 'admin']).optional(),
  osRegion: z.string().min(1).optional(),
  prestart: z.enum(['on', 'off']).optional(),
  prestartMaxWaiting: z.string().regex(/^[1-9]\d*$/, 'must be a whole number ≥ 1 (sandboxes waiting at once per deployment)').optional(),
  prestartStartSeconds: z
    .string()
    .refine((v) => Number(v) > 0 && Number.isFinite(Number(v)), 'must be a number of seconds > 0 (the sandbox start to hide)')
    .optional(),
  prestartMaxIdleSeconds: z
    .string()
    .refine((v) => Number(v) > 0 && Number.isFinite(Number(v)), 'must be a number of seconds > 0 (the longest a pre-started sandbox waits once up)')
    .optional(),
}).superRefine((c, ctx) => {
  if (c.prestartMaxIdleSeconds === undefined || !(Number(c.prestartMaxIdleSeconds) > 0)) return;
  const startSeconds = c.prestartStartSeconds === undefined ? DEFAULT_PRESTART_START_SECONDS : Number(c.prestartStartSeconds);
  const tooShort = idleLimitTooShort(Number(c.prestartMaxIdleSeconds), startSeconds);
  if (tooShort) ctx.addIssue({ code: 'custom', path: ['prestartMaxIdleSeconds'], message: `${tooShort} (ctd:prestartStartSeconds)` });
});

export type CtdContext = z.infer<typeof contextSchema>;

/** The stack's context, validated at synth time: a wrong value fails `cdk synth`, naming the `-c` key. */
export function readContext(node: Node): CtdContext {
  const raw = Object.fromEntries(
    Object.entries(CONTEXT).flatMap(([field, key]) => {
      const value: unknown = node.tryGetContext(key);
      return value === undefined || value === '' ? [] : [[field, String(value)]];
    }),
  );
  const parsed = contextSchema.safeParse(raw);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((i) => {
      const field = String(i.path[0]) as keyof typeof CONTEXT;
      return `-c ${CONTEXT[field] ?? field}: ${i.code === 'invalid_type' ? 'required' : i.message}`;
    });
    throw new Error(`invalid CDK context: ${problems.join('; ')}`);
  }
  return parsed.data;
}
