/**
 * Compliance at a glance (issue 17): each host's patch state from its run history, and the
 * fleet's summary. Response schemas are exported for the OpenAPI document and the CLI.
 */
import { z } from 'zod';
import { Agent, RunOutcome } from '../../contract';

export const HOST_STATES = [
  /** its latest plan has nothing pending (or its latest apply completed) and its last run did not fail */
  'up-to-date',
  /** its latest plan has upgrades not applied yet */
  'pending',
  /** its last run ended failed or plan-drift */
  'failing',
  /** the agent has not been seen within staleAfterSeconds, or its last run could not reach it */
  'unreachable',
  /** no run has made a plan for it yet */
  'unknown',
  /** pending acceptance or revoked: not part of the fleet's figures */
  'not-accepted',
] as const;
export const HostState = z.enum(HOST_STATES);
export type HostState = z.infer<typeof HostState>;

/** How long since an agent last checked in before it counts as unreachable (agents check in every 60 s by default). */
export const DEFAULT_STALE_AFTER_SECONDS = 300;

export const ComplianceQuery = z
  .object({
    staleAfterSeconds: z.coerce
      .number()
      .int()
      .min(30)
      .max(30 * 24 * 3600)
      .default(DEFAULT_STALE_AFTER_SECONDS),
  })
  .strict();
export type ComplianceQuery = z.infer<typeof ComplianceQuery>;

export const HostCompliance = z.object({
  state: HostState,
  lastSeenAt: z.string().nullable(),
  /** When the latest apply that completed finished. */
  lastSuccessfulApplyAt: z.string().nullable(),
  /** Upgrades in the latest plan not applied since (null: never planned). */
  pendingUpgrades: z.number().int().nullable(),
  /** Of those, security fixes: as the manager named them, else from a repository whose name says security. */
  pendingSecurity: z.number().int().nullable(),
  /** The run whose plan this is, and when it was made. */
  planRunId: z.string().nullable(),
  plannedAt: z.string().nullable(),
  /** Packages the latest plan held back (exceptions matched them). */
  held: z.array(z.string()),
  /** The host's active exception patterns. */
  excluded: z.array(z.string()),
  rebootRequired: z.boolean().nullable(),
  rebootReason: z.string().nullable(),
  /** The first run that found a reboot required since the host last reported none. */
  rebootRequiredSince: z.string().nullable(),
  lastRun: z
    .object({
      id: z.string(),
      outcome: RunOutcome,
      failureReason: z.string().nullable(),
      finishedAt: z.string().nullable(),
    })
    .nullable(),
});
export type HostCompliance = z.infer<typeof HostCompliance>;

/** `GET /v1/agents`: each agent with its compliance. */
export const AgentWithCompliance = Agent.extend({ compliance: HostCompliance });
export const AgentsAnswer = z.object({ agents: z.array(AgentWithCompliance) });

/** `GET /v1/compliance`: accepted hosts by state; pendingReboot counts across states. */
export const ComplianceAnswer = z.object({
  hosts: z.number().int(),
  upToDate: z.number().int(),
  pending: z.number().int(),
  failing: z.number().int(),
  unreachable: z.number().int(),
  unknown: z.number().int(),
  pendingReboot: z.number().int(),
  /** Of the pending upgrades, hosts with at least one security fix (as pendingSecurity counts them). */
  pendingSecurityHosts: z.number().int(),
  notAccepted: z.number().int(),
  staleAfterSeconds: z.number().int(),
  at: z.string(),
});
export type ComplianceAnswer = z.infer<typeof ComplianceAnswer>;
