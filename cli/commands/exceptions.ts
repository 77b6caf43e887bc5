import { z } from 'zod';
import { positional, required, table, usageError, type Command, type CommandContext } from '../command';

const Exception = z
  .object({
    id: z.string(),
    agentId: z.string(),
    container: z.number().nullable(),
    package: z.string(),
    reason: z.string(),
    createdBy: z.string(),
    expiresAt: z.string().nullable(),
    active: z.boolean(),
  })
  .loose();

const base = (agent: string) => `/v1/agents/${encodeURIComponent(agent)}/exceptions`;

async function list(ctx: CommandContext, agent: string) {
  const { exceptions } = await ctx.api.call('GET', base(agent), z.object({ exceptions: z.array(Exception) }));
  if (ctx.json) return ctx.out(JSON.stringify(exceptions));
  ctx.out(
    table(
      ['ID', 'PACKAGE', 'CONTAINER', 'EXPIRES', 'ACTIVE', 'BY', 'REASON'],
      exceptions.map((e) => [e.id, e.package, e.container, e.expiresAt ?? 'never', e.active, e.createdBy, e.reason]),
    ),
  );
}

export const exceptions: Command = {
  name: 'exceptions',
  summary: 'list, add or remove package exceptions of an agent',
  usage: `patchnanny exceptions [list] <agent> [--json]
patchnanny exceptions add <agent> --package <name|glob> --reason <text> [--expires <iso>] [--container <vmid>]
patchnanny exceptions remove <agent> <exceptionId>
  Packages held back on an agent (or one of its Proxmox VE containers): never upgraded until the
  exception is removed or expires.`,
  options: {
    package: { type: 'string' },
    reason: { type: 'string' },
    expires: { type: 'string' },
    container: { type: 'string' },
  },
  positionals: true,
  api: true,
  async run(ctx) {
    const [verb] = ctx.positionals;
    if (verb === 'add') {
      const agent = positional(ctx, 1, 'an agent id');
      const body = {
        package: required(ctx, 'package'),
        reason: required(ctx, 'reason'),
        ...(typeof ctx.values.expires === 'string' ? { expiresAt: ctx.values.expires } : {}),
        ...(typeof ctx.values.container === 'string' ? { container: Number(ctx.values.container) } : {}),
      };
      const { exception } = await ctx.api.call('POST', base(agent), z.object({ exception: Exception }), body);
      return ctx.out(
        ctx.json ? JSON.stringify(exception) : `added ${exception.id}: ${exception.package} held on ${agent}`,
      );
    }
    if (verb === 'remove') {
      const agent = positional(ctx, 1, 'an agent id');
      const id = positional(ctx, 2, 'an exception id');
      await ctx.api.call('DELETE', `${base(agent)}/${encodeURIComponent(id)}`, z.null());
      return ctx.out(ctx.json ? JSON.stringify({ removed: id }) : `removed ${id}`);
    }
    if (verb === 'list') return list(ctx, positional(ctx, 1, 'an agent id'));
    if (!verb) throw usageError('an agent id is required');
    return list(ctx, verb);
  },
};
