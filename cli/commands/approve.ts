import { createInterface } from 'node:readline/promises';
import { z } from 'zod';
import { GroupDecisionAnswer } from '../../api/reviews/schema';
import { signApproval } from '../../contract/approval';
import { PLAN_HASH_PATTERN } from '../../contract/workflow-safe';
import { CliError, EXIT, positional, required, showPlan, type Command, type CommandContext } from '../command';
import { readKey } from './keys';
import { fetchReviews, showGroupPlan } from './reviews';
import { getRun } from './run';

/** Ask on the terminal; end of input (a script without --yes) is a no, like an empty answer. */
export async function confirm(ctx: CommandContext, question: string): Promise<void> {
  if (ctx.values.yes) return;
  const rl = createInterface({ input: process.stdin, output: process.stderr });
  const answer = await new Promise<string>((resolve) => {
    rl.once('close', () => resolve(''));
    rl.question(`${question} [y/N] `).then(resolve, () => resolve(''));
  });
  rl.close();
  if (!/^y(es)?$/i.test(answer.trim())) throw new CliError('not approved');
}

/** A group decision's answer: each run decided or refused; exit 1 when any refused. */
export function reportGroup(ctx: CommandContext, verb: string, answer: GroupDecisionAnswer): number {
  if (ctx.json) ctx.out(JSON.stringify(answer));
  else {
    for (const d of answer.decided) ctx.out(`${verb} ${d.runId} (${d.agentId})`);
    for (const r of answer.refused) ctx.out(`refused ${r.runId}: ${r.message}`);
    if (answer.notIncluded.length)
      ctx.out(`left waiting (joined after the group was read): ${answer.notIncluded.join(', ')}`);
  }
  return answer.refused.length ? EXIT.failed : EXIT.ok;
}

const ApproveAnswer = z.object({ status: z.object({ approvedBy: z.string().nullable() }).loose() });

export const approve: Command = {
  name: 'approve',
  summary: "approve a run's plan (signed with your key)",
  usage: `patchnanny approve <runId|planHash> --key <file> [--by <name>] [--yes] [--json]
  Fetch the run, show its plan, ask, then sign the plan with your Ed25519 key (patchnanny keygen;
  its public key registered with POST /v1/keys) and approve it. The API takes signed approvals
  only (docs/signed-approvals.md). --by names the principal when it is not the key file's "by";
  --yes approves without asking (for scripts). Exit 1 when the run is not awaiting approval, the
  plan changed (the signature covers the plan hash shown), or the API refuses.
  With a plan hash (patchnanny reviews), every run of that group as it is now: the plan and its
  hosts are shown, one statement is signed per run, each run decides itself and refuses drift;
  exit 1 when any run refused (each is listed with its reason).`,
  options: { key: { type: 'string' }, by: { type: 'string' }, yes: { type: 'boolean', short: 'y' } },
  positionals: true,
  api: true,
  async run(ctx) {
    const runId = positional(ctx, 0, 'a run id or a plan hash');
    const k = readKey(required(ctx, 'key'));
    const by = typeof ctx.values.by === 'string' ? ctx.values.by : k.by;
    if (!by) throw new CliError('--by: the name you approve as is required (the key file names none)', EXIT.usage);
    if (PLAN_HASH_PATTERN.test(runId)) return approveGroup(ctx, runId, k, by);
    const run = await getRun(ctx, runId);
    if (run.phase !== 'awaiting-approval' || !run.planHash)
      throw new CliError(`run ${runId} is ${run.outcome ?? run.phase}, not awaiting approval`);
    // The plan goes to stderr under --json, so stdout stays one JSON document.
    const show = ctx.json ? { ...ctx, out: (l: string) => ctx.err(`${l}\n`) } : ctx;
    show.out(`run ${runId} on ${run.agentId}: plan ${run.planHash}`);
    showPlan(show, run);
    await confirm(ctx, `approve this plan as ${by}?`);
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

async function approveGroup(ctx: CommandContext, planHash: string, k: ReturnType<typeof readKey>, by: string) {
  const group = (await fetchReviews(ctx)).groups.find((g) => g.planHash === planHash);
  if (!group) throw new CliError(`no run awaits approval with plan ${planHash}`);
  const show = ctx.json ? (l: string) => ctx.err(`${l}\n`) : ctx.out;
  show(`plan ${planHash} on ${group.hosts} host(s): ${group.runs.map((r) => r.hostname).join(', ')}`);
  showGroupPlan(show, group);
  await confirm(ctx, `approve this plan on ${group.runs.length} run(s) as ${by}?`);
  const approvals = group.runs.map((r) => {
    const { runId, at, keyId, signature } = signApproval(
      { runId: r.id, planHash, by, at: new Date().toISOString() },
      k.keyId,
      k.secret,
    );
    return { runId, at, keyId, signature };
  });
  const answer = await ctx.api.call('POST', `/v1/reviews/${planHash}/approve`, GroupDecisionAnswer, { approvals });
  return reportGroup(ctx, 'approved', answer);
}
