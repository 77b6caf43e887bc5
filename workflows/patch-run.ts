import {
  ActivityFailure,
  ApplicationFailure,
  CancellationScope,
  condition,
  isCancellation,
  patched,
  setHandler,
  sleep,
  TimeoutFailure,
  upsertSearchAttributes,
} from '@temporalio/workflow';
import { TimeoutType } from '@temporalio/common';
import type { PatchRunInput, RunOutcome, RunPhase, RunStatus, ScriptExecution } from '../contract';
import { agentFor, control, controlBySignal, type PinnedScript } from './activities';
import { hostTurns } from './host-lock';
import { hostSteps } from './host-steps';
import type { PinnedHook } from '../activities/control';
import type { PinnedKey } from '../contract/approval';
import { agentRevokedSignal, approverKeysWithdrawnSignal } from './messages';
import { openReview, type GroupTrust } from './review';
import { PatchOutcome, PatchPhase } from './search-attributes';

/** Ends the run early with a named outcome; caught once at the top of the workflow. */
class RunEnded extends Error {
  constructor(
    readonly outcome: RunOutcome,
    readonly reason: string | null,
    readonly execution: ScriptExecution | null = null,
  ) {
    super(`${outcome}${reason ? `: ${reason}` : ''}`);
  }
}

/**
 * One patch run on one host: plan (dry-run) → review → apply → report.
 * Always returns a named terminal state; never fails as a workflow.
 */
export async function patchRun(input: PatchRunInput): Promise<RunStatus> {
  const { runId, window } = input;
  const status = initialStatus(input);
  // Approver keys are pinned by the claim (never taken from the input); until then none count.
  let approverKeys: readonly PinnedKey[] = [];
  let planAt = Infinity;
  // Four-eyes, also from the row (the claim): who may not approve this run, whatever path the approval takes.
  let mayNotApprove: readonly string[] = [];
  // Issue 12: the plan-group rollout this run belongs to, from its claim (never the input).
  let group: GroupTrust | null = null;
  const review = openReview(
    status,
    (ignored, dropped) => controlBySignal.recordIgnoredDecisions({ runId, ignored, dropped }),
    () => ({ keys: approverKeys, planAt, mayNotApprove, group }),
  );
  const execute = agentFor(input, () => status.exclusions);
  const steps = hostSteps(input);
  const host = hostTurns(input, async (queue) => {
    setPhase(status, 'queued');
    await controlBySignal.recordPhase({ runId, phase: 'queued', queue });
  });
  const revocation = onAgentRevoked(status);

  // Keys withdrawn while the run lives (revoked, owner disabled): never counted again, whenever they arrive.
  const withdrawn = new Set<string>();
  setHandler(approverKeysWithdrawnSignal, (raw: unknown) => {
    const ids = (raw as { keyIds?: unknown } | null)?.keyIds;
    if (!Array.isArray(ids)) return;
    for (const id of ids.slice(0, 1000)) if (typeof id === 'string') withdrawn.add(id);
    approverKeys = approverKeys.filter((k) => !withdrawn.has(k.keyId));
  });

  // 0. Trust nothing in the input the API (or the window) did not write: claim the run's row
  // before the host lock, any agent activity or any other write.
  // Not cancellable: a cancel (or revocation) that arrives now is seen by the first step after it,
  // once the run owns its row and can record how it ended.
  const claim = await CancellationScope.nonCancellable(() =>
    control.claimRun({
      runId,
      agentId: input.agentId,
      mode: input.mode,
      approval: input.approval,
      ...(input.securityOnly === true ? { securityOnly: true } : {}),
      windowId: window?.windowId ?? null,
      windowStart: window?.startsAt ?? null,
      container: input.container?.vmid ?? null,
      ...(input.container
        ? { startIfStopped: input.container.startIfStopped, snapshot: input.container.snapshot }
        : {}),
      // Issue 12: only when asked for, so runs without them claim exactly as before.
      ...(input.reboot && input.reboot !== 'never' ? { reboot: input.reboot } : {}),
      ...(input.hooks ? { hooks: input.hooks } : {}),
    }),
  );
  if (!claim.claimed) return untrusted(claim.reason);
  // A run claimed by a worker from before signed approvals pinned no keys (its recorded claim has
  // none): it can be rejected or cancelled, never approved.
  approverKeys = (claim.approverKeys ?? []).filter((k) => !withdrawn.has(k.keyId));
  mayNotApprove = claim.mayNotApprove ?? [];
  group = claim.group ?? null;

  try {
    setPhase(status, 'planning');
    const script = await control.resolveRun({ runId, agentId: input.agentId });
    status.exclusions = script.exclusions;

    // 1. Plan, with the host to ourselves (one run's scripts at a time per host).
    await takeHost('planning');
    const plan = await planned(script, 'dry-run');
    status.plan = plan.result!.packages;
    status.held = plan.result!.held;
    status.planHash = plan.planHash;
    planAt = Date.now();
    const nothingToDo = status.plan.length === 0;
    if (input.mode === 'dry-run' || nothingToDo) {
      await control.recordPlan({ runId, step: 'plan', execution: plan, phase: 'reporting' });
      return await finish('completed', nothingToDo && input.mode === 'apply' ? 'nothing to apply' : null, plan);
    }

    // 2. Review: a person approves exactly this plan (or policy does).
    if (input.approval === 'required') {
      await host.release(); // nobody waits for a host while a person reviews
      // Issue 12: a patch baseline may approve the plan before anyone is asked (behind a patch
      // marker: runs recorded before it replay without the evaluation). Not a person: no signature.
      const byBaseline = patched('baseline-approval')
        ? await control.evaluateBaselines({ runId, plan: status.plan, planHash: plan.planHash! })
        : null;
      // Issue 12: in a plan-group rollout, an approval of this exact plan for the whole rollout
      // (only runs whose claim pinned a group take this step, so other runs replay as before).
      const groupApproval = () => controlBySignal.planGroupApproval({ runId, planHash: plan.planHash! });
      const byGroup = !byBaseline && group !== null ? review.standing(await groupApproval()) : null;
      if (byBaseline || byGroup) {
        await control.recordPlan({ runId, step: 'plan', execution: plan, phase: 'applying' });
      } else {
        // Accept decisions from here on: once the API shows the plan, the workflow already waits for it.
        setPhase(status, 'awaiting-approval');
        await control.recordPlan({ runId, step: 'plan', execution: plan, phase: 'awaiting-approval' });
        // A group approval recorded between the look above and the phase write reached no one
        // (the API delivers only to runs it sees waiting): look once more, now that we wait.
        if (group !== null) {
          const late = await groupApproval();
          if (late) review.offer(late);
        }
      }
      // In a pre-approved window the plan must be approved by window start.
      const decision =
        byBaseline ??
        byGroup ??
        (await review.waitForDecision(window ? window.startsAt : Date.now() + input.timeouts.approvalMs));
      if (decision === null) {
        if (window)
          throw new RunEnded('skipped-unapproved', `plan not approved by window start ${iso(window.startsAt)}`);
        throw new RunEnded('expired', `no decision within ${input.timeouts.approvalMs} ms`);
      }
      const { kind, by } = decision;
      const reason = kind === 'reject' ? decision.reason : null;
      await control.recordDecision({
        runId,
        kind,
        by,
        reason,
        // The signed statement exactly as signed (without the workflow's `kind`).
        approval:
          decision.kind === 'approve' && !('baseline' in decision)
            ? {
                runId: decision.runId,
                planHash: decision.planHash,
                by,
                at: decision.at,
                keyId: decision.keyId,
                signature: decision.signature,
              }
            : null,
        ...('baseline' in decision ? { baseline: decision.baseline } : {}),
        planHash: status.planHash,
        phase: kind === 'reject' ? 'done' : 'applying',
      });
      if (decision.kind === 'reject') {
        status.rejectedBy = by;
        throw new RunEnded('rejected', decision.reason);
      }
      status.approvedBy = by;
      setPhase(status, 'applying');
      await enterWindow();
      await takeHost('applying');
      // What an admin approved is exactly what gets installed: re-plan, stop on any drift.
      const replan = await planned(script, 're-plan');
      if (replan.planHash !== decision.planHash) {
        await control.recordPlan({ runId, step: 'replan', execution: replan, phase: 'reporting' });
        throw new RunEnded(
          'plan-drift',
          `plan changed since approval (${decision.planHash} → ${replan.planHash}); re-approval needed`,
        );
      }
    } else {
      // auto: the plan was made a moment ago and nobody reviews it, so no re-plan.
      await control.recordPlan({ runId, step: 'plan', execution: plan, phase: 'applying' });
      setPhase(status, 'applying');
      await enterWindow();
    }

    // Issue 12: the pre-hook (drain, stop a service) with the host ours, just before the apply.
    if (script.hooks?.pre) await runHook(script.hooks.pre, 'pre', null);

    // 3. Apply. A package manager is never interrupted: a cancel that arrives now is deferred
    // until the apply has finished, and the run then reports what really happened.
    beforeCutoff();
    const applied = await Promise.race([
      CancellationScope.nonCancellable(() => execute(script, 'apply')),
      // A revoked agent's answer can no longer be trusted (and the gate refuses it): stop waiting.
      revocation.during('apply result unknown: agent revoked while applying'),
    ]);
    // Never kill a package manager mid-transaction: a late apply finishes and is flagged.
    if (window && Date.now() > window.endsAt) status.overran = true;
    setPhase(status, 'reporting');

    // 4. Report.
    if (applied.exitCode !== 0 || !applied.result) {
      const why = applied.result?.error
        ? `${applied.result.error.code}: ${applied.result.error.message}`
        : 'no result document';
      return await finish('failed', `apply exited ${applied.exitCode} (${why})`, applied);
    }
    const cancelNote =
      CancellationScope.current().consideredCancelled && revocation.by === null
        ? 'cancel requested during apply; the apply was not interrupted'
        : null;
    // Issue 12: reboot (host still ours: no other run starts there meanwhile), then the post-hook.
    const policy = input.reboot ?? 'never';
    if (policy === 'always' || (policy === 'if-needed' && applied.result.reboot_required)) {
      await rebootHost(applied);
      // Reboot time is the host's window time too.
      if (window && Date.now() > window.endsAt) status.overran = true;
    }
    if (script.hooks?.post) await runHook(script.hooks.post, 'post', applied);
    return await finish('completed', cancelNote, applied);
  } catch (err) {
    // No failure escapes a run: whatever was thrown, the run ends in a named outcome.
    const ended = revocation.by !== null ? revocation.ended(err) : asRunEnded(err, input);
    return await finish(ended.outcome, ended.reason, ended.execution);
  }

  /**
   * A run whose row is not its own ends here: nothing executed, nothing written (there is no row
   * of its own to write to), the outcome shown only in Temporal's visibility and its result.
   */
  function untrusted(reason: string) {
    status.outcome = 'untrusted-input';
    status.failureReason = reason;
    status.phase = 'done';
    upsertSearchAttributes([
      { key: PatchPhase, value: 'done' },
      { key: PatchOutcome, value: 'untrusted-input' },
    ]);
    return status;
  }

  /**
   * Issue 12: verify (hash, signature) and run a hook on the host. A hook that cannot be verified
   * is never executed and counts as failed; a failed must-succeed hook ends the run (pre: before
   * anything was applied; post: after), an ignore-failure one is recorded only.
   */
  async function runHook(hook: PinnedHook, phase: 'pre' | 'post', applied: ScriptExecution | null) {
    let detail: Record<string, unknown>;
    let failed: string | null;
    try {
      await steps.verify({ scriptName: hook.script, sha256: hook.sha256, kind: 'hook' });
      const h = await steps.hookExecute(hook.timeoutSeconds)({
        runId,
        sha256: hook.sha256,
        phase,
        timeoutSeconds: hook.timeoutSeconds,
        heartbeatMs: input.timeouts.heartbeatMs,
      });
      failed = h.timedOut
        ? `timed out after ${hook.timeoutSeconds} s`
        : h.exitCode !== 0
          ? `exited ${h.exitCode}`
          : null;
      detail = { ...h };
    } catch (err) {
      if (isCancellation(err)) throw err;
      const cause = err instanceof ActivityFailure ? err.cause : err;
      failed = `not run: ${cause instanceof ApplicationFailure && cause.type ? `${cause.type}: ` : ''}${
        (cause as Error)?.message ?? String(cause)
      }`;
      detail = { executed: false };
    }
    await control.recordRunEvent({
      runId,
      kind: phase === 'pre' ? 'pre-hook' : 'post-hook',
      detail: { script: hook.script, sha256: hook.sha256, onFailure: hook.onFailure, failed, ...detail },
    });
    if (failed === null || hook.onFailure === 'ignore-failure') return;
    throw phase === 'pre'
      ? new RunEnded('skipped-pre-hook-failed', `pre-hook ${hook.script} ${failed}; nothing applied`)
      : new RunEnded('post-hook-failed', `post-hook ${hook.script} ${failed}`, applied);
  }

  /**
   * Issue 12: reboot the host once and wait for it to come back with a new boot id, within the
   * reboot timeout. The reboot activity is not cancellable (a scheduled reboot happens anyway).
   */
  async function rebootHost(applied: ScriptExecution) {
    const deadline = Date.now() + steps.rebootMs;
    const asked = await CancellationScope.nonCancellable(() => steps.reboot({ runId }));
    const before = asked.bootId;
    await control.recordRunEvent({
      runId,
      kind: 'reboot-scheduled',
      detail: { policy: input.reboot, bootId: before, scheduled: asked.scheduled },
    });
    const pollMs = Math.max(500, Math.min(15_000, Math.floor(steps.rebootMs / 20)));
    for (let left = deadline - Date.now(); left > 0; left = deadline - Date.now()) {
      await sleep(Math.min(pollMs, left));
      const remaining = deadline - Date.now();
      if (remaining < 500) break;
      let now: string;
      try {
        now = (await steps.bootId(remaining)).bootId;
      } catch (err) {
        if (isCancellation(err)) throw err;
        break; // not back in time (timeouts), or the boot id cannot be read: the host did not come back as expected
      }
      if (now !== before) {
        status.rebooted = true;
        await control.recordRunEvent({ runId, kind: 'rebooted', detail: { bootIdBefore: before, bootIdAfter: now } });
        return;
      }
    }
    await control.recordRunEvent({
      runId,
      kind: 'reboot-timeout',
      detail: { bootId: before, timeoutMs: steps.rebootMs },
    });
    throw new RunEnded(
      'reboot-timeout',
      `host did not come back with a new boot id within ${steps.rebootMs} ms of the reboot`,
      applied,
    );
  }

  /** Wait for this run's turn on its host; a run that had to queue says so, then moves on. */
  async function takeHost(then: RunPhase) {
    await host.acquire();
    if (status.phase !== 'queued') return;
    setPhase(status, then);
    await controlBySignal.recordPhase({ runId, phase: then });
  }

  /** A dry-run that must have produced a plan; anything else ends the run `failed`. */
  async function planned(script: PinnedScript, step: 'dry-run' | 're-plan'): Promise<ScriptExecution> {
    const e = await execute(script, 'dry-run', step === 're-plan' ? 'replan' : 'plan');
    if (e.exitCode !== 0 || !e.result) {
      throw new RunEnded(
        'failed',
        `${step} exited ${e.exitCode}${e.result?.error ? `: ${e.result.error.message}` : ''}`,
        e,
      );
    }
    return e;
  }

  /** A run that has not started applying by the window's cutoff never starts. */
  function beforeCutoff() {
    if (window && Date.now() > window.applyBy) {
      throw new RunEnded('skipped-window-closed', `apply had not started by the window cutoff ${iso(window.applyBy)}`);
    }
  }

  /** Wait for the window to open (pre-approved plans are made before it). */
  async function enterWindow() {
    if (window && Date.now() < window.startsAt) await sleep(window.startsAt - Date.now());
    beforeCutoff();
  }

  /**
   * Record the outcome, then show it in Temporal's visibility: control writes retry until the
   * database answers, so the row and the search attributes end up saying the same thing.
   */
  async function finish(outcome: RunOutcome, reason: string | null, execution: ScriptExecution | null) {
    status.outcome = outcome;
    status.failureReason = reason;
    status.phase = 'done';
    await CancellationScope.nonCancellable(async () => {
      await host.release();
      await review.flushIgnored();
      await control.recordOutcome({ runId, outcome, failureReason: reason, execution, overran: status.overran });
    });
    upsertSearchAttributes([
      { key: PatchPhase, value: 'done' },
      { key: PatchOutcome, value: outcome },
    ]);
    return status;
  }
}

/**
 * The agentRevoked signal: the API sends it to every open run of an agent it revokes. Whatever
 * the run waits on (its host, the agent's dry-run, a review, the window) is cancelled and the run
 * ends `agent-revoked`; an apply is not cancelled (it is never interrupted) but no longer waited
 * for (`during`). Once the run is finishing, a revocation changes nothing.
 */
function onAgentRevoked(status: RunStatus) {
  const root = CancellationScope.current();
  let by: string | null = null;
  setHandler(agentRevokedSignal, (raw: unknown) => {
    if (by !== null || status.outcome !== null) return;
    const who = (raw as { by?: unknown } | null)?.by;
    by = typeof who === 'string' && who.length > 0 ? who.slice(0, 200) : 'unknown';
    root.cancel(); // as a cancel request would: every cancellable wait ends at once
  });
  const named = (reason: string | null) => {
    const who = `agent ${status.agentId} revoked by ${by ?? 'unknown'}`;
    return new RunEnded('agent-revoked', reason ? `${reason} (${who})` : who);
  };
  return {
    get by() {
      return by;
    },
    /** Settles only by throwing, once the agent is revoked: race it against what must not be cancelled. */
    during: (reason: string): Promise<never> =>
      CancellationScope.nonCancellable(() => condition(() => by !== null)).then(() => {
        throw named(reason);
      }),
    /** The outcome of a run whose agent was revoked, whatever ended its wait. */
    ended: (err: unknown): RunEnded => (err instanceof RunEnded && err.outcome === 'agent-revoked' ? err : named(null)),
  };
}

function initialStatus(input: PatchRunInput): RunStatus {
  const { runId, agentId, mode, approval } = input;
  return {
    ...{ runId, agentId, mode, approval },
    phase: 'pending',
    outcome: null,
    failureReason: null,
    planHash: null,
    plan: [],
    held: [],
    exclusions: [],
    approvedBy: null,
    rejectedBy: null,
    ignoredDecisions: [],
    ignoredDecisionsDropped: 0,
    overran: false,
  };
}

/**
 * Runs start with PatchPhase=planning (set by whoever starts them). Only the phases a run can
 * dwell in are made visible: each upsert is a visibility write on the server, which is what
 * bounds fleet throughput (docs/benchmark.md).
 */
function setPhase(status: RunStatus, phase: RunPhase) {
  status.phase = phase;
  if (phase === 'queued' || phase === 'awaiting-approval' || phase === 'applying') {
    upsertSearchAttributes([{ key: PatchPhase, value: phase }]);
  }
}

/** The named outcome an error ends the run with. */
function asRunEnded(err: unknown, input: PatchRunInput): RunEnded {
  if (err instanceof RunEnded) return err;
  if (isCancellation(err)) return new RunEnded('cancelled', 'cancelled by request');
  // resolveRun found the agent revoked (a run that started as its agent was being revoked).
  const refusal = err instanceof ActivityFailure ? err.cause : err;
  if (refusal instanceof ApplicationFailure && refusal.type === 'agent-revoked')
    return new RunEnded('agent-revoked', refusal.message);
  // The container left the node, is stopped or stays locked (from the control side or the agent).
  if (refusal instanceof ApplicationFailure && refusal.type && refusal.type in CONTAINER_OUTCOMES)
    return new RunEnded(CONTAINER_OUTCOMES[refusal.type], refusal.message);
  // A failed local (control) activity surfaces as the failure itself, not as an ActivityFailure.
  if (!(err instanceof ActivityFailure)) {
    const e =
      err instanceof ApplicationFailure && err.type
        ? `${err.type}: ${err.message}`
        : String((err as Error)?.message ?? err);
    return new RunEnded('failed', `internal: ${e}`);
  }
  const cause = err.cause;
  if (cause instanceof TimeoutFailure && cause.timeoutType === TimeoutType.SCHEDULE_TO_START) {
    return new RunEnded(
      'agent-unreachable',
      `agent ${input.agentId} did not pick up ${err.activityType} within ${input.timeouts.agentPickupMs} ms`,
    );
  }
  if (cause instanceof ApplicationFailure && cause.type)
    return new RunEnded('failed', `${cause.type}: ${cause.message}`);
  return new RunEnded('failed', `${err.activityType}: ${cause?.message ?? err.message}`);
}

const iso = (ms: number) => new Date(ms).toISOString();

/** A container's state that ends a run in an outcome of its own (docs/proxmox.md). */
const CONTAINER_OUTCOMES: Record<string, RunOutcome> = {
  'container-gone': 'container-gone',
  'container-stopped': 'skipped-container-stopped',
  'container-locked': 'skipped-container-locked',
};
