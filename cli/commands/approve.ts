import { createInterface } from 'node:readline/promises';
import { z } from 'zod';
import { signApproval } from '../../contract/approval';
import { CliError, EXIT, positional, required, showPlan, type Command } from '../command';
import { readKey } from './keys';
import { getRun } from './run';

const ApproveAnswer = z.object({ status: z.object({ approvedBy: z.string().nullable() }).loose() });

export const approve: Command = {
  name: 'approve',
  summary: "approve a run's plan (signed with your key)",
  usage: `patchnanny approve <runId> --key <file> [--by <name>] [--yes] [--json]
  Fetch the run, show its plan, ask, then sign the plan with your Ed25519 key (patchnanny keygen;
  its public key registered with POST /v1/keys) and approve it. The API takes signed approvals
  only (docs/signed-approvals.md). --by names the principal when it is not the key file's "by";
  --yes approves without asking (for scripts). Exit 1 when the run is not awaiting approval, the
  plan changed (the signature covers the plan hash shown), or the API refuses.`,
  options: { key: { type: 'string' }, by: { type: 'string' }, yes: { type: 'boolean', short: 'y' } },
  positionals: true,
  api: true,
  async run(ctx) {
    const runId = positional(ctx, 0, 'a run id');
    const k = readKey(required(ctx, 'key'));
    const by = typeof ctx.values.by === 'string' ? ctx.values.by : k.by;
    if (!by) throw new CliError('--by: the name you approve as is required (the key file names none)', EXIT.usage);
    const run = await getRun(ctx, runId);
    if (run.phase !== 'awaiting-approval' || !run.planHash)
      throw new CliError(`run ${runId} is ${run.outcome ?? run.phase}, not awaiting approval`);
    // The plan goes to stderr under --json, so stdout stays one JSON document.
    const show = ctx.json ? { ...ctx, out: (l: string) => ctx.err(`${l}\n`) } : ctx;
    show.out(`run ${runId} on ${run.agentId}: plan ${run.planHash}`);
    showPlan(show, run);
    if (!ctx.values.yes) {
      const rl = createInterface({ input: process.stdin, output: process.stderr });
      // End of input (a script without --yes) is a no, like an empty answer.
      const answer = await new Promise<string>((resolve) => {
        rl.once('close', () => resolve(''));
        rl.question(`approve this plan as ${by}? [y/N] `).then(resolve, () => resolve(''));
      });
      rl.close();
      if (!/^y(es)?$/i.test(answer.trim())) throw new CliError('not approved');
    }
    const { planHash, at, keyId, signature } = signApproval(
      { runId, planHash: run.planHash, by, at: new Date().toISOString() },
      k.keyId,
      k.secret,
    );
    const { status } = await ctx.api.call('POST', `/v1/runs/${encodeURIComponent(runId)}/approve`, ApproveAnswer, {
      planHash,
      at,
      keyId,
      signature,
    });
    if (ctx.json) return ctx.out(JSON.stringify(status));
    ctx.out(`approved by ${status.approvedBy ?? by}`);
  },
};
