import { z } from 'zod';
import { LABEL_KEY, LABEL_VALUE, Labels } from '../../contract/labels';
import { positional, usageError, type Command } from '../command';

const Agent = z.object({ agent: z.object({ id: z.string(), labels: z.record(z.string(), z.string()) }).loose() });

/**
 * `key=value` sets a label, `key-` removes it (kubectl label's grammar). Checked here with the
 * API's own rules (contract/labels.ts), so a typo is a usage error before anything is sent.
 */
export function applyLabelEdits(current: Record<string, string>, edits: readonly string[]): Labels {
  const next: Record<string, string> = { ...current };
  for (const edit of edits) {
    if (edit.endsWith('-') && !edit.includes('=')) {
      const key = edit.slice(0, -1);
      if (!LABEL_KEY.test(key)) throw usageError(`"${key}" is not a label key`);
      delete next[key];
      continue;
    }
    const eq = edit.indexOf('=');
    if (eq <= 0) throw usageError(`"${edit}" is neither key=value nor key-`);
    const [key, value] = [edit.slice(0, eq), edit.slice(eq + 1)];
    if (!LABEL_KEY.test(key))
      throw usageError(`"${key}" is not a label key (lowercase letters, digits, . _ / -, at most 63 characters)`);
    if (!LABEL_VALUE.test(value))
      throw usageError(`"${value}" is not a label value (letters, digits, . _ -, at most 63 characters)`);
    next[key] = value;
  }
  const parsed = Labels.safeParse(next);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw usageError(`${issue.path.length ? `${issue.path.join('.')}: ` : ''}${issue.message}`);
  }
  return parsed.data;
}

export const label: Command = {
  name: 'label',
  summary: "set or remove an agent's labels",
  usage: `patchnanny label <agentId> key=value [key=value…] [key-…] [--json]
  Sets each key=value and removes each key- (as kubectl label does); other labels stay. Windows,
  rollouts and baselines select agents by these labels (docs/labels-and-baselines.md).`,
  positionals: true,
  api: true,
  async run(ctx) {
    const id = positional(ctx, 0, 'an agent id');
    const edits = ctx.positionals.slice(1);
    if (edits.length === 0) throw usageError('name at least one key=value or key-');
    const path = `/v1/agents/${encodeURIComponent(id)}`;
    // The API replaces the whole set: read it first, so labels not named here stay.
    const { agent } = await ctx.api.call('GET', path, Agent);
    const labels = applyLabelEdits(agent.labels, edits);
    const { agent: updated } = await ctx.api.call('PUT', `${path}/labels`, Agent, { labels });
    if (ctx.json) return ctx.out(JSON.stringify(updated));
    const shown = Object.entries(updated.labels).map(([k, v]) => `${k}=${v}`);
    ctx.out(`labelled ${updated.id}: ${shown.length ? shown.join(',') : '(no labels)'}`);
  },
};
