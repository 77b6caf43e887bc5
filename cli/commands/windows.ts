import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { CliError, positional, required, table, usageError, type Command, type CommandContext } from '../command';

const Window = z
  .object({
    id: z.string(),
    name: z.string(),
    targets: z
      .object({
        agentIds: z.array(z.string()),
        selector: z.string().optional(),
        containers: z.array(z.unknown()).optional(),
      })
      .loose(),
    recurrence: z.record(z.string(), z.unknown()),
    timezone: z.string(),
    durationSeconds: z.number(),
    approval: z.string(),
    paused: z.boolean().optional(),
  })
  .loose();
const One = z.object({ window: Window });

const every = (r: Record<string, unknown>) =>
  typeof r.cron === 'string'
    ? `cron ${r.cron}`
    : typeof r.everySeconds === 'number'
      ? `every ${r.everySeconds} s`
      : JSON.stringify(r);

const int = (ctx: CommandContext, name: string, fallback?: number): number => {
  const v = ctx.values[name];
  if (v === undefined && fallback !== undefined) return fallback;
  const n = Number(required(ctx, name));
  if (!Number.isInteger(n)) throw usageError(`--${name}: a whole number of seconds`);
  return n;
};

/** The window a `windows add` describes: a JSON file (the POST /v1/windows body), or flags. */
function windowBody(ctx: CommandContext): unknown {
  if (typeof ctx.values.file === 'string') {
    try {
      return JSON.parse(readFileSync(ctx.values.file === '-' ? 0 : ctx.values.file, 'utf8'));
    } catch (err) {
      throw new CliError(`--file: ${(err as Error).message}`);
    }
  }
  const agents = (ctx.values.agent as string[] | undefined) ?? [];
  const selector = typeof ctx.values.selector === 'string' ? ctx.values.selector : undefined;
  if (agents.length === 0 && !selector)
    throw usageError('--agent (repeat it for more agents) or --selector is required');
  const cron = ctx.values.cron;
  const recurrence =
    typeof cron === 'string' ? { cron } : ctx.values.every ? { everySeconds: int(ctx, 'every') } : undefined;
  if (!recurrence) throw usageError('--cron or --every is required');
  return {
    name: required(ctx, 'name'),
    targets: { agentIds: agents, ...(selector ? { selector } : {}) },
    recurrence,
    timezone: typeof ctx.values.timezone === 'string' ? ctx.values.timezone : 'UTC',
    durationSeconds: int(ctx, 'duration'),
    cutoffSeconds: int(ctx, 'cutoff', 0),
    approval: required(ctx, 'approval'),
    ...(ctx.values.paused ? { paused: true } : {}),
  };
}

export const windows: Command = {
  name: 'windows',
  summary: 'list, add, remove, pause or resume maintenance windows',
  usage: `patchnanny windows [list] [--json]
patchnanny windows add --name <n> (--agent <id> [--agent <id>…] | --selector role=web) (--cron '<5 fields>' | --every <s>)
                       --duration <s> [--cutoff <s>] --approval auto|pre-approved|dry-run-only
                       [--timezone <IANA>] [--paused]
patchnanny windows add --file <window.json|->      (the POST /v1/windows body)
patchnanny windows remove|pause|resume <windowId>
  A --selector is resolved at each firing: agents labelled later are included (docs/windows.md).`,
  options: {
    file: { type: 'string' },
    name: { type: 'string' },
    agent: { type: 'string', multiple: true },
    selector: { type: 'string' },
    cron: { type: 'string' },
    every: { type: 'string' },
    timezone: { type: 'string' },
    duration: { type: 'string' },
    cutoff: { type: 'string' },
    approval: { type: 'string' },
    paused: { type: 'boolean' },
  },
  positionals: true,
  api: true,
  async run(ctx) {
    const [verb = 'list'] = ctx.positionals;
    if (verb === 'list') {
      const { windows } = await ctx.api.call('GET', '/v1/windows', z.object({ windows: z.array(Window) }));
      if (ctx.json) return ctx.out(JSON.stringify(windows));
      return ctx.out(
        table(
          ['ID', 'NAME', 'WHEN', 'TZ', 'DURATION', 'APPROVAL', 'TARGETS', 'PAUSED', 'SELECTOR'],
          windows.map((w) => [
            w.id,
            w.name,
            every(w.recurrence),
            w.timezone,
            `${w.durationSeconds} s`,
            w.approval,
            w.targets.agentIds.length + (w.targets.containers?.length ?? 0),
            w.paused ?? false,
            // Resolved when the window fires; TARGETS counts only the hosts named by id.
            w.targets.selector ?? '-',
          ]),
        ),
      );
    }
    if (verb === 'add') {
      const { window } = await ctx.api.call('POST', '/v1/windows', One, windowBody(ctx));
      return ctx.out(
        ctx.json ? JSON.stringify(window) : `added ${window.id} (${window.name}, ${every(window.recurrence)})`,
      );
    }
    const id = positional(ctx, 1, 'a window id');
    const path = `/v1/windows/${encodeURIComponent(id)}`;
    if (verb === 'remove') {
      await ctx.api.call('DELETE', path, z.null());
      return ctx.out(ctx.json ? JSON.stringify({ removed: id }) : `removed ${id}`);
    }
    if (verb === 'pause' || verb === 'resume') {
      const { window } = await ctx.api.call('POST', `${path}/${verb}`, One, {});
      return ctx.out(ctx.json ? JSON.stringify(window) : `${verb}d ${window.id}`);
    }
    throw usageError(`unknown windows command ${verb}`);
  },
};
