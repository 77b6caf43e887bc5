import { ApplicationFailure } from '@temporalio/activity';
import type { Knex } from 'knex';
import { Family, scriptNameFor, type ScriptExecution } from '../../contract';
import type { RecordDecisionInput, RecordOutcomeInput, RecordPlanInput, ResolvedRun } from './types';

/** Control-side activities: everything a run reads from or writes to the database. */
export function createControlActivities(db: Knex) {
  async function resolveRun(input: { runId: string; agentId: string }): Promise<ResolvedRun> {
    const agent = await db('agents').where({ id: input.agentId }).first('family');
    if (!agent) throw ApplicationFailure.nonRetryable(`unknown agent ${input.agentId}`, 'unknown-agent');
    const family = Family.parse(agent.family);
    const scriptName = scriptNameFor(family);
    const script = await db('scripts').where({ name: scriptName }).first('sha256');
    if (!script) throw ApplicationFailure.nonRetryable(`no script ${scriptName} for family ${family}`, 'script-not-found');
    const exclusions: string[] = [];
    await db('patch_runs')
      .where({ id: input.runId })
      .update({ script_name: scriptName, script_sha256: script.sha256, exclusions: JSON.stringify(exclusions), updated_at: db.fn.now() });
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
        ].map((p) => ({ run_id: input.runId, kind: p.kind, name: p.name, arch: p.arch, current: p.current, candidate: p.candidate, repo: p.repo, action: p.action }));
        if (rows.length > 0) await trx('run_packages').insert(rows);
        await trx('patch_runs').where({ id: input.runId }).update({ plan_hash: e.planHash, phase: input.phase, updated_at: trx.fn.now() });
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
      await trx('patch_runs').where({ id: input.runId }).update({ ...update, phase: input.phase, updated_at: trx.fn.now() });
      await trx('run_events').insert({
        run_id: input.runId,
        kind: input.kind === 'approve' ? 'approved' : 'rejected',
        detail: JSON.stringify({ by: input.by, reason: input.reason, planHash: input.planHash }),
      });
    });
  }

  async function recordEvent(input: { runId: string; kind: string; detail: unknown }): Promise<void> {
    await db('run_events').insert({ run_id: input.runId, kind: input.kind, detail: JSON.stringify(input.detail ?? null) });
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
          finished_at: trx.fn.now(),
          updated_at: trx.fn.now(),
        });
    });
  }

  return { resolveRun, recordPlan, recordDecision, recordEvent, recordOutcome };
}
