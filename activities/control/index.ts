/**
 * Control-side activities: a run's reads and writes of the database, each a thin wrapper around
 * a db/ query (the API shares those). Failures a retry cannot fix are non-retryable here.
 */
import { ApplicationFailure, Context } from '@temporalio/activity';
import { type Db } from '../../db';
import { appendAudit } from '../../db/audit';
import { getAgent } from '../../db/agents';
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
  recordRunEvent as writeRunEvent,
  recordScript,
  type ClaimResult,
  type ClaimRunInput,
  type CreateRunInput,
  type RecordDecisionInput,
  type RecordIgnoredInput,
  type RecordOutcomeInput,
  type RecordPhaseInput,
  type RecordPlanInput,
  type RecordRunEventInput,
  type RunOwner,
} from '../../db/runs';
import { scriptSha256 } from '../../db/scripts';
import { hookHashes } from '../../db/hooks';
import { rebootMsOf, type HookSpec } from '../../contract/rollout-policy';
import { getContainer } from '../../db/containers';
import { getWindow, recordWindowFiring } from '../../db/windows';
import { resolveTargets, type SkippedTarget } from '../../db/rollout-create';
import { planApprovalForRun, planGroupOfRun } from '../../db/rollouts';
import type { SignedApproval } from '../../contract/approval';
import { enabledBaselines, firstSeenFor } from '../../db/baselines';
import { coverPlan, type BaselineApproval } from '../../contract/baselines';
import { matchesSelector } from '../../contract/labels';
import { planHash } from '../../contract/plan-hash';
import type { RunEvents } from './webhooks';
import {
  Family,
  resolveRunTimeouts,
  scriptNameFor,
  type ConfigurableTimeouts,
  type PlanPackage,
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
  RecordRunEventInput,
};

/** Issue 12: a hook as the run executes it, its SHA-256 pinned when the run was resolved. */
export type PinnedHook = HookSpec & { sha256: string };

/** A claim, and when it succeeded the approver keys pinned for the run. */
export type ClaimedRun =
  | {
      claimed: true;
      approverKeys: PinnedKey[];
      mayNotApprove: string[];
      /** Issue 12: the run's plan-group rollout (docs/rollouts.md "Approval scope"); absent: none. */
      group?: PlanGroup;
    }
  | Extract<ClaimResult, { claimed: false }>;

/** A plan-group rollout as its runs pin it at claim: whose approval of a plan hash covers them. */
export interface PlanGroup {
  rolloutId: string;
  /** When the rollout was created (epoch ms): a group approval signed before it is stale. */
  since: number;
  /** Who may never give this rollout's group approval (its creator; a window's creator). */
  mayNotApprove: string[];
}

export interface ResolvedRun {
  family: Family;
  scriptName: string;
  sha256: string;
  exclusions: string[];
  /** Issue 12: the run row's hooks, pinned by hash; absent when the run has none. */
  hooks?: { pre?: PinnedHook; post?: PinnedHook };
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
    const group = await planGroupOfRun(db, input.runId);
    return {
      claimed: true,
      approverKeys: await approverKeys(db),
      mayNotApprove: await fourEyesExcluded(db, input.runId),
      // Only when there is one, so runs outside plan-group rollouts record the claim as before.
      ...(group ? { group } : {}),
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
    const row = await getRun(db, input.runId);
    const vmid = row?.container ?? null;
    const family = Family.parse(vmid === null ? agent.family : await containerFamily(input.agentId, vmid));
    const scriptName = scriptNameFor(family);
    const sha256 = await scriptSha256(db, scriptName);
    if (!sha256)
      throw ApplicationFailure.nonRetryable(`no script ${scriptName} for family ${family}`, 'script-not-found');
    // Loaded at plan time, so an exception added or expired since the run started counts.
    const exclusions = await activeExceptionPatterns(db, input.agentId, vmid ?? 0);
    await owned((o) => recordScript(db, o, { scriptName, sha256, exclusions }));
    const hooks = row?.hooks ? await pinHooks(row.hooks) : undefined;
    return { family, scriptName, sha256, exclusions, ...(hooks ? { hooks } : {}) };
  }

  /**
   * The run row's hooks (never the workflow's input) with the SHA-256 each has now: what the agent
   * later runs must hash to exactly this, so a hook replaced after this moment is refused.
   */
  async function pinHooks(specs: { pre?: HookSpec; post?: HookSpec }): Promise<ResolvedRun['hooks']> {
    const names = [specs.pre?.script, specs.post?.script].filter((n): n is string => !!n);
    const hashes = await hookHashes(db, names);
    const pin = (spec: HookSpec | undefined) => {
      if (!spec) return undefined;
      const sha256 = hashes.get(spec.script);
      if (!sha256) throw ApplicationFailure.nonRetryable(`no hook script ${spec.script}`, 'hook-not-found');
      return { ...spec, sha256 };
    };
    const pinned = { pre: pin(specs.pre), post: pin(specs.post) };
    await recordRunEvent({
      runId: owner().runId,
      kind: 'hooks-pinned',
      detail: {
        ...(pinned.pre ? { pre: { script: pinned.pre.script, sha256: pinned.pre.sha256 } } : {}),
        ...(pinned.post ? { post: { script: pinned.post.script, sha256: pinned.post.sha256 } } : {}),
      },
    });
    return {
      ...(pinned.pre ? { pre: pinned.pre } : {}),
      ...(pinned.post ? { post: pinned.post } : {}),
    };
  }

  /** Issue 12: a hook's or a reboot's record on the run (docs/reboot-and-hooks.md). */
  async function recordRunEvent(input: RecordRunEventInput): Promise<void> {
    await owned((o) => writeRunEvent(db, o, input));
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

  /**
   * Issue 12: whether a patch baseline approves this run's plan, before anyone is asked. The run
   * is the row this execution claimed (its agent's labels, its four-eyes rule) — never the
   * workflow's input; the plan is the one the agent just reported, checked against its hash. It
   * is approved only when one baseline matching the agent covers every planned package
   * (contract/baselines.ts); null leaves it to a person. A four-eyes run is never approved by a
   * baseline its requester (or its window's creator) last edited: that would approve their own request.
   */
  async function evaluateBaselines(input: {
    runId: string;
    plan: PlanPackage[];
    planHash: string;
  }): Promise<{ kind: 'approve'; by: string; planHash: string; baseline: BaselineApproval } | null> {
    const o = owner();
    const run = await getRun(db, o.runId);
    if (!run || run.workflow_run_id !== o.workflowRunId || input.runId !== o.runId)
      throw ApplicationFailure.nonRetryable(`run ${o.runId} is not claimed by this execution`, 'run-not-claimed');
    if (run.approval !== 'required' || run.outcome !== null || input.plan.length === 0) return null;
    if (planHash(input.plan) !== input.planHash) return null;
    const agent = await getAgent(db, run.agent_id);
    if (!agent || agent.status !== 'accepted') return null;
    const excluded = new Set(await fourEyesExcluded(db, o.runId));
    const candidates = (await enabledBaselines(db)).filter(
      (b) => matchesSelector(agent.labels ?? {}, b.selector) && !excluded.has(b.updated_by),
    );
    if (candidates.length === 0) return null;
    // A candidate never seen before is seen now (recordPlan stores it so right after).
    const firstSeen = await firstSeenFor(db, o.runId, input.plan);
    const now = new Date();
    for (const b of candidates) {
      const packages = coverPlan(b.rules, input.plan, firstSeen, now);
      if (!packages) continue;
      const by = `baseline:${b.name}`;
      return {
        kind: 'approve',
        by,
        planHash: input.planHash,
        baseline: { baselineId: b.id, baseline: b.name, by, planHash: input.planHash, packages },
      };
    }
    return null;
  }

  /**
   * Issue 12: the plan-group approval recorded for this run's rollout and this plan hash, if any
   * (docs/rollouts.md "Approval scope"). Only fetched here: the workflow checks it — signature,
   * freshness, four-eyes — exactly as an approval sent to it.
   */
  async function planGroupApproval(input: { runId: string; planHash: string }): Promise<SignedApproval | null> {
    const o = owner();
    if (input.runId !== o.runId)
      throw ApplicationFailure.nonRetryable(`run ${input.runId} is not this execution's`, 'run-not-claimed');
    return planApprovalForRun(db, o.runId, input.planHash);
  }

  async function recordDecision(input: RecordDecisionInput): Promise<void> {
    await owned((o) => writeDecision(db, o, input));
    await events?.decision(input);
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
          detail: {
            agentId: input.agentId,
            mode: input.mode,
            approval: input.approval,
            windowId: input.windowId,
            ...(input.reboot ? { reboot: input.reboot } : {}),
            ...(input.hooks ? { hooks: input.hooks } : {}),
          },
          dedupeKey: `run.requested:${input.runId}`,
        });
    });
  }

  /**
   * A firing's targets, resolved now (issue 12): the named agents and every agent the window's
   * selector matches at this moment, recorded in window_firings under the firing's execution
   * (from the activity Context). A window that starts a rollout resolves them when it makes the
   * rollout (startWindowRollout), so this returns no hosts for it.
   */
  async function loadWindowFiring(input: { windowId: string }): Promise<WindowFiring | null> {
    const w = await getWindow(db, input.windowId);
    if (!w) return null; // deleted while its Schedule fired
    const common = {
      windowId: w.id,
      timeouts: {
        ...resolveRunTimeouts(runDefaults),
        ...(w.reboot_policy ? { rebootMs: rebootMsOf(w.reboot_timeout_seconds) } : {}),
      },
      ...(w.reboot_policy && w.reboot_policy !== 'never' ? { reboot: w.reboot_policy } : {}),
      ...(w.hooks ? { hooks: w.hooks } : {}),
      approval: w.approval,
      leadSeconds: w.lead_seconds,
      durationSeconds: w.duration_seconds,
      cutoffSeconds: w.cutoff_seconds,
    };
    if (w.rollout) return { ...common, agents: [], skippedTargets: [], rollout: w.rollout };
    // Only accepted agents (and supported containers their nodes report) are patched; the others
    // are named in the firing's report, with why. Containers: the window's say, else the
    // container's default, else off (run > window > container > off).
    const resolved = await resolveTargets(
      db,
      { agentIds: w.targets.agentIds, selector: w.targets.selector, containers: w.targets.containers },
      { layer: 'window', startIfStopped: w.start_if_stopped, snapshot: w.snapshot },
    );
    const agents = resolved.hosts.filter((h) => h.vmid === 0);
    const containerTargets: WindowFiring['agents'] = resolved.hosts
      .filter((h) => h.vmid !== 0)
      .map((h) => ({ agentId: h.id, hostname: h.hostname, container: h.vmid, options: h.options! }));
    const skippedTargets = resolved.skipped;
    await recordFiring(
      w.id,
      w.targets.selector ?? null,
      agents.map((a) => a.id),
      skippedTargets,
    );
    return {
      ...common,
      agents: [...agents.map((a) => ({ agentId: a.id, hostname: a.hostname })), ...containerTargets],
      skippedTargets,
    };
  }

  /** The firing's record, under the execution Temporal says is running this activity. */
  async function recordFiring(windowId: string, selector: string | null, agentIds: string[], skipped: SkippedTarget[]) {
    const execution = Context.current().info.workflowExecution;
    if (!execution) throw ApplicationFailure.nonRetryable('not scheduled by a workflow', 'not-a-firing');
    await recordWindowFiring(db, {
      workflow_run_id: execution.runId,
      workflow_id: execution.workflowId,
      window_id: windowId,
      selector,
      agent_ids: agentIds,
      skipped_targets: skipped,
    });
  }

  return {
    claimRun,
    resolveRun,
    recordPlan,
    recordDecision,
    evaluateBaselines,
    planGroupApproval,
    recordPhase,
    recordIgnoredDecisions,
    recordOutcome,
    recordRunEvent,
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
