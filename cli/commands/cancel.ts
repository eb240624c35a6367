import type { CommandContext } from '../context.ts';
import { EXIT } from '../errors.ts';

/** `ctd cancel ID`: asks the engine to stop; the deployment goes CANCELLING, then CANCELLED after Cleanup. */
export async function cancel(ctx: CommandContext, id: string): Promise<number> {
  const client = await ctx.client();
  const result = await client.cancel(id);
  if (ctx.json) ctx.printJson(result);
  else ctx.print(`${result.deploymentId} ${result.status}`);
  return EXIT.ok;
}
