import {
  ActivityFailure,
  ApplicationFailure,
  CancellationScope,
  condition,
  isCancellation,
  sleep,
  proxyActivities,
  proxyLocalActivities,
  setHandler,
  TimeoutFailure,
  upsertSearchAttributes,
} from '@temporalio/workflow';
import { TimeoutType } from '@temporalio/common';
import type * as agentActivities from '../activities/agent/types';
import type * as controlActivities from '../activities/control/types';
import type { IgnoredDecision, PatchRunInput, RunOutcome, RunPhase, RunStatus, ScriptExecution } from '../contract';
import { agentTaskQueue, checkApprove, checkReject } from '../contract/workflow-safe';
import { approveSignal, approveUpdate, DECISION_REFUSED, rejectSignal, rejectUpdate, statusQuery } from './messages';
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

type Decision = { kind: 'approve'; by: string; planHash: string } | { kind: 'reject'; by: string; reason: string };

/**
 * One patch run on one host: plan (dry-run) → review → apply → report.
 * Always returns a named terminal state; never fails as a workflow.
 */
export async function patchRun(input: PatchRunInput): Promise<RunStatus> {
  const { timeouts } = input;
  // Short control-side database writes are local activities in the control worker: no round trip
  // through a task queue, no extra workflow task, no script output copied into history
  // (measured: 8 → 4 workflow tasks a run; docs/benchmark.md).
  const control = proxyLocalActivities<typeof controlActivities>({
    startToCloseTimeout: '30s',
    retry: { initialInterval: '200ms', maximumInterval: '10s', maximumAttempts: 20 },
  });
  const agentOptions = {
    taskQueue: agentTaskQueue(input.agentId),
    // An agent that never picks the task up ends the run as agent-unreachable; the timeout is not retried.
    scheduleToStartTimeout: timeouts.agentPickupMs,
  };
  const agent = proxyActivities<typeof agentActivities>({
    ...agentOptions,
    startToCloseTimeout: '2m',
    retry: {
      initialInterval: '1s',
      maximumInterval: '30s',
      maximumAttempts: 5,
      nonRetryableErrorTypes: ['script-hash-mismatch'],
    },
  });
  const scriptOptions = {
    ...agentOptions,
    startToCloseTimeout: timeouts.scriptMs,
    heartbeatTimeout: timeouts.heartbeatMs * 3,
  };
  // A dry-run changes nothing, so a held package-manager lock, an unreachable mirror or a lost
  // agent is retried with backoff.
  const agentPlan = proxyActivities<typeof agentActivities>({
    ...scriptOptions,
    retry: {
      initialInterval: '10s',
      maximumInterval: '2m',
      maximumAttempts: 6,
      nonRetryableErrorTypes: ['script-hash-mismatch', 'script-missing'],
    },
  });
  // An apply is never retried by Temporal: after an agent died mid-transaction, a second apply
  // would install whatever the mirror offers then, not the plan an admin approved. The run
  // fails and a new run re-plans.
  const agentApply = proxyActivities<typeof agentActivities>({ ...scriptOptions, retry: { maximumAttempts: 1 } });

  const status: RunStatus = {
    runId: input.runId,
    agentId: input.agentId,
    mode: input.mode,
    approval: input.approval,
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
    overran: false,
  };
  const { window } = input;
  let decision: Decision | null = null;
  const unrecorded: IgnoredDecision[] = [];

  // Runs start with PatchPhase=planning (set by whoever starts them). Only the phases a run can
  // dwell in are made visible: each upsert is a visibility write on the server, which is what
  // bounds fleet throughput (docs/benchmark.md).
  const setPhase = (phase: RunPhase) => {
    status.phase = phase;
    if (phase === 'awaiting-approval' || phase === 'applying')
      upsertSearchAttributes([{ key: PatchPhase, value: phase }]);
  };

  const refuse = (kind: 'approve' | 'reject', reason: string, payload: unknown) => {
    const ignored = { at: new Date().toISOString(), kind, reason, payload };
    status.ignoredDecisions.push(ignored);
    unrecorded.push(ignored);
  };
  const awaiting = () => status.phase === 'awaiting-approval' && decision === null;

  setHandler(statusQuery, () => status);
  setHandler(
    approveUpdate,
    (d) => {
      decision = { kind: 'approve', by: d.by, planHash: d.planHash };
      return status;
    },
    {
      validator: (d) => {
        const checked = checkApprove(d);
        if (!checked.ok)
          throw ApplicationFailure.create({ type: DECISION_REFUSED.malformed, message: checked.problem });
        if (!awaiting())
          throw ApplicationFailure.create({
            type: DECISION_REFUSED.notAwaiting,
            message: `run is ${status.outcome ?? status.phase}, not awaiting approval`,
          });
        if (d.planHash !== status.planHash)
          throw ApplicationFailure.create({
            type: DECISION_REFUSED.stalePlan,
            message: `plan hash ${d.planHash} is not the current plan ${status.planHash}`,
          });
      },
    },
  );
  setHandler(
    rejectUpdate,
    (d) => {
      decision = { kind: 'reject', by: d.by, reason: d.reason };
      return status;
    },
    {
      validator: (d) => {
        const checked = checkReject(d);
        if (!checked.ok)
          throw ApplicationFailure.create({ type: DECISION_REFUSED.malformed, message: checked.problem });
        if (!awaiting())
          throw ApplicationFailure.create({
            type: DECISION_REFUSED.notAwaiting,
            message: `run is ${status.outcome ?? status.phase}, not awaiting approval`,
          });
      },
    },
  );
  // Signals cannot be refused synchronously: a stale or malformed one is recorded and ignored.
  setHandler(approveSignal, (raw) => {
    const checked = checkApprove(raw);
    if (!checked.ok) return refuse('approve', `malformed: ${checked.problem}`, raw);
    if (!awaiting()) return refuse('approve', `run is ${status.outcome ?? status.phase}, not awaiting approval`, raw);
    if (checked.value.planHash !== status.planHash)
      return refuse('approve', `stale plan hash (current plan is ${status.planHash})`, raw);
    decision = { kind: 'approve', ...checked.value };
  });
  setHandler(rejectSignal, (raw) => {
    const checked = checkReject(raw);
    if (!checked.ok) return refuse('reject', `malformed: ${checked.problem}`, raw);
    if (!awaiting()) return refuse('reject', `run is ${status.outcome ?? status.phase}, not awaiting approval`, raw);
    decision = { kind: 'reject', ...checked.value };
  });

  const flushIgnored = async () => {
    while (unrecorded.length > 0) {
      const ignored = unrecorded.shift()!;
      await control.recordEvent({ runId: input.runId, kind: `ignored-${ignored.kind}`, detail: ignored });
    }
  };

  /**
   * Run the script in a mode on the host; agent failures become named outcomes. hash-verify runs
   * once a run (script-execute re-checks the stored file's hash before every execution anyway),
   * and again only if the agent lost the file since.
   */
  let verified = false;
  const execute = async (sha256: string, scriptName: string, mode: 'dry-run' | 'apply'): Promise<ScriptExecution> => {
    const proxy = mode === 'apply' ? agentApply : agentPlan;
    const run = () =>
      proxy.scriptExecute({
        runId: input.runId,
        sha256,
        mode,
        exclusions: status.exclusions,
        heartbeatMs: timeouts.heartbeatMs,
      });
    if (!verified) {
      await agent.hashVerify({ scriptName, sha256 });
      verified = true;
      return run();
    }
    try {
      return await run();
    } catch (err) {
      if (!(
        err instanceof ActivityFailure &&
        err.cause instanceof ApplicationFailure &&
        err.cause.type === 'script-missing'
      ))
        throw err;
      await agent.hashVerify({ scriptName, sha256 });
      return run();
    }
  };

  /** A run that has not started applying by the window's cutoff never starts. */
  const beforeCutoff = () => {
    if (window && Date.now() > window.applyBy) {
      throw new RunEnded(
        'skipped-window-closed',
        `apply had not started by the window cutoff ${new Date(window.applyBy).toISOString()}`,
      );
    }
  };
  /** Wait for the window to open (pre-approved plans are made before it). */
  const enterWindow = async () => {
    if (window && Date.now() < window.startsAt) await sleep(window.startsAt - Date.now());
    beforeCutoff();
  };

  const finish = async (outcome: RunOutcome, reason: string | null, execution: ScriptExecution | null) => {
    status.outcome = outcome;
    status.failureReason = reason;
    status.phase = 'done';
    upsertSearchAttributes([
      { key: PatchPhase, value: 'done' },
      { key: PatchOutcome, value: outcome },
    ]);
    await CancellationScope.nonCancellable(async () => {
      await flushIgnored();
      await control.recordOutcome({
        runId: input.runId,
        outcome,
        failureReason: reason,
        execution,
        overran: status.overran,
      });
    });
    return status;
  };

  try {
    setPhase('planning');
    const resolved = await control.resolveRun({ runId: input.runId, agentId: input.agentId });
    status.exclusions = resolved.exclusions;

    const plan = await execute(resolved.sha256, resolved.scriptName, 'dry-run');
    if (plan.exitCode !== 0 || !plan.result) {
      throw new RunEnded(
        'failed',
        `dry-run exited ${plan.exitCode}${plan.result?.error ? `: ${plan.result.error.message}` : ''}`,
        plan,
      );
    }
    status.plan = plan.result.packages;
    status.held = plan.result.held;
    status.planHash = plan.planHash;

    const nothingToDo = plan.result.packages.length === 0;
    if (input.mode === 'dry-run' || nothingToDo) {
      await control.recordPlan({ runId: input.runId, step: 'plan', execution: plan, phase: 'reporting' });
      return await finish('completed', nothingToDo && input.mode === 'apply' ? 'nothing to apply' : null, plan);
    }

    if (input.approval === 'required') {
      // Accept decisions from here on: once the API shows the plan, the workflow already waits for it.
      setPhase('awaiting-approval');
      await control.recordPlan({ runId: input.runId, step: 'plan', execution: plan, phase: 'awaiting-approval' });
      // In a pre-approved window the plan must be approved by window start.
      const deadline = window ? window.startsAt : Date.now() + timeouts.approvalMs;
      while (decision === null) {
        const remaining = deadline - Date.now();
        if (remaining <= 0) break;
        await condition(() => decision !== null || unrecorded.length > 0, remaining);
        await flushIgnored();
      }
      const made = decision as Decision | null;
      if (made === null) {
        if (window)
          throw new RunEnded(
            'skipped-unapproved',
            `plan not approved by window start ${new Date(window.startsAt).toISOString()}`,
          );
        throw new RunEnded('expired', `no decision within ${timeouts.approvalMs} ms`);
      }
      if (made.kind === 'reject') {
        status.rejectedBy = made.by;
        await control.recordDecision({
          runId: input.runId,
          kind: 'reject',
          by: made.by,
          reason: made.reason,
          planHash: status.planHash,
          phase: 'done',
        });
        throw new RunEnded('rejected', made.reason);
      }
      status.approvedBy = made.by;
      await control.recordDecision({
        runId: input.runId,
        kind: 'approve',
        by: made.by,
        reason: null,
        planHash: made.planHash,
        phase: 'applying',
      });
      setPhase('applying');
      await enterWindow();

      // What an admin approved is exactly what gets installed: re-plan, stop on any drift.
      const replan = await execute(resolved.sha256, resolved.scriptName, 'dry-run');
      if (replan.exitCode !== 0 || !replan.result)
        throw new RunEnded('failed', `re-plan exited ${replan.exitCode}`, replan);
      if (replan.planHash !== made.planHash) {
        await control.recordPlan({ runId: input.runId, step: 'replan', execution: replan, phase: 'reporting' });
        throw new RunEnded(
          'plan-drift',
          `plan changed since approval (${made.planHash} → ${replan.planHash}); re-approval needed`,
          null,
        );
      }
    } else {
      // auto: the plan was made a moment ago and nobody reviews it, so no re-plan.
      await control.recordPlan({ runId: input.runId, step: 'plan', execution: plan, phase: 'applying' });
      setPhase('applying');
      await enterWindow();
    }

    beforeCutoff();
    const applied = await execute(resolved.sha256, resolved.scriptName, 'apply');
    // Never kill a package manager mid-transaction: a late apply finishes and is flagged.
    if (window && Date.now() > window.endsAt) status.overran = true;
    setPhase('reporting');
    if (applied.exitCode !== 0 || !applied.result) {
      const why = applied.result?.error
        ? `${applied.result.error.code}: ${applied.result.error.message}`
        : 'no result document';
      return await finish('failed', `apply exited ${applied.exitCode} (${why})`, applied);
    }
    return await finish('completed', null, applied);
  } catch (err) {
    if (err instanceof RunEnded) return await finish(err.outcome, err.reason, err.execution);
    if (isCancellation(err)) return await finish('cancelled', 'cancelled by request', null);
    if (err instanceof ActivityFailure) {
      const cause = err.cause;
      if (cause instanceof TimeoutFailure && cause.timeoutType === TimeoutType.SCHEDULE_TO_START) {
        return await finish(
          'agent-unreachable',
          `agent ${input.agentId} did not pick up ${err.activityType} within ${timeouts.agentPickupMs} ms`,
          null,
        );
      }
      if (cause instanceof ApplicationFailure && cause.type) {
        return await finish('failed', `${cause.type}: ${cause.message}`, null);
      }
      return await finish('failed', `${err.activityType}: ${cause?.message ?? err.message}`, null);
    }
    throw err;
  }
}
