import { z } from 'zod';
import { positional, usageError, type Command } from '../command';

const STEPS = ['plan', 'replan', 'apply'];

const Stream = z.object({ text: z.string(), verified: z.boolean().nullable() }).loose();
const Record = z.object({
  output: z.array(
    z
      .object({
        step: z.string(),
        attempt: z.number().nullable(),
        done: z.boolean(),
        verified: z.boolean().nullable(),
        streams: z.object({ stdout: Stream, stderr: Stream }),
      })
      .loose(),
  ),
});
const Chunks = z.object({
  chunks: z.array(
    z
      .object({ step: z.string(), attempt: z.number(), stream: z.string(), text: z.string(), gapBefore: z.number() })
      .loose(),
  ),
  next: z.number(),
  ended: z.boolean(),
});

/** `verified` as a person reads it. */
const check = (v: boolean | null) =>
  v === null ? 'not verified (recorded before live output)' : v ? 'verified' : 'NOT verified';

export const logs: Command = {
  name: 'logs',
  summary: "a run's script output (--follow: as it arrives)",
  usage: `patchnanny logs <run> [--step plan|replan|apply] [--follow] [--json]
  Print a run's script output, step by step: the script's log (stderr), then its JSON document
  (stdout), and whether the stored output matches the SHA-256 its agent reported. --follow prints
  the output as the agent streams it (long-poll) until the run ends.`,
  options: { step: { type: 'string' }, follow: { type: 'boolean', short: 'f' } },
  positionals: true,
  api: true,
  async run(ctx) {
    const id = positional(ctx, 0, 'a run id');
    const step = ctx.values.step;
    if (step !== undefined && (typeof step !== 'string' || !STEPS.includes(step)))
      throw usageError(`--step must be one of ${STEPS.join(', ')}`);
    const base = `/v1/runs/${encodeURIComponent(id)}/output`;
    const only = step ? `step=${step}&` : '';
    if (!ctx.values.follow) {
      const r = await ctx.api.call('GET', `${base}${step ? `?step=${step}` : ''}`, Record);
      if (ctx.json) return ctx.out(JSON.stringify(r));
      for (const s of r.output) {
        ctx.out(
          `== ${s.step}${s.attempt ? ` (attempt ${s.attempt})` : ''}: ${s.done ? check(s.verified) : 'running'} ==`,
        );
        ctx.out(s.streams.stderr.text.trimEnd());
        if (s.streams.stdout.text) ctx.out(s.streams.stdout.text.trimEnd());
      }
      return;
    }
    let after = 0;
    let shown = '';
    for (;;) {
      const r = await ctx.api.call('GET', `${base}?${only}after=${after}&waitMs=10000`, Chunks);
      for (const c of r.chunks) {
        if (ctx.json) {
          ctx.out(JSON.stringify(c));
          continue;
        }
        const label = `${c.step}${c.attempt > 1 ? ` (attempt ${c.attempt})` : ''}`;
        if (label !== shown) ctx.out(`== ${label} ==`);
        shown = label;
        if (c.gapBefore > 0) ctx.out(`…[${c.gapBefore} bytes cut]…`);
        ctx.out(c.text.replace(/\n$/, ''));
      }
      after = r.next;
      if (r.ended && r.chunks.length === 0) return;
    }
  },
};
