import { WorkflowNotFoundError } from '@temporalio/common';
import { ServiceError, WorkflowUpdateFailedError, type Client } from '@temporalio/client';
import type { Knex } from 'knex';
import { randomInt } from 'node:crypto';
import { z } from 'zod';
import {
  AgentId,
  ApprovalPolicy,
  newRunId,
  resolveRunTimeouts,
  RunMode,
  RunOutcome,
  RunPhase,
  type ConfigurableTimeouts,
  type PatchRunInput,
  type RunStatus,
} from '../../contract';
import { patchRun } from '../../workflows/patch-run';
import { approveUpdate, rejectUpdate } from '../../workflows/messages';
import { PatchHost, PatchPhase } from '../../workflows/search-attributes';
import { insertRunRows } from '../../db/runs';
import { ApiError, notFound } from '../errors';

const timeoutMs = (max: number) => z.number().int().min(100).max(max);

export const StartRunBody = z
  .object({
    agentId: AgentId,
    mode: RunMode,
    approval: ApprovalPolicy.default('required'),
    /** Per-run overrides of the configured defaults (milliseconds). */
    timeouts: z
      .object({
        approvalMs: timeoutMs(30 * 24 * 3600_000).optional(),
        agentPickupMs: timeoutMs(7 * 24 * 3600_000).optional(),
        scriptMs: timeoutMs(24 * 3600_000).optional(),
      })
      .strict()
      .default({}),
  })
  .strict();
export type StartRunBody = z.infer<typeof StartRunBody>;

export const ListRunsQuery = z
  .object({
    agentId: AgentId.optional(),
    phase: RunPhase.optional(),
    outcome: RunOutcome.optional(),
    limit: z.coerce.number().int().min(1).max(500).default(50),
    /** Cursor: return runs created before this run id (from the previous page's `next`). */
    before: z.string().max(200).optional(),
  })
  .strict();
export type ListRunsQuery = z.infer<typeof ListRunsQuery>;

/** A patch run as the API shows it; the id is the Temporal workflow id. */
function toRun(r: Record<string, any>) {
  const iso = (d: Date | null) => (d ? new Date(d).toISOString() : null);
  return {
    id: r.id as string,
    agentId: r.agent_id as string,
    mode: r.mode as string,
    approval: r.approval as string,
    phase: r.phase as string,
    outcome: (r.outcome as string | null) ?? null,
    failureReason: (r.failure_reason as string | null) ?? null,
    requestedBy: r.requested_by as string,
    script: r.script_name ? { name: r.script_name as string, sha256: r.script_sha256 as string } : null,
    exclusions: (r.exclusions as string[]) ?? [],
    planHash: (r.plan_hash as string | null) ?? null,
    approvedBy: (r.approved_by as string | null) ?? null,
    approvedAt: iso(r.approved_at),
    rejectedBy: (r.rejected_by as string | null) ?? null,
    rejectReason: (r.reject_reason as string | null) ?? null,
    exitCode: (r.exit_code as number | null) ?? null,
    rebootRequired: (r.reboot_required as boolean | null) ?? null,
    rebootReason: (r.reboot_reason as string | null) ?? null,
    windowId: (r.window_id as string | null) ?? null,
    windowStart: iso(r.window_start),
    overran: Boolean(r.overran),
    createdAt: iso(r.created_at),
    updatedAt: iso(r.updated_at),
    finishedAt: iso(r.finished_at),
  };
}
export type Run = ReturnType<typeof toRun>;

export function runsService(db: Knex, temporal: Client, controlQueue: string, runDefaults: ConfigurableTimeouts) {
  async function start(body: StartRunBody, requestedBy: string): Promise<Run> {
    const agent = await db('agents').where({ id: body.agentId }).first('id', 'hostname');
    if (!agent)
      throw new ApiError('validation_failed', `request body field agentId: unknown agent ${body.agentId}`, 'agentId');
    const id = newRunId(agent.id, Date.now(), () => randomInt(32) / 32);
    const input: PatchRunInput = {
      runId: id,
      agentId: agent.id,
      hostname: agent.hostname,
      mode: body.mode,
      approval: body.approval,
      requestedBy,
      timeouts: resolveRunTimeouts(runDefaults, body.timeouts),
    };
    const [row] = await insertRunRows(db, [
      { runId: id, agentId: agent.id, mode: body.mode, approval: body.approval, requestedBy },
    ]);
    try {
      await temporal.workflow.start(patchRun, {
        taskQueue: controlQueue,
        workflowId: id,
        args: [input],
        typedSearchAttributes: [
          { key: PatchHost, value: agent.hostname },
          { key: PatchPhase, value: 'planning' },
        ],
      });
    } catch (err) {
      // Nothing half-made: a run Temporal never accepted does not exist.
      await db('patch_runs').where({ id }).delete();
      throw new ApiError('unavailable', `could not start the run on Temporal: ${(err as Error).message}`);
    }
    return toRun(row);
  }

  async function list(q: ListRunsQuery): Promise<{ runs: Run[]; next: string | null }> {
    const query = db('patch_runs')
      .select('*')
      .orderBy([
        { column: 'created_at', order: 'desc' },
        { column: 'id', order: 'desc' },
      ])
      .limit(q.limit + 1);
    if (q.agentId) query.where({ agent_id: q.agentId });
    if (q.phase) query.where({ phase: q.phase });
    if (q.outcome) query.where({ outcome: q.outcome });
    if (q.before) {
      const cursor = await db('patch_runs').where({ id: q.before }).first('created_at', 'id');
      if (!cursor) throw new ApiError('validation_failed', `query field before: unknown run ${q.before}`, 'before');
      query.where((w) =>
        w
          .where('created_at', '<', cursor.created_at)
          .orWhere((x) => x.where('created_at', cursor.created_at).andWhere('id', '<', cursor.id)),
      );
    }
    const rows = await query;
    const page = rows.slice(0, q.limit).map(toRun);
    return { runs: page, next: rows.length > q.limit ? page[page.length - 1].id : null };
  }

  async function get(id: string) {
    const row = await db('patch_runs').where({ id }).first();
    if (!row) throw notFound(`run ${id}`);
    const [packages, output, events] = await Promise.all([
      db('run_packages').where({ run_id: id }).orderBy(['kind', 'name', 'arch']),
      db('run_output').where({ run_id: id }).orderBy('id'),
      db('run_events').where({ run_id: id }).orderBy('id'),
    ]);
    const pkg = (kind: string) =>
      packages
        .filter((p) => p.kind === kind)
        .map((p) => ({
          name: p.name,
          arch: p.arch,
          current: p.current,
          candidate: p.candidate,
          repo: p.repo,
          action: p.action,
        }));
    return {
      ...toRun(row),
      plan: pkg('planned'),
      held: pkg('held'),
      changed: pkg('changed').map((p) => ({ name: p.name, arch: p.arch, from: p.current, to: p.candidate })),
      output: output.map((o) => ({
        step: o.step,
        argv: o.argv,
        exitCode: o.exit_code,
        stdout: o.stdout,
        stderr: o.stderr,
        durationMs: o.duration_ms,
        at: new Date(o.created_at).toISOString(),
      })),
      events: events.map((e) => ({ kind: e.kind, detail: e.detail, at: new Date(e.at).toISOString() })),
    };
  }

  /** Send a decision as a workflow Update, so a stale or late one is refused synchronously (409). */
  async function decide(id: string, send: () => Promise<RunStatus>): Promise<RunStatus> {
    const row = await db('patch_runs').where({ id }).first('id', 'outcome');
    if (!row) throw notFound(`run ${id}`);
    if (row.outcome) throw new ApiError('conflict', `run ${id} already ended: ${row.outcome}`);
    try {
      return await send();
    } catch (err) {
      if (err instanceof WorkflowUpdateFailedError) throw new ApiError('conflict', err.cause?.message ?? err.message);
      if (
        err instanceof WorkflowNotFoundError ||
        (err instanceof ServiceError && /completed|not found/i.test(err.message))
      ) {
        throw new ApiError('conflict', `run ${id} is no longer running`);
      }
      throw err;
    }
  }

  const approve = (id: string, planHash: string, by: string) =>
    decide(id, () => temporal.workflow.getHandle(id).executeUpdate(approveUpdate, { args: [{ by, planHash }] }));

  const reject = (id: string, reason: string, by: string) =>
    decide(id, () => temporal.workflow.getHandle(id).executeUpdate(rejectUpdate, { args: [{ by, reason }] }));

  async function cancel(id: string): Promise<void> {
    const row = await db('patch_runs').where({ id }).first('id', 'outcome');
    if (!row) throw notFound(`run ${id}`);
    if (row.outcome) throw new ApiError('conflict', `run ${id} already ended: ${row.outcome}`);
    await temporal.workflow.getHandle(id).cancel();
  }

  return { start, list, get, approve, reject, cancel };
}
export type RunsService = ReturnType<typeof runsService>;
