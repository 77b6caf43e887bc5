/**
 * Control-side activities: a run's reads and writes of the database, each a thin wrapper around
 * a db/ query (the API shares those). Failures a retry cannot fix are non-retryable here.
 */
import { ApplicationFailure, Context } from '@temporalio/activity';
import { type Db } from '../../db';
import { appendAudit } from '../../db/audit';
import { agentsByIds, getAgent } from '../../db/agents';
import { approverKeys } from '../../db/approver-keys';
import type { PinnedKey } from '../../contract/approval';
import { activeExceptionPatterns } from '../../db/exceptions';
import {
  claimRun as claimRow,
  getRun,
  fourEyesExcluded,
  insertRunRows,
  RunNotClaimedError,
  recordDecision as writeDecision,
  recordIgnoredDecisions as writeIgnored,
  recordOutcome as writeOutcome,
  recordPhase as writePhase,
  recordPlan as writePlan,
  recordScript,
  type ClaimResult,
  type ClaimRunInput,
  type CreateRunInput,
  type RecordDecisionInput,
  type RecordIgnoredInput,
  type RecordOutcomeInput,
  type RecordPhaseInput,
  type RecordPlanInput,
  type RunOwner,
} from '../../db/runs';
import { scriptSha256 } from '../../db/scripts';
import { containerDefaults, getContainer } from '../../db/containers';
import { getWindow } from '../../db/windows';
import type { RunEvents } from './webhooks';
import {
  Family,
  resolveContainerOptions,
  resolveRunTimeouts,
  scriptNameFor,
  type ConfigurableTimeouts,
  type RunOutcome,
  type WindowFiring,
} from '../../contract';

export type {
  ClaimResult,
  ClaimRunInput,
  CreateRunInput,
  RecordDecisionInput,
  RecordIgnoredInput,
  RecordOutcomeInput,
  RecordPhaseInput,
  RecordPlanInput,
};

/** A claim, and when it succeeded the approver keys pinned for the run. */
export type ClaimedRun =
  { claimed: true; approverKeys: PinnedKey[]; mayNotApprove: string[] } | Extract<ClaimResult, { claimed: false }>;

export interface ResolvedRun {
  family: Family;
  scriptName: string;
  sha256: string;
  exclusions: string[];
}

/**
 * The run this activity acts for, from Temporal's record of who scheduled it (the activity
 * Context), never from the workflow's input: anyone with namespace access can start a workflow
 * with any input, nobody can make its activities run under another execution's identity.
 */
function owner(): RunOwner {
  const execution = Context.current().info.workflowExecution;
  if (!execution) throw ApplicationFailure.nonRetryable('not scheduled by a workflow', 'run-not-claimed');
  const { workflowId, runId } = execution;
  return { runId: workflowId, workflowRunId: runId, activityId: Context.current().info.activityId };
}

/** A write to a row this execution did not claim: never retried, never silently dropped. */
async function owned<T>(write: (o: RunOwner) => Promise<T>): Promise<T> {
  const o = owner();
  try {
    return await write(o);
  } catch (err) {
    if (err instanceof RunNotClaimedError) throw ApplicationFailure.nonRetryable(err.message, 'run-not-claimed');
    throw err;
  }
}

/** Told when a run starts (its claim) and ends (its outcome recorded): metrics and run log lines (control-worker/metrics.ts). */
export interface RunObserver {
  started(runId: string, mode: string): void;
  ended(runId: string, outcome: RunOutcome, failureReason: string | null): void;
}

/**
 * `runDefaults` are the configured timeouts (PATCHNANNY_*_TIMEOUT_MS), which window runs start from.
 */
export function createControlActivities(
  db: Db,
  runDefaults: ConfigurableTimeouts,
  observe?: RunObserver,
  /** Webhook events (activities/control/webhooks.ts); they never fail the write they follow. */
  events?: RunEvents,
) {
  /**
   * The first thing a patch run does: claim its row (see db/runs.ts claimRun). A refusal is an
   * answer, not a failure: the workflow ends `untrusted-input` having executed and written nothing.
   */
  async function claimRun(input: ClaimRunInput): Promise<ClaimedRun> {
    const claim = await claimRow(db, owner(), input);
    // The approver keys valid now are the ones this run accepts signatures from (issue 10): a
    // key registered later does not count, nor does the workflow's input say which keys count.
    // Four-eyes is read from the row too, so an approval sent straight to Temporal meets it as well.
    if (!claim.claimed) return claim;
    observe?.started(input.runId, input.mode);
    return {
      claimed: true,
      approverKeys: await approverKeys(db),
      mayNotApprove: await fourEyesExcluded(db, input.runId),
    };
  }

  async function resolveRun(input: { runId: string; agentId: string }): Promise<ResolvedRun> {
    const agent = await getAgent(db, input.agentId);
    if (!agent) throw ApplicationFailure.nonRetryable(`unknown agent ${input.agentId}`, 'unknown-agent');
    // The API starts runs only for accepted agents; this catches a run that raced a revocation
    // (its row written before the agent was revoked, its workflow started after the API signalled).
    if (agent.status === 'revoked')
      throw ApplicationFailure.nonRetryable(
        `agent ${agent.id} was revoked by ${agent.revoked_by ?? 'an admin'}`,
        'agent-revoked',
      );
    if (agent.status !== 'accepted')
      throw ApplicationFailure.nonRetryable(`agent ${agent.id} is pending acceptance`, 'agent-not-accepted');
    // A container run (docs/proxmox.md) is patched with its container's script and exceptions,
    // read from the run's own row, never from the workflow's input.
    const vmid = (await getRun(db, input.runId))?.container ?? null;
    const family = Family.parse(vmid === null ? agent.family : await containerFamily(input.agentId, vmid));
    const scriptName = scriptNameFor(family);
    const sha256 = await scriptSha256(db, scriptName);
    if (!sha256)
      throw ApplicationFailure.nonRetryable(`no script ${scriptName} for family ${family}`, 'script-not-found');
    // Loaded at plan time, so an exception added or expired since the run started counts.
    const exclusions = await activeExceptionPatterns(db, input.agentId, vmid ?? 0);
    await owned((o) => recordScript(db, o, { scriptName, sha256, exclusions }));
    return { family, scriptName, sha256, exclusions };
  }

  /** The family the node's agent last reported for a container; a gone or unsupported one ends the run. */
  async function containerFamily(agentId: string, vmid: number): Promise<string> {
    const ct = await getContainer(db, agentId, vmid);
    if (!ct || ct.gone_at)
      throw ApplicationFailure.nonRetryable(`container ${vmid} is not on node ${agentId}`, 'container-gone');
    if (!ct.family)
      throw ApplicationFailure.nonRetryable(
        `container ${vmid} is unsupported: ${ct.unsupported ?? 'no family detected'}`,
        'container-unsupported',
      );
    return ct.family;
  }

  async function recordPlan(input: RecordPlanInput): Promise<void> {
    await owned((o) => writePlan(db, o, input));
    await events?.phase({ runId: input.runId, phase: input.phase });
  }

  async function recordDecision(input: RecordDecisionInput): Promise<void> {
    await owned((o) => writeDecision(db, o, input));
  }

  async function recordPhase(input: RecordPhaseInput): Promise<void> {
    await owned((o) => writePhase(db, o, input));
    await events?.phase(input);
  }

  async function recordIgnoredDecisions(input: RecordIgnoredInput): Promise<void> {
    await owned((o) => writeIgnored(db, o, input));
  }

  async function recordOutcome(input: RecordOutcomeInput): Promise<void> {
    await owned((o) => writeOutcome(db, o, input));
    observe?.ended(input.runId, input.outcome, input.failureReason);
    await events?.outcome(input);
  }

  /** A window firing's runs, each audited as requested (by `window:<id>`) once whatever the retries. */
  async function createRuns(inputs: CreateRunInput[]): Promise<void> {
    await db.transaction(async (trx) => {
      await insertRunRows(trx, inputs);
      for (const input of inputs)
        await appendAudit(trx, {
          actor: input.requestedBy,
          kind: 'run.requested',
          subject: input.runId,
          detail: { agentId: input.agentId, mode: input.mode, approval: input.approval, windowId: input.windowId },
          dedupeKey: `run.requested:${input.runId}`,
        });
    });
  }

  async function loadWindowFiring(input: { windowId: string }): Promise<WindowFiring | null> {
    const w = await getWindow(db, input.windowId);
    if (!w) return null; // deleted while its Schedule fired
    const found = await agentsByIds(db, w.targets.agentIds);
    // Only accepted agents are patched; the others are named in the firing's report, with why.
    const agents = found.filter((a) => a.status === 'accepted');
    const known = new Map(found.map((a) => [a.id, a.status]));
    const skippedTargets = w.targets.agentIds
      .filter((id) => known.get(id) !== 'accepted')
      .map((agentId) => {
        const status = known.get(agentId);
        return {
          agentId,
          reason:
            status === undefined ? 'unknown agent' : `agent is ${status === 'pending' ? 'pending acceptance' : status}`,
        };
      });
    // Containers of nodes: the node must be accepted, the container there and supported.
    const containerTargets: WindowFiring['agents'] = [];
    const nodes = new Map(
      (
        await agentsByIds(
          db,
          (w.targets.containers ?? []).map((c) => c.agentId),
        )
      ).map((a) => [a.id, a]),
    );
    for (const { agentId, vmid } of w.targets.containers ?? []) {
      const agent = nodes.get(agentId);
      const ct = agent?.status === 'accepted' ? await getContainer(db, agentId, vmid) : undefined;
      const why = !agent
        ? 'unknown agent'
        : agent.status !== 'accepted'
          ? `agent is ${agent.status === 'pending' ? 'pending acceptance' : agent.status}`
          : !ct || ct.gone_at
            ? `container ${vmid} is not on the node`
            : !ct.family
              ? `container ${vmid} is unsupported: ${ct.unsupported ?? 'no family'}`
              : null;
      if (why)
        skippedTargets.push({ agentId, reason: why.startsWith('container') ? why : `container ${vmid}: ${why}` });
      else
        containerTargets.push({
          agentId,
          hostname: agent!.hostname,
          container: vmid,
          // The window's say, else the container's default, else off (run > window > container > off).
          options: resolveContainerOptions({
            window: { startIfStopped: w.start_if_stopped, snapshot: w.snapshot },
            container: containerDefaults(ct),
          }),
        });
    }
    return {
      windowId: w.id,
      timeouts: resolveRunTimeouts(runDefaults),
      approval: w.approval,
      leadSeconds: w.lead_seconds,
      durationSeconds: w.duration_seconds,
      cutoffSeconds: w.cutoff_seconds,
      agents: [...agents.map((a) => ({ agentId: a.id, hostname: a.hostname })), ...containerTargets],
      skippedTargets,
    };
  }

  return {
    claimRun,
    resolveRun,
    recordPlan,
    recordDecision,
    recordPhase,
    recordIgnoredDecisions,
    recordOutcome,
    createRuns,
    loadWindowFiring,
  };
}
/** What the workflows proxy as local activities (their type is checked against this). */
export type ControlActivities = ReturnType<typeof createControlActivities> &
  ReturnType<typeof import('./host-lock').createHostLockActivities> &
  ReturnType<typeof import('./window-firing').createWindowFiringActivities> &
  ReturnType<typeof import('./webhooks').createWindowEventActivities> &
  ReturnType<typeof import('./rollouts').createRolloutActivities>;
