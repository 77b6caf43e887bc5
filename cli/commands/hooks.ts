import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { SignatureFile } from '../../runtime/script-signing';
import { CliError, positional, required, table, usageError, type Command } from '../command';

const Hook = z.object({ name: z.string(), sha256: z.string(), updatedBy: z.string(), updatedAt: z.string() }).loose();

const read = (file: string) => {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    throw new CliError(`cannot read ${file}: ${(err as Error).message}`);
  }
};

/** Issue 12 (docs/reboot-and-hooks.md): hook scripts runs and windows name in `hooks`. */
export const hooks: Command = {
  name: 'hooks',
  summary: 'list or upload pre/post hook scripts',
  usage: `patchnanny hooks [list] [--json]
patchnanny hooks put <name.sh> --file <hook.sh> [--sig <hook.sh.sig>]
  Upload (or replace) a hook; --sig is the signature file npm run sign:scripts writes next to it
  (agents that trust a release key refuse an unsigned hook). Runs resolved before keep the old hash.`,
  options: { file: { type: 'string' }, sig: { type: 'string' } },
  positionals: true,
  api: true,
  async run(ctx) {
    const [verb = 'list'] = ctx.positionals;
    if (verb === 'list') {
      const { hooks } = await ctx.api.call('GET', '/v1/hooks', z.object({ hooks: z.array(Hook) }));
      if (ctx.json) return ctx.out(JSON.stringify(hooks));
      return ctx.out(
        table(
          ['NAME', 'SHA256', 'BY', 'UPDATED'],
          hooks.map((h) => [h.name, h.sha256.slice(0, 16), h.updatedBy, h.updatedAt]),
        ),
      );
    }
    if (verb === 'put') {
      const name = positional(ctx, 1, 'a hook name like drain-lb.sh');
      const content = read(required(ctx, 'file'));
      const sig = ctx.values.sig;
      let signatures: SignatureFile['signatures'] | undefined;
      if (typeof sig === 'string') {
        const parsed = SignatureFile.safeParse(JSON.parse(read(sig)));
        if (!parsed.success) throw new CliError(`--sig: ${sig} is not a signature file`);
        signatures = parsed.data.signatures;
      }
      const { hook } = await ctx.api.call('PUT', `/v1/hooks/${encodeURIComponent(name)}`, z.object({ hook: Hook }), {
        content,
        ...(signatures ? { signatures } : {}),
      });
      return ctx.out(ctx.json ? JSON.stringify(hook) : `${hook.name} ${hook.sha256}`);
    }
    throw usageError(`unknown hooks command ${verb}`);
  },
};
