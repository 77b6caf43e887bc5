import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { signApproval } from '../../contract/approval';
import { PLAN_HASH_PATTERN } from '../../contract/workflow-safe';
import {
  CliError,
  EXIT,
  positional,
  required,
  showPlan,
  table,
  usageError,
  type Command,
  type CommandContext,
} from '../command';
import { confirm } from './approve';
import { readKey } from './keys';
import { getRun } from './run';

const Budget = z.object({ allowed: z.number(), spent: z.number(), left: z.number() });
const Rollout = z
  .object({
    id: z.string(),
    name: z.string(),
    state: z.string(),
    stateReason: z.string().nullable().optional(),
    mode: z.string(),
    approval: z.string(),
    maxConcurrency: z.number(),
    budget: Budget,
  })
  .loose();
const Host = z
  .object({
    agentId: z.string(),
    wave: z.number(),
    runId: z.string().nullable(),
    phase: z.string().nullable(),
    container: z.number().optional(),
    planHash: z.string().nullable().optional(),
    outcome: z.string().nullable(),
  })
  .loose();
const Detail = Rollout.extend({
  waves: z.array(
    z.object({
      wave: z.number(),
      kind: z.string(),
      hosts: z.number(),
      started: z.number(),
      finished: z.number(),
      failed: z.number(),
    }),
  ),
  hosts: z.array(Host),
});
const Progress = z.object({ hosts: z.number(), started: z.number(), finished: z.number() });

const whole = (v: unknown, what: string): number => {
  const n = Number(v);
  if (!Number.isInteger(n)) throw usageError(`--${what}: a whole number`);
  return n;
};

/** `5` is a count, `10%` a percentage. */
const countOrPercent = (v: unknown, what: string) =>
  typeof v === 'string' && v.endsWith('%') ? { percent: whole(v.slice(0, -1), what) } : { count: whole(v, what) };

/** The rollout a `rollout start` describes: a JSON file (the POST /v1/rollouts body), or flags. */
function startBody(ctx: CommandContext): unknown {
  const v = ctx.values;
  if (typeof v.file === 'string') {
    try {
      return JSON.parse(readFileSync(v.file === '-' ? 0 : v.file, 'utf8'));
    } catch (err) {
      throw new CliError(`--file: ${(err as Error).message}`);
    }
  }
  const agentIds = (v.agent as string[] | undefined) ?? [];
  const selector = typeof v.selector === 'string' ? v.selector : undefined;
  const containers = ((v.container as string[] | undefined) ?? []).map((c) => {
    const m = /^([^:]+):(\d+)$/.exec(c);
    if (!m) throw usageError(`--container ${c}: <agentId>:<vmid>`);
    return { agentId: m[1], vmid: Number(m[2]) };
  });
  const containersOf = (v['containers-of'] as string[] | undefined) ?? [];
  if (agentIds.length === 0 && !selector && containers.length === 0 && containersOf.length === 0)
    throw usageError('--selector, --agent, --container or --containers-of is required');
  return {
    ...(typeof v.name === 'string' ? { name: v.name } : {}),
    targets: {
      ...(agentIds.length ? { agentIds } : {}),
      ...(selector ? { selector } : {}),
      ...(containers.length ? { containers } : {}),
      ...(containersOf.length ? { containersOf } : {}),
    },
    mode: v['dry-run'] ? 'dry-run' : 'apply',
    approval: typeof v.approval === 'string' ? v.approval : 'required',
    ...(v['plan-group'] ? { approvalScope: 'plan-group' } : {}),
    ...(v.canary !== undefined ? { canary: countOrPercent(v.canary, 'canary') } : {}),
    ...(v['max-concurrency'] !== undefined ? { maxConcurrency: whole(v['max-concurrency'], 'max-concurrency') } : {}),
    ...(v['max-failures'] !== undefined ? { maxFailures: countOrPercent(v['max-failures'], 'max-failures') } : {}),
  };
}

export const rollouts: Command = {
  name: 'rollouts',
  summary: 'list rollouts with their state, progress and error budget',
  usage: 'patchnanny rollouts [--json]',
  options: {},
  api: true,
  async run(ctx) {
    const { rollouts: list } = await ctx.api.call(
      'GET',
      '/v1/rollouts',
      z.object({ rollouts: z.array(Rollout.extend({ progress: Progress })) }),
    );
    if (ctx.json) return ctx.out(JSON.stringify(list));
    return ctx.out(
      table(
        ['ID', 'NAME', 'STATE', 'MODE', 'HOSTS', 'STARTED', 'FINISHED', 'FAILED/ALLOWED'],
        list.map((r) => [
          r.id,
          r.name,
          r.state,
          r.mode,
          r.progress.hosts,
          r.progress.started,
          r.progress.finished,
          `${r.budget.spent}/${r.budget.allowed}`,
        ]),
      ),
    );
  },
};

export const rollout: Command = {
  name: 'rollout',
  summary: 'start, show, pause, resume or abort a rollout',
  usage: `patchnanny rollout start (--selector <k=v,…> | --agent <id>… | --container <agentId:vmid>… |
                          --containers-of <agentId>…) [--name <n>]
                         [--approval required|auto] [--plan-group] [--dry-run] [--canary <n|p%>]
                         [--max-concurrency <n>] [--max-failures <n|p%>]
patchnanny rollout start --file <rollout.json|->     (the POST /v1/rollouts body)
patchnanny rollout show <rolloutId> [--json]
patchnanny rollout pause|resume|abort <rolloutId>
patchnanny rollout approve <rolloutId> --key <file> [--plan <planHash>] [--by <name>] [--yes]
  --plan-group: one signed approval of a plan covers every host of the rollout with that plan
  (docs/rollouts.md). \`approve\` shows the plan a host waits with (--plan when hosts wait with
  different plans), asks, signs it over the rollout's id and sends it; each host still checks
  it, and refuses drift before applying. Exit 1 when any waiting host refused it.`,
  options: {
    file: { type: 'string' },
    name: { type: 'string' },
    selector: { type: 'string' },
    agent: { type: 'string', multiple: true },
    container: { type: 'string', multiple: true },
    'containers-of': { type: 'string', multiple: true },
    approval: { type: 'string' },
    'dry-run': { type: 'boolean' },
    canary: { type: 'string' },
    'max-concurrency': { type: 'string' },
    'max-failures': { type: 'string' },
    'plan-group': { type: 'boolean' },
    key: { type: 'string' },
    by: { type: 'string' },
    plan: { type: 'string' },
    yes: { type: 'boolean', short: 'y' },
  },
  positionals: true,
  api: true,
  async run(ctx) {
    const [verb] = ctx.positionals;
    if (verb === 'start') {
      const { rollout: r } = await ctx.api.call(
        'POST',
        '/v1/rollouts',
        z.object({ rollout: Rollout.extend({ hosts: z.array(z.unknown()) }) }),
        startBody(ctx),
      );
      return ctx.out(ctx.json ? JSON.stringify(r) : `started ${r.id} (${r.hosts.length} hosts)`);
    }
    const id = positional(ctx, 1, 'a rollout id');
    const path = `/v1/rollouts/${encodeURIComponent(id)}`;
    if (verb === 'show') {
      const { rollout: r } = await ctx.api.call('GET', path, z.object({ rollout: Detail }));
      if (ctx.json) return ctx.out(JSON.stringify(r));
      const head = `${r.id} ${r.name ? `(${r.name}) ` : ''}${r.state}${r.stateReason ? `: ${r.stateReason}` : ''}
budget: ${r.budget.spent} failed of ${r.budget.allowed} allowed; waves: ${r.waves
        .map((w) => `${w.kind} ${w.finished}/${w.hosts} done, ${w.failed} failed`)
        .join('; ')}`;
      return ctx.out(
        `${head}\n${table(
          ['AGENT', 'WAVE', 'RUN', 'PHASE', 'OUTCOME'],
          r.hosts.map((h) => [
            h.container ? `${h.agentId}/ct${h.container}` : h.agentId,
            h.wave,
            h.runId ?? '-',
            h.phase ?? '-',
            h.outcome ?? '-',
          ]),
        )}`,
      );
    }
    if (verb === 'approve') return approvePlanGroup(ctx, id, path);
    if (verb === 'pause' || verb === 'resume' || verb === 'abort') {
      const { rollout: r } = await ctx.api.call('POST', `${path}/${verb}`, z.object({ rollout: Rollout }), {});
      return ctx.out(ctx.json ? JSON.stringify(r) : `${verb} requested for ${r.id}`);
    }
    throw usageError(`unknown rollout command ${verb ?? '(none)'}`);
  },
};

const PlanGroupAnswer = z.object({
  approved: z.array(z.string()),
  refused: z.array(z.object({ runId: z.string(), message: z.string() })),
});

/** `rollout approve`: sign one plan of a plan-group rollout for the whole rollout. */
async function approvePlanGroup(ctx: CommandContext, id: string, path: string): Promise<number | void> {
  const k = readKey(required(ctx, 'key'));
  const by = typeof ctx.values.by === 'string' ? ctx.values.by : k.by;
  if (!by) throw new CliError('--by: the name you approve as is required (the key file names none)', EXIT.usage);
  const { rollout: r } = await ctx.api.call('GET', path, z.object({ rollout: Detail }));
  const waiting = r.hosts.filter((h) => h.phase === 'awaiting-approval' && h.planHash);
  const plans = [...new Set(waiting.map((h) => h.planHash!))];
  const wanted = typeof ctx.values.plan === 'string' ? ctx.values.plan : undefined;
  if (wanted !== undefined && !PLAN_HASH_PATTERN.test(wanted)) throw usageError('--plan: a 64-hex plan hash');
  if (wanted === undefined && plans.length !== 1)
    throw new CliError(
      plans.length === 0
        ? `no host of ${id} waits for approval`
        : `hosts of ${id} wait with ${plans.length} different plans: choose one with --plan (${plans.join(', ')})`,
    );
  const planHash = wanted ?? plans[0];
  const example = waiting.find((h) => h.planHash === planHash);
  const show = ctx.json ? { ...ctx, out: (l: string) => ctx.err(`${l}\n`) } : ctx;
  show.out(`rollout ${id}: plan ${planHash}, for every host of the rollout that plans exactly it`);
  if (example?.runId) showPlan(show, await getRun(ctx, example.runId));
  else show.out('  (no host waits with this plan now: its packages are shown on the runs that planned it)');
  await confirm(ctx, `approve this plan for rollout ${id} as ${by}?`);
  const { at, keyId, signature } = signApproval(
    { runId: id, planHash, by, at: new Date().toISOString() },
    k.keyId,
    k.secret,
  );
  const answer = await ctx.api.call('POST', `${path}/approve`, PlanGroupAnswer, { planHash, at, keyId, signature });
  if (ctx.json) ctx.out(JSON.stringify(answer));
  else {
    ctx.out(`approved plan ${planHash} for ${id} as ${by}`);
    for (const runId of answer.approved) ctx.out(`approved ${runId}`);
    for (const x of answer.refused) ctx.out(`refused ${x.runId}: ${x.message}`);
  }
  return answer.refused.length ? EXIT.failed : EXIT.ok;
}
