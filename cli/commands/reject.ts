import { z } from 'zod';
import { GroupDecisionAnswer } from '../../api/reviews/schema';
import { PLAN_HASH_PATTERN } from '../../contract/workflow-safe';
import { positional, required, type Command } from '../command';
import { reportGroup } from './approve';

export const reject: Command = {
  name: 'reject',
  summary: "reject a run's plan",
  usage: `patchnanny reject <runId|planHash> --reason <text> [--json]
  Reject the plan of a run awaiting approval; the reason is recorded in the run and the audit trail.
  With a plan hash (patchnanny reviews), every run of that group; exit 1 when any run refused.`,
  options: { reason: { type: 'string' } },
  positionals: true,
  api: true,
  async run(ctx) {
    const id = positional(ctx, 0, 'a run id or a plan hash');
    const reason = required(ctx, 'reason');
    if (PLAN_HASH_PATTERN.test(id))
      return reportGroup(
        ctx,
        'rejected',
        await ctx.api.call('POST', `/v1/reviews/${id}/reject`, GroupDecisionAnswer, { reason }),
      );
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
