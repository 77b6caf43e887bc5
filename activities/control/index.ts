import { ApplicationFailure } from '@temporalio/activity';
import type { Knex } from 'knex';
import {
  Family,
  resolveRunTimeouts,
  scriptNameFor,
  type ApprovalPolicy,
  type ConfigurableTimeouts,
  type IgnoredDecision,
  type RunMode,
  type RunOutcome,
  type RunPhase,
  type ScriptExecution,
  type WindowFiring,
} from '../../contract';

export interface ResolvedRun {
  family: Family;
  scriptName: string;
  sha256: string;
  exclusions: string[];
}

export interface RecordPlanInput {
  runId: string;
  step: 'plan' | 'replan';
  execution: ScriptExecution;
  phase: RunPhase;
}

export interface RecordDecisionInput {
  runId: string;
  kind: 'approve' | 'reject';
  by: string;
  reason: string | null;
  planHash: string | null;
  phase: RunPhase;
}

export interface RecordOutcomeInput {
  runId: string;
  outcome: RunOutcome;
  failureReason: string | null;
  execution: ScriptExecution | null;
  overran: boolean;
}

export interface RecordPhaseInput {
  runId: string;
  phase: RunPhase;
  queue?: { position: number; holder: string };
}

export interface RecordIgnoredInput {
  runId: string;
  ignored: IgnoredDecision[];
  dropped: number;
}

const IGNORED_KINDS = ['ignored-approve', 'ignored-reject', 'ignored-decisions-dropped'];

export interface CreateRunInput {
  runId: string;
  agentId: string;
  mode: RunMode;
  approval: ApprovalPolicy;
  requestedBy: string;
  windowId?: string;
  windowStart?: number;
}

/** The one place patch_runs rows are born, for API-started and window-started runs alike. */
export async function insertRunRows(db: Knex, inputs: CreateRunInput[]): Promise<Record<string, unknown>[]> {
  if (inputs.length === 0) return [];
  return db('patch_runs')
    .insert(
      inputs.map((input) => ({
        id: input.runId,
        agent_id: input.agentId,
        mode: input.mode,
        approval: input.approval,
        phase: 'pending',
        requested_by: input.requestedBy,
        window_id: input.windowId ?? null,
        window_start: input.windowStart ? new Date(input.windowStart) : null,
      })),
    )
    .onConflict('id')
    .merge(['updated_at']) // idempotent under activity retries
    .returning('*');
}

/** Patterns a run must exclude now: this agent's package exceptions that have not expired. */
async function activeExceptionPatterns(db: Knex, agentId: string): Promise<string[]> {
  const rows = await db('package_exceptions')
    .where({ agent_id: agentId })
    .andWhere((w) => w.whereNull('expires_at').orWhere('expires_at', '>', db.fn.now()))
    .orderBy('package')
    .select('package');
  return rows.map((r) => r.package as string);
}

/**
 * Control-side activities: everything a run reads from or writes to the database. `runDefaults`
 * are the configured timeouts (PATCHNANNY_*_TIMEOUT_MS), which window runs start from.
 */
export function createControlActivities(db: Knex, runDefaults: ConfigurableTimeouts) {
  async function resolveRun(input: { runId: string; agentId: string }): Promise<ResolvedRun> {
    const agent = await db('agents').where({ id: input.agentId }).first('family');
    if (!agent) throw ApplicationFailure.nonRetryable(`unknown agent ${input.agentId}`, 'unknown-agent');
    const family = Family.parse(agent.family);
    const scriptName = scriptNameFor(family);
    const script = await db('scripts').where({ name: scriptName }).first('sha256');
    if (!script)
      throw ApplicationFailure.nonRetryable(`no script ${scriptName} for family ${family}`, 'script-not-found');
    // Loaded at plan time, so an exception added or expired since the run started counts.
    const exclusions = await activeExceptionPatterns(db, input.agentId);
    await db('patch_runs')
      .where({ id: input.runId })
      .update({
        script_name: scriptName,
        script_sha256: script.sha256,
        exclusions: JSON.stringify(exclusions),
        updated_at: db.fn.now(),
      });
    return { family, scriptName, sha256: script.sha256, exclusions };
  }

  async function recordOutput(trx: Knex.Transaction, runId: string, step: string, e: ScriptExecution) {
    await trx('run_output').insert({
      run_id: runId,
      step,
      argv: JSON.stringify(e.argv),
      exit_code: e.exitCode,
      stdout: e.stdout,
      stderr: e.stderr,
      duration_ms: e.durationMs,
    });
  }

  async function recordPlan(input: RecordPlanInput): Promise<void> {
    const { execution: e } = input;
    await db.transaction(async (trx) => {
      // Idempotent under activity retries: a step's rows are replaced, not appended.
      await trx('run_output').where({ run_id: input.runId, step: input.step }).delete();
      await recordOutput(trx, input.runId, input.step, e);
      if (input.step === 'plan') {
        await trx('run_packages').where({ run_id: input.runId }).whereIn('kind', ['planned', 'held']).delete();
        const rows = [
          ...(e.result?.packages ?? []).map((p) => ({ ...p, kind: 'planned' })),
          ...(e.result?.held ?? []).map((p) => ({ ...p, kind: 'held' })),
        ].map((p) => ({
          run_id: input.runId,
          kind: p.kind,
          name: p.name,
          arch: p.arch,
          current: p.current,
          candidate: p.candidate,
          repo: p.repo,
          action: p.action,
        }));
        if (rows.length > 0) await trx('run_packages').insert(rows);
        await trx('patch_runs')
          .where({ id: input.runId })
          .update({ plan_hash: e.planHash, phase: input.phase, updated_at: trx.fn.now() });
      } else {
        await trx('patch_runs').where({ id: input.runId }).update({ phase: input.phase, updated_at: trx.fn.now() });
      }
    });
  }

  async function recordDecision(input: RecordDecisionInput): Promise<void> {
    await db.transaction(async (trx) => {
      const update =
        input.kind === 'approve'
          ? { approved_by: input.by, approved_at: trx.fn.now() }
          : { rejected_by: input.by, reject_reason: input.reason };
      await trx('patch_runs')
        .where({ id: input.runId })
        .update({ ...update, phase: input.phase, updated_at: trx.fn.now() });
      // Idempotent: a local activity can run again when its workflow task is retried.
      const kind = input.kind === 'approve' ? 'approved' : 'rejected';
      await trx('run_events').where({ run_id: input.runId, kind }).delete();
      await trx('run_events').insert({
        run_id: input.runId,
        kind,
        detail: JSON.stringify({ by: input.by, reason: input.reason, planHash: input.planHash }),
      });
    });
  }

  /**
   * A phase change the run makes between its records: `queued` behind another run on the same
   * host (with its place, kept as the run's one `queued` event) and back when the host is its own.
   */
  async function recordPhase(input: RecordPhaseInput): Promise<void> {
    await db.transaction(async (trx) => {
      await trx('patch_runs').where({ id: input.runId }).update({ phase: input.phase, updated_at: trx.fn.now() });
      if (input.queue) {
        await trx('run_events').where({ run_id: input.runId, kind: 'queued' }).delete();
        await trx('run_events').insert({ run_id: input.runId, kind: 'queued', detail: JSON.stringify(input.queue) });
      }
    });
  }

  /**
   * The run's refused signals, replaced as a whole (idempotent: a local activity runs again when
   * its workflow task is retried, which a burst of signals causes): one row each, plus one
   * counting those not kept.
   */
  async function recordIgnoredDecisions(input: RecordIgnoredInput): Promise<void> {
    await db.transaction(async (trx) => {
      await trx('run_events').where({ run_id: input.runId }).whereIn('kind', IGNORED_KINDS).delete();
      const rows = input.ignored.map((detail) => ({
        run_id: input.runId,
        kind: `ignored-${detail.kind}`,
        detail: JSON.stringify(detail),
      }));
      if (input.dropped > 0) {
        const detail = { dropped: input.dropped, kept: input.ignored.length };
        rows.push({ run_id: input.runId, kind: 'ignored-decisions-dropped', detail: JSON.stringify(detail) });
      }
      if (rows.length > 0) await trx('run_events').insert(rows);
    });
  }

  async function recordOutcome(input: RecordOutcomeInput): Promise<void> {
    const e = input.execution;
    await db.transaction(async (trx) => {
      if (e && e.mode === 'apply') {
        await trx('run_output').where({ run_id: input.runId, step: 'apply' }).delete();
        await recordOutput(trx, input.runId, 'apply', e);
        await trx('run_packages').where({ run_id: input.runId, kind: 'changed' }).delete();
        const changed = (e.result?.changed ?? []).map((c) => ({
          run_id: input.runId,
          kind: 'changed',
          name: c.name,
          arch: c.arch,
          current: c.from,
          candidate: c.to,
          repo: '',
          action: c.from === null ? 'install' : c.to === null ? 'remove' : 'upgrade',
        }));
        if (changed.length > 0) await trx('run_packages').insert(changed);
      } else if (e) {
        // a dry-run run, or a failed plan: the plan output is the report
        const stored = await trx('run_output').where({ run_id: input.runId, step: 'plan' }).first('id');
        if (!stored) await recordOutput(trx, input.runId, 'plan', e);
      }
      await trx('patch_runs')
        .where({ id: input.runId })
        .update({
          phase: 'done',
          outcome: input.outcome,
          failure_reason: input.failureReason,
          exit_code: e ? e.exitCode : null,
          reboot_required: e?.result ? e.result.reboot_required : null,
          reboot_reason: e?.result ? e.result.reboot_reason : null,
          overran: input.overran,
          finished_at: trx.fn.now(),
          updated_at: trx.fn.now(),
        });
    });
  }

  async function createRuns(inputs: CreateRunInput[]): Promise<void> {
    await insertRunRows(db, inputs);
  }

  async function loadWindowFiring(input: { windowId: string }): Promise<WindowFiring | null> {
    const w = await db('maintenance_windows').where({ id: input.windowId }).first();
    if (!w) return null; // deleted while its Schedule fired
    const ids: string[] = w.targets.agentIds;
    const agents = await db('agents').whereIn('id', ids).orderBy('id').select('id', 'hostname');
    return {
      windowId: w.id,
      timeouts: resolveRunTimeouts(runDefaults),
      approval: w.approval,
      leadSeconds: w.lead_seconds,
      durationSeconds: w.duration_seconds,
      cutoffSeconds: w.cutoff_seconds,
      agents: agents.map((a) => ({ agentId: a.id, hostname: a.hostname })),
    };
  }

  return {
    resolveRun,
    recordPlan,
    recordDecision,
    recordIgnoredDecisions,
    recordPhase,
    recordOutcome,
    createRuns,
    loadWindowFiring,
  };
}
/** What the workflows proxy as local activities (their type is checked against this). */
export type ControlActivities = ReturnType<typeof createControlActivities> &
  ReturnType<typeof import('./host-lock').createHostLockActivities>;
