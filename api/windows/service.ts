import { ScheduleOverlapPolicy, type Client, type ScheduleOptions } from '@temporalio/client';
import type { Knex } from 'knex';
import { ulid } from 'ulid';
import { z } from 'zod';
import { AgentId, WindowApproval, windowScheduleId } from '../../contract';
import { maintenanceWindow } from '../../workflows/maintenance-window';
import { ApiError, notFound } from '../errors';
import {
  calendarFiring,
  describeRecurrence,
  dstGapDays,
  isTimezone,
  LeadShiftError,
  Recurrence,
  scheduleSpec,
} from './schedule-spec';

const Timestamp = z.iso.datetime({ offset: true });

const WindowFields = z
  .object({
    name: z.string().trim().min(1).max(200),
    targets: z.object({ agentIds: z.array(AgentId).min(1).max(5000) }).strict(),
    recurrence: Recurrence,
    timezone: z.string().refine(isTimezone, 'not an IANA time zone (e.g. Europe/Berlin)'),
    durationSeconds: z
      .number()
      .int()
      .positive('must be greater than 0')
      .max(7 * 86400),
    /** No host starts applying in the last `cutoffSeconds` of the window. */
    cutoffSeconds: z.number().int().min(0),
    approval: WindowApproval,
    /** pre-approved only: how long before the window the plan is made (default 24 h). */
    leadSeconds: z
      .number()
      .int()
      .min(0)
      .max(30 * 86400)
      .optional(),
    startAt: Timestamp.nullable().optional(),
    endAt: Timestamp.nullable().optional(),
    note: z.string().max(500).optional(),
    paused: z.boolean().optional(),
  })
  .strict();

type Fields = z.infer<typeof WindowFields>;

function checkConsistency(w: Fields, ctx: z.RefinementCtx) {
  if (w.cutoffSeconds >= w.durationSeconds)
    ctx.addIssue({ code: 'custom', path: ['cutoffSeconds'], message: 'must be less than durationSeconds' });
  if (w.leadSeconds !== undefined && w.leadSeconds > 0 && w.approval !== 'pre-approved') {
    ctx.addIssue({ code: 'custom', path: ['leadSeconds'], message: 'only pre-approved windows have a lead time' });
  }
  if (w.startAt && w.endAt && Date.parse(w.startAt) >= Date.parse(w.endAt))
    ctx.addIssue({ code: 'custom', path: ['endAt'], message: 'must be after startAt' });
}

export const CreateWindowBody = WindowFields.superRefine(checkConsistency);
export type CreateWindowBody = z.infer<typeof CreateWindowBody>;
/** PATCH takes any subset; the merged window is validated as a whole. */
export const UpdateWindowBody = WindowFields.partial().strict();
export type UpdateWindowBody = z.infer<typeof UpdateWindowBody>;

interface WindowRow {
  id: string;
  name: string;
  targets: { agentIds: string[] };
  recurrence: Recurrence;
  timezone: string;
  duration_seconds: number;
  cutoff_seconds: number;
  approval: WindowApproval;
  lead_seconds: number;
  start_at: Date | null;
  end_at: Date | null;
  paused: boolean;
  note: string;
  created_by: string;
  created_at: Date;
  updated_at: Date;
}

function toFields(r: WindowRow): Fields {
  return {
    name: r.name,
    targets: r.targets,
    recurrence: r.recurrence,
    timezone: r.timezone,
    durationSeconds: r.duration_seconds,
    cutoffSeconds: r.cutoff_seconds,
    approval: r.approval,
    leadSeconds: r.lead_seconds,
    startAt: r.start_at ? r.start_at.toISOString() : null,
    endAt: r.end_at ? r.end_at.toISOString() : null,
    note: r.note,
    paused: r.paused,
  };
}

const leadOf = (w: Fields) => (w.approval === 'pre-approved' ? (w.leadSeconds ?? 86400) : 0);

/** Things an admin should know about a valid window, e.g. firings a DST gap will skip. */
function warningsOf(w: Fields): string[] {
  if (!('calendar' in w.recurrence)) return [];
  // The Schedule fires at the (lead-shifted) calendar time: that is what a DST gap can swallow.
  const fired = calendarFiring(w.recurrence.calendar, leadOf(w));
  // The coming year of the window's validity range.
  const from = Math.max(Date.now(), w.startAt ? Date.parse(w.startAt) : 0);
  const until = Math.min(from + 366 * 86400_000, w.endAt ? Date.parse(w.endAt) : Infinity);
  const gaps = dstGapDays(fired, w.timezone, from, Math.max(0, Math.ceil((until - from) / 86400_000)));
  if (gaps.length === 0) return [];
  const time = `${String(fired.hour).padStart(2, '0')}:${String(fired.minute).padStart(2, '0')}`;
  return [
    `${time} does not exist in ${w.timezone} on ${gaps.join(', ')} (daylight saving time): Temporal skips those firings`,
  ];
}

function toWindow(r: WindowRow) {
  const fields = toFields(r);
  return {
    id: r.id,
    scheduleId: windowScheduleId(r.id),
    ...fields,
    warnings: warningsOf(fields),
    createdBy: r.created_by,
    createdAt: r.created_at.toISOString(),
    updatedAt: r.updated_at.toISOString(),
  };
}

export function windowsService(db: Knex, temporal: Client, controlQueue: string) {
  const schedules = temporal.schedule;

  function specOf(w: Fields) {
    try {
      return scheduleSpec({
        recurrence: w.recurrence,
        timezone: w.timezone,
        leadSeconds: leadOf(w),
        startAt: w.startAt ? new Date(w.startAt) : null,
        endAt: w.endAt ? new Date(w.endAt) : null,
      });
    } catch (err) {
      if (err instanceof LeadShiftError)
        throw new ApiError('validation_failed', `leadSeconds: ${err.message}`, 'leadSeconds');
      throw err;
    }
  }

  function noteOf(w: Fields) {
    const lead = leadOf(w);
    return `${w.name}: ${describeRecurrence(w.recurrence, w.timezone)}, ${w.durationSeconds}s, cutoff ${w.cutoffSeconds}s, ${w.approval}${lead ? `, plans ${lead}s ahead` : ''}${w.note ? ` — ${w.note}` : ''}`;
  }

  function scheduleOptions(id: string, w: Fields): ScheduleOptions {
    return {
      scheduleId: windowScheduleId(id),
      spec: specOf(w),
      action: {
        type: 'startWorkflow',
        workflowType: maintenanceWindow,
        taskQueue: controlQueue,
        args: [{ windowId: id }],
        workflowId: windowScheduleId(id),
      },
      policies: {
        overlap: ScheduleOverlapPolicy.SKIP,
        // A late firing (scheduler down) is only worth starting while hosts may still begin.
        catchupWindow: Math.max(10, w.durationSeconds - w.cutoffSeconds) * 1000,
      },
      state: { paused: w.paused ?? false, note: noteOf(w) },
    };
  }

  /** Temporal refuses some specs we cannot check locally (e.g. an impossible cron): that is bad input. */
  function scheduleError(err: unknown): never {
    const message = (err as Error).message ?? String(err);
    const grpcCode =
      (err as { code?: number; cause?: { code?: number } }).code ?? (err as { cause?: { code?: number } }).cause?.code;
    const INVALID_ARGUMENT = 3;
    if (grpcCode === INVALID_ARGUMENT || /invalid|parse|not in range/i.test(message)) {
      throw new ApiError('validation_failed', `recurrence: ${message}`, 'recurrence');
    }
    throw new ApiError('unavailable', `Temporal refused the schedule: ${message}`);
  }

  async function checkTargets(agentIds: string[]) {
    const found = await db('agents').whereIn('id', agentIds).pluck('id');
    const missing = agentIds.filter((id) => !found.includes(id));
    if (missing.length > 0)
      throw new ApiError(
        'validation_failed',
        `targets.agentIds: unknown agent ${missing.join(', ')}`,
        'targets.agentIds',
      );
  }

  function dbRow(w: Fields) {
    return {
      name: w.name,
      targets: JSON.stringify(w.targets),
      recurrence: JSON.stringify(w.recurrence),
      timezone: w.timezone,
      duration_seconds: w.durationSeconds,
      cutoff_seconds: w.cutoffSeconds,
      approval: w.approval,
      lead_seconds: leadOf(w),
      start_at: w.startAt ?? null,
      end_at: w.endAt ?? null,
      paused: w.paused ?? false,
      note: w.note ?? '',
    };
  }

  /** Window row and Schedule are made together: the row commits only once the Schedule exists. */
  async function create(body: CreateWindowBody, by: string) {
    await checkTargets(body.targets.agentIds);
    const id = `win-${ulid().toLowerCase()}`;
    const options = scheduleOptions(id, body);
    return db.transaction(async (trx) => {
      const [row] = await trx('maintenance_windows')
        .insert({ id, ...dbRow(body), created_by: by })
        .returning('*');
      await schedules.create(options).catch(scheduleError);
      return toWindow(row);
    });
  }

  async function row(id: string): Promise<WindowRow> {
    const r = await db('maintenance_windows').where({ id }).first();
    if (!r) throw notFound(`window ${id}`);
    return r as WindowRow;
  }

  async function get(id: string) {
    const r = await row(id);
    const desc = await schedules.getHandle(windowScheduleId(id)).describe();
    const leadMs = r.lead_seconds * 1000;
    const runs = await db('patch_runs')
      .where({ window_id: id })
      .orderBy('created_at', 'desc')
      .limit(50)
      .select(
        'id',
        'agent_id',
        'mode',
        'phase',
        'outcome',
        'failure_reason',
        'overran',
        'window_start',
        'created_at',
        'finished_at',
      );
    return {
      ...toWindow(r),
      schedule: {
        paused: desc.state.paused,
        note: desc.state.note ?? null,
        // When the Schedule fires next (planning time for pre-approved) and when the window opens.
        nextFireTimes: desc.info.nextActionTimes.map((t) => t.toISOString()),
        nextWindowStarts: desc.info.nextActionTimes.map((t) => new Date(t.getTime() + leadMs).toISOString()),
        recentFirings: desc.info.recentActions.map((a) => ({
          scheduledAt: a.scheduledAt.toISOString(),
          takenAt: a.takenAt.toISOString(),
          workflowId: a.action.workflow.workflowId,
        })),
      },
      recentRuns: runs.map((x) => ({
        id: x.id,
        agentId: x.agent_id,
        mode: x.mode,
        phase: x.phase,
        outcome: x.outcome,
        failureReason: x.failure_reason,
        overran: x.overran,
        windowStart: x.window_start ? new Date(x.window_start).toISOString() : null,
        createdAt: new Date(x.created_at).toISOString(),
        finishedAt: x.finished_at ? new Date(x.finished_at).toISOString() : null,
      })),
    };
  }

  async function list() {
    const rows = await db('maintenance_windows').orderBy('created_at');
    return rows.map((r: WindowRow) => toWindow(r));
  }

  async function update(id: string, patch: UpdateWindowBody) {
    const current = await row(id);
    const merged = { ...toFields(current), ...patch };
    if (patch.approval && patch.approval !== 'pre-approved' && patch.leadSeconds === undefined)
      merged.leadSeconds = undefined;
    const parsed = CreateWindowBody.safeParse(merged);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      throw new ApiError(
        'validation_failed',
        `request body field ${issue.path.join('.')}: ${issue.message}`,
        issue.path.join('.'),
      );
    }
    if (patch.targets) await checkTargets(parsed.data.targets.agentIds);
    const options = scheduleOptions(id, parsed.data);
    return db.transaction(async (trx) => {
      const [updated] = await trx('maintenance_windows')
        .where({ id })
        .update({ ...dbRow(parsed.data), updated_at: trx.fn.now() })
        .returning('*');
      const handle = schedules.getHandle(windowScheduleId(id));
      await handle
        .update((prev) => ({
          ...prev,
          spec: options.spec,
          policies: { ...prev.policies, ...options.policies },
          state: { ...prev.state, note: options.state!.note },
        }))
        .catch(scheduleError);
      if (patch.paused !== undefined && patch.paused !== current.paused) {
        await (patch.paused ? handle.pause(options.state!.note) : handle.unpause(options.state!.note));
      }
      return toWindow(updated);
    });
  }

  async function setPaused(id: string, paused: boolean, note: string | undefined, by: string) {
    await row(id);
    const handle = schedules.getHandle(windowScheduleId(id));
    const text = `${paused ? 'paused' : 'resumed'} by ${by}${note ? `: ${note}` : ''}`;
    await (paused ? handle.pause(text) : handle.unpause(text));
    const [updated] = await db('maintenance_windows')
      .where({ id })
      .update({ paused, updated_at: db.fn.now() })
      .returning('*');
    return toWindow(updated);
  }

  async function remove(id: string) {
    await row(id);
    await schedules
      .getHandle(windowScheduleId(id))
      .delete()
      .catch((err: Error) => {
        if (!/not found/i.test(err.message)) throw err;
      });
    await db('maintenance_windows').where({ id }).delete();
  }

  /** Fire the window now (an admin's "run this window now"), through the same Schedule. */
  async function trigger(id: string) {
    await row(id);
    await schedules.getHandle(windowScheduleId(id)).trigger(ScheduleOverlapPolicy.SKIP);
  }

  return { create, get, list, update, setPaused, remove, trigger };
}
export type WindowsService = ReturnType<typeof windowsService>;
