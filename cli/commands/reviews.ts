import { z } from 'zod';
import { ReviewsAnswer } from '../../api/reviews/schema';
import { table, type Command, type CommandContext } from '../command';

/** The review desk's groups (GET /v1/reviews), read with the API's own answer schema. */
export const fetchReviews = (ctx: CommandContext) => ctx.api.call('GET', '/v1/reviews', ReviewsAnswer);
export type ReviewGroup = z.infer<typeof ReviewsAnswer>['groups'][number];

/** A group's plan, one package a line, security fixes marked (as `approve <planHash>` shows it). */
export function showGroupPlan(out: (line: string) => void, g: ReviewGroup): void {
  if (g.plan.length === 0) out('  (nothing to update)');
  for (const p of g.plan)
    out(
      `  ${p.name} ${p.current ?? '(new)'} -> ${p.candidate ?? ''}${p.repo ? ` [${p.repo}]` : ''}${p.security ? ' security' : ''}`,
    );
  for (const h of g.held)
    out(`  held: ${h.name} ${h.current ?? ''} -> ${h.candidate ?? ''} (on ${h.runs} of ${g.hosts})`);
}

export const reviews: Command = {
  name: 'reviews',
  summary: 'plans awaiting approval, grouped by identical plan',
  usage: `patchnanny reviews [--json]
  Runs awaiting approval grouped by identical plan (same plan hash), the longest-waiting group
  first: its hash, hosts, packages (security ones counted), held packages, hosts needing a reboot.
  Approve or reject a whole group with: patchnanny approve <planHash> / reject <planHash>.`,
  api: true,
  async run(ctx) {
    const answer = await fetchReviews(ctx);
    if (ctx.json) return ctx.out(JSON.stringify(answer));
    if (answer.groups.length === 0) return ctx.out('no plan awaits approval');
    ctx.out(
      table(
        ['PLAN HASH', 'HOSTS', 'PACKAGES', 'SECURITY', 'HELD', 'REBOOT', 'WAITING SINCE', 'RUNS'],
        answer.groups.map((g) => [
          g.planHash,
          g.hosts,
          g.plan.length,
          g.securityPackages,
          g.held.length,
          g.rebootRequired,
          g.oldestWaitingSince,
          g.runs.map((r) => `${r.hostname}${r.container !== null ? `/ct${r.container}` : ''}`).join(','),
        ]),
      ),
    );
  },
};
