import { z } from 'zod';
import { EXIT, positional, Run, type Command } from '../command';
import { describeRun, follow } from './run';

export const plan: Command = {
  name: 'plan',
  summary: 'dry-run an agent and show what it would update',
  usage: `patchnanny plan <agent> [--json]
  Start a dry-run on the agent and wait for its plan (a progress line on stderr), then show it.
  Exit 0 when the plan was made, 1 when the dry-run failed.`,
  positionals: true,
  api: true,
  async run(ctx) {
    const agentId = positional(ctx, 0, 'an agent id');
    const { run } = await ctx.api.call('POST', '/v1/runs', z.object({ run: Run }), { agentId, mode: 'dry-run' });
    const done = await follow(ctx, run.id);
    if (ctx.json) ctx.out(JSON.stringify(done));
    else describeRun(ctx, done);
    return done.outcome === 'completed' ? EXIT.ok : EXIT.failed;
  },
};
