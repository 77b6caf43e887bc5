import { z } from 'zod';
import { positional, required, type Command } from '../command';

export const reject: Command = {
  name: 'reject',
  summary: "reject a run's plan",
  usage: `patchnanny reject <runId> --reason <text> [--json]
  Reject the plan of a run awaiting approval; the reason is recorded in the run and the audit trail.`,
  options: { reason: { type: 'string' } },
  positionals: true,
  api: true,
  async run(ctx) {
    const id = positional(ctx, 0, 'a run id');
    const reason = required(ctx, 'reason');
    const { status } = await ctx.api.call(
      'POST',
      `/v1/runs/${encodeURIComponent(id)}/reject`,
      z.object({ status: z.object({ rejectedBy: z.string().nullable().optional() }).loose() }),
      { reason },
    );
    if (ctx.json) return ctx.out(JSON.stringify(status));
    ctx.out(`rejected ${id}${status.rejectedBy ? ` by ${status.rejectedBy}` : ''}`);
  },
};
