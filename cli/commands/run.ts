import { z } from 'zod';
import { EXIT, positional, Run, showPlan, sleep, type Command, type CommandContext } from '../command';

const RunAnswer = z.object({ run: Run });

export const getRun = async (ctx: CommandContext, id: string): Promise<Run> =>
  (await ctx.api.call('GET', `/v1/runs/${encodeURIComponent(id)}`, RunAnswer)).run;

/** The poll interval of --follow and `plan` (PATCHNANNY_POLL_MS, for tests). */
export const POLL_MS = Number(process.env.PATCHNANNY_POLL_MS ?? 2000);

/**
 * Poll a run until it ends (or `until` says stop), writing a progress line to stderr on each
 * change of phase; returns the last state.
 */
export async function follow(ctx: CommandContext, id: string, until: (r: Run) => boolean = () => false): Promise<Run> {
  const started = Date.now();
  let last = '';
  for (;;) {
    const run = await getRun(ctx, id);
    const state = run.outcome ? `${run.phase} (${run.outcome})` : run.phase;
    const line = `${id}: ${state} after ${Math.round((Date.now() - started) / 1000)} s`;
    if (state !== last) {
      ctx.err(`${line}\n`);
      last = state;
    }
    if (run.outcome || until(run)) return run;
    await sleep(POLL_MS);
  }
}

export function describeRun(ctx: CommandContext, run: Run): void {
  ctx.out(`run ${run.id}`);
  ctx.out(`  agent     ${run.agentId}${run.container ? ` container ${JSON.stringify(run.container)}` : ''}`);
  ctx.out(`  mode      ${run.mode}`);
  ctx.out(`  phase     ${run.phase}${run.outcome ? `, outcome ${run.outcome}` : ''}`);
  if (run.failureReason) ctx.out(`  reason    ${run.failureReason}`);
  if (run.requestedBy) ctx.out(`  requested ${run.requestedBy}`);
  if (run.approvedBy) ctx.out(`  approved  ${run.approvedBy}`);
  if (run.planHash) ctx.out(`  plan      ${run.planHash}`);
  showPlan(ctx, run);
}

export const run: Command = {
  name: 'run',
  summary: 'show one run (--follow: until it ends)',
  usage: `patchnanny run <id> [--follow] [--json]
  Show a run: its phase, outcome and plan. --follow polls until the run ends, with a progress
  line on stderr; the exit code is then 0 for a completed run and 1 for any other outcome.`,
  options: { follow: { type: 'boolean', short: 'f' } },
  positionals: true,
  api: true,
  async run(ctx) {
    const id = positional(ctx, 0, 'a run id');
    const r = ctx.values.follow ? await follow(ctx, id) : await getRun(ctx, id);
    if (ctx.json) ctx.out(JSON.stringify(r));
    else describeRun(ctx, r);
    if (ctx.values.follow) return r.outcome === 'completed' ? EXIT.ok : EXIT.failed;
  },
};
