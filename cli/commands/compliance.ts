import { ComplianceAnswer } from '../../api/compliance/schema';
import { table, type Command } from '../command';

export const compliance: Command = {
  name: 'compliance',
  summary: 'the fleet at a glance',
  usage: `patchnanny compliance [--json]
  Hosts up to date, with pending upgrades (and how many have security fixes pending), failing
  (last run failed), unreachable (agent not seen lately), needing a reboot, and not accepted.
  Per host: patchnanny agents --json (each agent carries its compliance).`,
  api: true,
  async run(ctx) {
    const c = await ctx.api.call('GET', '/v1/compliance', ComplianceAnswer);
    if (ctx.json) return ctx.out(JSON.stringify(c));
    ctx.out(
      table(
        [
          'HOSTS',
          'UP TO DATE',
          'PENDING',
          'SECURITY PENDING',
          'FAILING',
          'UNREACHABLE',
          'REBOOT',
          'UNKNOWN',
          'NOT ACCEPTED',
        ],
        [
          [
            c.hosts,
            c.upToDate,
            c.pending,
            c.pendingSecurityHosts,
            c.failing,
            c.unreachable,
            c.pendingReboot,
            c.unknown,
            c.notAccepted,
          ],
        ],
      ),
    );
  },
};
