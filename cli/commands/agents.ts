import { z } from 'zod';
import { table, type Command } from '../command';

const Agents = z.object({
  agents: z.array(
    z
      .object({
        id: z.string(),
        hostname: z.string(),
        family: z.string(),
        status: z.string(),
        flag: z.string().nullable().optional(),
        lastSeenAt: z.string().nullable(),
        os: z.object({ prettyName: z.string().nullable().optional() }).loose(),
      })
      .loose(),
  ),
});

export const agents: Command = {
  name: 'agents',
  summary: 'list agents',
  usage: `patchnanny agents [--selector role=web,env!=staging] [--json]
  List the agents: id, host name, status, family, OS and when each was last seen; --selector
  lists only the agents whose labels match (docs/labels-and-baselines.md).`,
  options: { selector: { type: 'string' } },
  api: true,
  async run(ctx) {
    const selector = ctx.values.selector;
    const query = typeof selector === 'string' ? `?selector=${encodeURIComponent(selector)}` : '';
    const { agents } = await ctx.api.call('GET', `/v1/agents${query}`, Agents);
    if (ctx.json) return ctx.out(JSON.stringify(agents));
    ctx.out(
      table(
        ['ID', 'HOSTNAME', 'STATUS', 'FAMILY', 'OS', 'LAST SEEN'],
        agents.map((a) => [
          a.id,
          a.hostname,
          a.flag ? `${a.status} (${a.flag})` : a.status,
          a.family,
          a.os.prettyName,
          a.lastSeenAt,
        ]),
      ),
    );
  },
};
