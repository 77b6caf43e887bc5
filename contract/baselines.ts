/**
 * Patch baselines (issue 12): an admin's standing approval for the agents a label selector
 * matches. A run whose approval is `required` is approved by a baseline only when EVERY package
 * of its plan is covered by a rule of ONE matching baseline; anything else waits for a person.
 *
 * A package is covered when it is a security fix the manager named as such (PlanPackage
 * `security: true`, issue 16) whose candidate patchnanny first saw at least `securityAfterDays`
 * days ago, or when its name matches one of the baseline's `patterns`. "First saw": scripts do not
 * report publication dates, so the days count from the first plan, on any host of the same OS and
 * family, that offered that exact candidate (db/package-first-seen.ts).
 *
 * Pure, no Node built-ins: the API validates with it, the control activity evaluates with it.
 */
import { z } from 'zod';
import { freeText, PackagePattern, type PlanPackage } from './index';
import { LabelSelector } from './labels';

export const BaselineRules = z
  .object({
    /** Security fixes whose candidate patchnanny first saw at least this many days ago. */
    securityAfterDays: z.number().int().min(0).max(3650).optional(),
    /** Package-name globs (`*` only, as exceptions take them): `tzdata`, `libssl*`. */
    patterns: z.array(PackagePattern).min(1).max(200).optional(),
  })
  .strict()
  .refine((r) => r.securityAfterDays !== undefined || r.patterns !== undefined, {
    message: 'name at least one rule: securityAfterDays or patterns',
  });
export type BaselineRules = z.infer<typeof BaselineRules>;

export const BaselineBody = z
  .object({
    name: freeText(100)
      .min(1)
      .regex(/^[A-Za-z0-9][A-Za-z0-9._-]*$/, 'letters, digits, . _ - (it names the approver: baseline:<name>)'),
    /** Which agents the baseline approves for (a label selector; never empty: that would be every agent). */
    selector: LabelSelector,
    rules: BaselineRules,
    enabled: z.boolean().default(true),
    note: freeText(500, { multiLine: true }).optional(),
  })
  .strict();
export type BaselineBody = z.infer<typeof BaselineBody>;

/** How one planned package was covered: the rule that approved it, as recorded on the run. */
export type CoveredBy =
  | {
      name: string;
      arch: string;
      candidate: string | null;
      rule: 'securityAfterDays';
      days: number;
      firstSeenAt: string;
    }
  | { name: string; arch: string; candidate: string | null; rule: 'pattern'; pattern: string };

/** The baseline that approved a run and, per package, the rule that covered it. */
export interface BaselineApproval {
  baselineId: string;
  baseline: string;
  /** `baseline:<name>`: the run's approvedBy. */
  by: string;
  planHash: string;
  packages: CoveredBy[];
}

/** A `*` glob as exceptions use it: `*` is any run of characters, everything else literal. */
export function globMatches(pattern: string, name: string): boolean {
  const re = new RegExp(`^${pattern.split('*').map(escapeRegExp).join('.*')}$`);
  return re.test(name);
}
const escapeRegExp = (s: string) => s.replace(/[.+?^${}()|[\]\\]/g, '\\$&');

/** When patchnanny first saw a candidate: `name\0arch\0candidate` → time. */
export type FirstSeen = ReadonlyMap<string, Date>;
export const firstSeenKey = (p: Pick<PlanPackage, 'name' | 'arch' | 'candidate'>) =>
  `${p.name}\u0000${p.arch}\u0000${p.candidate ?? ''}`;

/**
 * How one baseline's rules cover a plan: every package's covering rule, or null when any package
 * is not covered (one uncovered package leaves the whole plan to a person).
 */
export function coverPlan(
  rules: BaselineRules,
  plan: readonly PlanPackage[],
  firstSeen: FirstSeen,
  now: Date,
): CoveredBy[] | null {
  const out: CoveredBy[] = [];
  for (const p of plan) {
    const base = { name: p.name, arch: p.arch, candidate: p.candidate };
    const days = rules.securityAfterDays;
    // Never seen before: seen now (the plan being recorded is its first sighting).
    const seen = p.candidate === null ? undefined : (firstSeen.get(firstSeenKey(p)) ?? now);
    if (days !== undefined && p.security === true && seen && now.getTime() - seen.getTime() >= days * 86_400_000) {
      out.push({ ...base, rule: 'securityAfterDays', days, firstSeenAt: seen.toISOString() });
      continue;
    }
    const pattern = rules.patterns?.find((g) => globMatches(g, p.name));
    if (pattern !== undefined) {
      out.push({ ...base, rule: 'pattern', pattern });
      continue;
    }
    return null;
  }
  return out;
}
