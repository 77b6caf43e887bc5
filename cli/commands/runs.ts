import { z } from 'zod';
import { Run, table, type Command } from '../command';

const Runs = z.object({ runs: z.array(Run), next: z.string().nullable() });

export const runs: Command = {
  name: 'runs',
  summary: 'list runs, newest first',
  usage: `patchnanny runs [--agent <id>] [--phase <phase>] [--outcome <outcome>] [--limit <n>] [--json]
  List runs, newest first (50 unless --limit, at most 500).
  Phases: pending queued planning awaiting-approval applying reporting done.
  Outcomes: completed failed rejected expired plan-drift cancelled agent-unreachable ...`,
  options: {
    agent: { type: 'string' },
    phase: { type: 'string' },
    outcome: { type: 'string' },
    limit: { type: 'string' },
  },
  api: true,
  async run(ctx) {
    const q = new URLSearchParams();
    for (const [opt, param] of [
      ['agent', 'agentId'],
      ['phase', 'phase'],
      ['outcome', 'outcome'],
      ['limit', 'limit'],
    ] as const) {
      const v = ctx.values[opt];
      if (typeof v === 'string') q.set(param, v);
    }
    const { runs } = await ctx.api.call('GET', `/v1/runs${q.size ? `?${q.toString()}` : ''}`, Runs);
    if (ctx.json) return ctx.out(JSON.stringify(runs));
    ctx.out(
      table(
        ['ID', 'AGENT', 'MODE', 'PHASE', 'OUTCOME', 'BY', 'CREATED'],
        runs.map((r) => [r.id, r.agentId, r.mode, r.phase, r.outcome, r.requestedBy, r.createdAt]),
      ),
    );
  },
};
