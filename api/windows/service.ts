import {
  isGrpcServiceError,
  ScheduleNotFoundError,
  ScheduleOverlapPolicy,
  ServiceError,
  type Client,
  type ScheduleOptions,
} from '@temporalio/client';
import { ulid } from 'ulid';
import { windowScheduleId } from '../../contract';
import type { Db } from '../../db';
import { appendAudit } from '../../db/audit';
import { agentsByIds } from '../../db/agents';
import { listWindowRuns } from '../../db/runs';
import { agentsWithLabels } from '../../db/rollouts';
import { matchesSelector } from '../../contract/labels';
import {
  deleteWindow,
  getWindow,
  insertWindow,
  listWindowFirings,
  listWindows,
  setWindowPaused,
  updateWindow,
  type WindowRow,
  type WindowValues,
} from '../../db/windows';
import { maintenanceWindow } from '../../workflows/maintenance-window';
import { ApiError, notFound } from '../errors';
import { requireHooks } from '../hooks/service';
import {
  calendarFiring,
  describeRecurrence,
  dstGapDays,
  LeadShiftError,
  Recurrence,
  scheduleSpec,
} from './schedule-spec';
import { CreateWindowBody, type UpdateWindowBody, type WindowFields } from './schema';

export interface WindowsDeps {
  db: Db;
  temporal: Client;
  controlQueue: string;
}

function toFields(r: WindowRow): WindowFields {
  return {
    name: r.name,
    targets: r.targets,
    recurrence: Recurrence.parse(r.recurrence), // written by this API, so it parses
    timezone: r.timezone,
    durationSeconds: r.duration_seconds,
    cutoffSeconds: r.cutoff_seconds,
    approval: r.approval,
    leadSeconds: r.lead_seconds,
    startAt: r.start_at ? r.start_at.toISOString() : null,
    endAt: r.end_at ? r.end_at.toISOString() : null,
    note: r.note,
    paused: r.paused,
    fourEyes: r.four_eyes,
    startIfStopped: r.start_if_stopped,
    snapshot: r.snapshot,
    reboot: r.reboot_policy ?? 'never',
    hooks: r.hooks,
    rebootTimeoutSeconds: r.reboot_timeout_seconds,
    rollout: r.rollout,
  };
}

const leadOf = (w: WindowFields) => (w.approval === 'pre-approved' ? (w.leadSeconds ?? 86400) : 0);

/** Things an admin should know about a valid window, e.g. firings a DST gap will skip. */
function warningsOf(w: WindowFields): string[] {
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

type LabelledAgent = { labels: Record<string, string> | null };

/**
 * A selector that matches no agent now is allowed (hosts enrol later; each firing resolves it
 * anew), but the admin is told: a typo would otherwise fire empty windows for ever.
 */
function selectorWarnings(w: WindowFields, agents: readonly LabelledAgent[]): string[] {
  const { selector } = w.targets;
  if (!selector || agents.some((a) => matchesSelector(a.labels ?? {}, selector))) return [];
  return [`targets.selector "${selector}" matches no agent now: each firing resolves it again`];
}

function toWindow(r: WindowRow, agents: readonly LabelledAgent[]) {
  const fields = toFields(r);
  return {
    id: r.id,
    scheduleId: windowScheduleId(r.id),
    ...fields,
    warnings: [...warningsOf(fields), ...selectorWarnings(fields, agents)],
    createdBy: r.created_by,
    createdAt: r.created_at.toISOString(),
    updatedAt: r.updated_at.toISOString(),
  };
}

export function windowsService({ db, temporal, controlQueue }: WindowsDeps) {
  const schedules = temporal.schedule;
  /** The agents' labels, read only when a window has a selector to warn about. */
  const labelled = async (...ws: WindowRow[]) => (ws.some((w) => w.targets.selector) ? agentsWithLabels(db) : []);

  function specOf(w: WindowFields) {
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

  function noteOf(w: WindowFields) {
    const lead = leadOf(w);
    return `${w.name}: ${describeRecurrence(w.recurrence, w.timezone)}, ${w.durationSeconds}s, cutoff ${w.cutoffSeconds}s, ${w.approval}${lead ? `, plans ${lead}s ahead` : ''}${w.note ? ` — ${w.note}` : ''}`;
  }

  function scheduleOptions(id: string, w: WindowFields) {
    const note = noteOf(w);
    const options: ScheduleOptions = {
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
      state: { paused: w.paused ?? false, note },
    };
    return { options, note };
  }

  /**
   * Temporal refuses some specs we cannot check locally (e.g. an impossible cron): that is bad
   * input. The SDK reports a spec the server calls invalid, or one it cannot encode, as a
   * TypeError or RangeError; other refusals arrive as a ServiceError carrying the gRPC status.
   */
  function scheduleError(err: unknown): never {
    const INVALID_ARGUMENT = 3; // gRPC status code
    const invalid =
      err instanceof TypeError ||
      err instanceof RangeError ||
      (err instanceof ServiceError && isGrpcServiceError(err.cause) && Number(err.cause.code) === INVALID_ARGUMENT);
    const message =
      err instanceof ServiceError && isGrpcServiceError(err.cause)
        ? err.cause.details
        : err instanceof Error
          ? err.message
          : String(err);
    if (invalid) throw new ApiError('validation_failed', `recurrence: ${message}`, 'recurrence');
    throw new ApiError('unavailable', `Temporal refused the schedule: ${message}`);
  }

  /**
   * Targets must exist and not be revoked (a revoked agent never runs again). A pending agent may
   * be named: a window is often set up before its hosts are accepted; its firings skip the agent
   * (and say so in their report) until it is.
   */
  /** The agents a window's targets name: its hosts and the nodes of its containers. */
  const targetAgents = (t: WindowFields['targets']) => [
    ...new Set([...t.agentIds, ...(t.containers ?? []).map((c) => c.agentId)]),
  ];

  async function checkTargets(agentIds: string[]) {
    const agents = await agentsByIds(db, agentIds);
    const found = new Set(agents.map((a) => a.id));
    const missing = agentIds.filter((id) => !found.has(id));
    if (missing.length > 0)
      throw new ApiError(
        'validation_failed',
        `targets.agentIds: unknown agent ${missing.join(', ')}`,
        'targets.agentIds',
      );
    const revoked = agents.filter((a) => a.status === 'revoked').map((a) => a.id);
    if (revoked.length > 0)
      throw new ApiError(
        'validation_failed',
        `targets.agentIds: agent ${revoked.join(', ')} was revoked`,
        'targets.agentIds',
      );
  }

  function valuesOf(w: WindowFields): WindowValues {
    return {
      name: w.name,
      targets: w.targets,
      recurrence: w.recurrence,
      timezone: w.timezone,
      duration_seconds: w.durationSeconds,
      cutoff_seconds: w.cutoffSeconds,
      approval: w.approval,
      lead_seconds: leadOf(w),
      start_at: w.startAt ? new Date(w.startAt) : null,
      end_at: w.endAt ? new Date(w.endAt) : null,
      paused: w.paused ?? false,
      note: w.note ?? '',
      four_eyes: w.fourEyes ?? false,
      start_if_stopped: w.startIfStopped ?? null,
      snapshot: w.snapshot ?? null,
      reboot_policy: w.reboot && w.reboot !== 'never' ? w.reboot : null,
      hooks: w.hooks && (w.hooks.pre || w.hooks.post) ? w.hooks : null,
      reboot_timeout_seconds: w.rebootTimeoutSeconds ?? null,
      rollout: w.rollout ?? null,
    };
  }

  /** Window row and Schedule are made together: the row commits only once the Schedule exists. */
  async function create(body: CreateWindowBody, by: string) {
    await checkTargets(targetAgents(body.targets));
    await requireHooks(db, body.hooks);
    const id = `win-${ulid().toLowerCase()}`;
    const { options } = scheduleOptions(id, body);
    return db.transaction(async (trx) => {
      const row = await insertWindow(trx, id, valuesOf(body), by);
      const agents = await labelled(row);
      await schedules.create(options).catch(scheduleError);
      // Last in the transaction, so the trail's lock is not held across the Temporal call.
      const window = toWindow(row, agents);
      await appendAudit(trx, { actor: by, kind: 'window.created', subject: id, detail: { window } });
      return window;
    });
  }

  async function row(id: string): Promise<WindowRow> {
    const r = await getWindow(db, id);
    if (!r) throw notFound(`window ${id}`);
    return r;
  }

  async function get(id: string) {
    const r = await row(id);
    const desc = await schedules.getHandle(windowScheduleId(id)).describe();
    const leadMs = r.lead_seconds * 1000;
    const runs = await listWindowRuns(db, id, 50);
    const firings = await listWindowFirings(db, id, 20);
    return {
      ...toWindow(r, await labelled(r)),
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
      // Issue 12: which hosts each recent firing meant (its selector resolved when it fired).
      resolvedTargets: firings.map((f) => ({
        workflowId: f.workflow_id,
        workflowRunId: f.workflow_run_id,
        resolvedAt: f.resolved_at.toISOString(),
        selector: f.selector,
        agentIds: f.agent_ids,
        skippedTargets: f.skipped_targets,
        rolloutId: f.rollout_id,
      })),
      recentRuns: runs.map((x) => ({
        id: x.id,
        agentId: x.agent_id,
        mode: x.mode,
        phase: x.phase,
        outcome: x.outcome,
        failureReason: x.failure_reason,
        overran: x.overran,
        windowStart: x.window_start ? x.window_start.toISOString() : null,
        createdAt: x.created_at.toISOString(),
        finishedAt: x.finished_at ? x.finished_at.toISOString() : null,
      })),
    };
  }

  async function list() {
    const rows = await listWindows(db);
    const agents = await labelled(...rows);
    return rows.map((r) => toWindow(r, agents));
  }

  async function update(id: string, patch: UpdateWindowBody, by: string) {
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
    if (patch.targets) await checkTargets(targetAgents(parsed.data.targets));
    if (patch.hooks) await requireHooks(db, patch.hooks);
    const { options, note } = scheduleOptions(id, parsed.data);
    return db.transaction(async (trx) => {
      const updated = await updateWindow(trx, id, valuesOf(parsed.data));
      if (!updated) throw notFound(`window ${id}`);
      // One update carries the paused state too: a separate pause after the update raced with it
      // (the update, a read-modify-write of the whole Schedule, could land after the pause and
      // unpause it again — seen in a full test run).
      await schedules
        .getHandle(windowScheduleId(id))
        .update((prev) => ({
          ...prev,
          spec: options.spec,
          policies: { ...prev.policies, ...options.policies },
          state: { ...prev.state, note, paused: parsed.data.paused ?? prev.state.paused },
        }))
        .catch(scheduleError);
      const window = toWindow(updated, await labelled(updated));
      await appendAudit(trx, { actor: by, kind: 'window.updated', subject: id, detail: { patch, window } });
      return window;
    });
  }

  async function setPaused(id: string, paused: boolean, note: string | undefined, by: string) {
    await row(id);
    const handle = schedules.getHandle(windowScheduleId(id));
    const text = `${paused ? 'paused' : 'resumed'} by ${by}${note ? `: ${note}` : ''}`;
    await (paused ? handle.pause(text) : handle.unpause(text));
    const updated = await db.transaction(async (trx) => {
      const w = await setWindowPaused(trx, id, paused);
      if (!w) throw notFound(`window ${id}`);
      await appendAudit(trx, {
        actor: by,
        kind: paused ? 'window.paused' : 'window.resumed',
        subject: id,
        detail: { note: note ?? null },
      });
      return w;
    });
    return toWindow(updated, await labelled(updated));
  }

  async function remove(id: string, by: string) {
    await row(id);
    await schedules
      .getHandle(windowScheduleId(id))
      .delete()
      .catch((err: unknown) => {
        // Already gone (deleted by hand, or a previous attempt got this far): the row goes too.
        if (!(err instanceof ScheduleNotFoundError)) throw err;
      });
    await db.transaction(async (trx) => {
      await deleteWindow(trx, id);
      await appendAudit(trx, { actor: by, kind: 'window.deleted', subject: id });
    });
  }

  /** Fire the window now (an admin's "run this window now"), through the same Schedule. */
  async function trigger(id: string, by: string) {
    await row(id);
    await schedules.getHandle(windowScheduleId(id)).trigger(ScheduleOverlapPolicy.SKIP);
    await appendAudit(db, { actor: by, kind: 'window.triggered', subject: id });
  }

  return { create, get, list, update, setPaused, remove, trigger };
}
export type WindowsService = ReturnType<typeof windowsService>;
