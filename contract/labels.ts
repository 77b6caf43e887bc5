import { z } from 'zod';

/**
 * Agent labels and label selectors (issue 12): `env=prod`, `role=web`. An agent's labels come
 * from its config at enrolment (PATCHNANNY_LABELS) and admins may edit them; windows, rollouts
 * and baselines target agents by selector as well as by id.
 *
 * Kubernetes' equality-based selector grammar, on purpose (admins know it): requirements joined
 * by commas, all must hold — `key=value`, `key!=value` (also true when the label is missing),
 * `key` (the label exists), `!key` (it does not). No set-based `in (...)`: one selector per
 * target list entry covers it. Deterministic and pure: it runs in workflows too.
 */

/** A label key: lowercase, may carry a DNS-style prefix (`team.example/role`), at most 63 characters. */
export const LABEL_KEY = /^[a-z0-9]([a-z0-9._/-]{0,61}[a-z0-9])?$/;
/** A label value: letters, digits, `.`, `_`, `-`; empty allowed; at most 63 characters. */
export const LABEL_VALUE = /^([A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?)?$/;
export const MAX_LABELS = 32;

export const Labels = z
  .record(
    z.string().regex(LABEL_KEY, 'a label key: lowercase letters, digits, . _ / -, at most 63 characters'),
    z.string().regex(LABEL_VALUE, 'a label value: letters, digits, . _ -, at most 63 characters'),
  )
  .refine((l) => Object.keys(l).length <= MAX_LABELS, `at most ${MAX_LABELS} labels`);
export type Labels = z.infer<typeof Labels>;

export type Requirement =
  | { key: string; op: '='; value: string }
  | { key: string; op: '!='; value: string }
  | { key: string; op: 'exists' }
  | { key: string; op: '!exists' };

export class SelectorError extends Error {}

/** Parse a selector; throws SelectorError naming the bad requirement. An empty selector is refused (it would match every agent). */
export function parseSelector(selector: string): Requirement[] {
  if (selector.length > 1000) throw new SelectorError('a selector is at most 1000 characters');
  const parts = selector.split(',').map((p) => p.trim());
  if (parts.length === 0 || parts.every((p) => p === ''))
    throw new SelectorError('an empty selector would match every agent; name at least one label');
  const seen: Requirement[] = [];
  for (const part of parts) {
    const m = /^(!?)([^=!]+?)\s*(?:(!=|==|=)\s*(.*))?$/.exec(part);
    if (!m || part === '') throw new SelectorError(`"${part}" is not key=value, key!=value, key or !key`);
    const [, not, key, op, value] = m;
    if (!LABEL_KEY.test(key)) throw new SelectorError(`"${key}" is not a label key`);
    if (op === undefined) {
      seen.push({ key, op: not ? '!exists' : 'exists' });
      continue;
    }
    if (not) throw new SelectorError(`"${part}": ! goes only before a bare key`);
    if (!LABEL_VALUE.test(value)) throw new SelectorError(`"${value}" is not a label value`);
    seen.push(op === '!=' ? { key, op: '!=', value } : { key, op: '=', value });
  }
  return seen;
}

export function matches(labels: Readonly<Record<string, string>>, requirements: readonly Requirement[]): boolean {
  return requirements.every((r) => {
    const has = Object.prototype.hasOwnProperty.call(labels, r.key);
    switch (r.op) {
      case '=':
        return has && labels[r.key] === r.value;
      case '!=':
        return !has || labels[r.key] !== r.value;
      case 'exists':
        return has;
      case '!exists':
        return !has;
    }
  });
}

/** True when `labels` satisfy every requirement of `selector` (which must parse). */
export function matchesSelector(labels: Readonly<Record<string, string>>, selector: string): boolean {
  return matches(labels, parseSelector(selector));
}

/** A selector at an API boundary: a clear 400 naming what is wrong. */
export const LabelSelector = z.string().superRefine((s, ctx) => {
  try {
    parseSelector(s);
  } catch (err) {
    ctx.addIssue({ code: 'custom', message: (err as Error).message });
  }
});

/** `env=prod,role=web` (the agent's PATCHNANNY_LABELS): parsed into Labels, or a SelectorError. */
export function parseLabelList(text: string): Labels {
  const out: Record<string, string> = {};
  for (const part of text.split(',').map((p) => p.trim())) {
    if (part === '') continue;
    const eq = part.indexOf('=');
    if (eq <= 0) throw new SelectorError(`"${part}" is not key=value`);
    const key = part.slice(0, eq).trim();
    const value = part.slice(eq + 1).trim();
    if (!LABEL_KEY.test(key)) throw new SelectorError(`"${key}" is not a label key`);
    if (!LABEL_VALUE.test(value)) throw new SelectorError(`"${value}" is not a label value`);
    out[key] = value;
  }
  if (Object.keys(out).length > MAX_LABELS) throw new SelectorError(`at most ${MAX_LABELS} labels`);
  return out;
}
