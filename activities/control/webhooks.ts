/**
 * Signed webhooks, control side (docs/webhooks.md). A run's control activities tell `events`
 * what happened (a phase, an outcome); for each live subscription to the event a delivery row is
 * written and a `webhookDelivery` workflow of its own is started, which POSTs the signed payload
 * with retries and backoff (deliverWebhook below). The run never waits on a receiver: starting
 * the delivery workflow is its only cost, and a failure to emit is logged, never thrown into the run.
 * Window firings that start no runs report `window.skipped` themselves; a once-a-minute sweep sends
 * `window.upcoming` heads-ups and starts the workflows of deliveries stranded by a Temporal outage.
 */
import { createHash } from 'node:crypto';
import { ApplicationFailure, Context } from '@temporalio/activity';
import { ScheduleNotFoundError, WorkflowExecutionAlreadyStartedError, type Client } from '@temporalio/client';
import type { RunOutcome } from '../../contract';
import { windowScheduleId } from '../../contract/run-id';
import { SIGNATURE_HEADER, signWebhook, type WebhookEvent } from '../../contract/webhooks';
import type { Db } from '../../db';
import {
  getRun,
  type RecordDecisionInput,
  type RecordOutcomeInput,
  type RecordPhaseInput,
  type RunRow,
} from '../../db/runs';
import { deliveries, subscribersOf, subscriptions } from '../../db/webhooks';
import { listWindows } from '../../db/windows';

/** What a run's control activities report (createControlActivities' `events`). */
export interface RunEvents {
  phase(input: RecordPhaseInput): Promise<void>;
  outcome(input: RecordOutcomeInput): Promise<void>;
  decision(input: RecordDecisionInput): Promise<void>;
}

const OUTCOME_EVENTS: Partial<Record<RunOutcome, WebhookEvent>> = {
  failed: 'run.failed',
  'agent-unreachable': 'agent.unreachable',
  'skipped-unapproved': 'window.skipped',
  'skipped-window-closed': 'window.skipped',
};

/** The workflow id of one delivery (also the row's id): one event reaches one subscription once. */
export const deliveryId = (subscriptionId: string, eventId: string) =>
  `whd-${createHash('sha256').update(`${subscriptionId}\n${eventId}`).digest('hex').slice(0, 32)}`;

/** Starts a delivery's workflow; one already started (or running) is left alone. */
async function startDelivery(client: Client, taskQueue: string, id: string): Promise<void> {
  try {
    await client.workflow.start('webhookDelivery', { workflowId: id, taskQueue, args: [{ deliveryId: id }] });
  } catch (err) {
    if (!(err instanceof WorkflowExecutionAlreadyStartedError)) throw err;
  }
}

type EventData = Record<string, unknown>;

/**
 * One event to each live subscription: a delivery row per subscription (its id a hash of the
 * subscription and `eventId`, so an event emitted twice is delivered once) and its workflow.
 * A row whose workflow could not be started stays `pending` for sweepWebhooks. `data` may be a
 * function, read only when someone subscribes (null: nothing to send).
 */
export async function emitEvent(
  db: Db,
  client: Client,
  taskQueue: string,
  event: WebhookEvent,
  eventId: string,
  data: EventData | (() => Promise<EventData | null>),
): Promise<number> {
  const subs = await subscribersOf(db, event);
  if (subs.length === 0) return 0;
  const body = typeof data === 'function' ? await data() : data;
  if (!body) return 0;
  const payload = JSON.stringify({ id: eventId, type: event, occurredAt: new Date().toISOString(), data: body });
  let started = 0;
  for (const sub of subs) {
    const id = deliveryId(sub.id, eventId);
    const inserted = await deliveries(db)
      .insert({ id, subscription_id: sub.id, event_id: eventId, event, payload })
      .onConflict('id')
      .ignore()
      .returning('id');
    if (inserted.length === 0) continue; // emitted before: its delivery has its own workflow
    await startDelivery(client, taskQueue, id);
    started++;
  }
  return started;
}

export function webhookEvents(
  db: Db,
  client: Client,
  taskQueue: string,
  warn: (message: string) => void = () => {},
): RunEvents {
  /** A run's event, once per run; `view` makes its data from the run's row (null: nothing to send). */
  async function emit(
    event: WebhookEvent,
    runId: string,
    view: (run: RunRow) => EventData | null = runView,
  ): Promise<void> {
    try {
      // The run is read only when someone subscribes to the event.
      await emitEvent(db, client, taskQueue, event, `${event}:${runId}`, async () => {
        const run = await getRun(db, runId);
        return run ? view(run) : null;
      });
    } catch (err) {
      warn(`webhook ${event} for ${runId} not emitted: ${(err as Error).message}`);
    }
  }

  return {
    async phase(input) {
      if (input.phase === 'awaiting-approval') await emit('plan.awaiting-approval', input.runId);
    },
    async outcome(input) {
      const event = OUTCOME_EVENTS[input.outcome];
      if (event) await emit(event, input.runId);
      if (input.overran) await emit('window.overran', input.runId);
    },
    async decision(input) {
      if (input.kind === 'approve' && input.baseline) await emit('plan.auto-approved', input.runId, autoApprovedView);
    },
  };
}

const runView = (run: RunRow): EventData => ({
  runId: run.id,
  agentId: run.agent_id,
  container: run.container,
  mode: run.mode,
  phase: run.phase,
  outcome: run.outcome,
  failureReason: run.failure_reason,
  planHash: run.plan_hash,
  windowId: run.window_id,
  overran: run.overran,
  requestedBy: run.requested_by,
});

/** The baseline's approval as the run records it (approved_by_baseline): who, and each package's rule. */
const autoApprovedView = (run: RunRow): EventData | null => {
  const b = run.approved_by_baseline;
  if (!b) return null;
  return {
    runId: run.id,
    agentId: run.agent_id,
    container: run.container,
    mode: run.mode,
    planHash: b.planHash,
    windowId: run.window_id,
    requestedBy: run.requested_by,
    approvedBy: run.approved_by,
    baseline: b.baseline,
    baselineId: b.baselineId,
    packages: b.packages,
  };
};

/**
 * Window events emitted by the maintenanceWindow workflow itself: a firing that started no runs
 * at all (its Schedule did not start it, the window was deleted, it fired after the cutoff).
 */
export function createWindowEventActivities(
  db: Db,
  client: Client,
  taskQueue: string,
  warn: (message: string) => void = () => {},
) {
  async function windowFiringSkipped(input: { windowId: string; reason: string }): Promise<void> {
    const execution = Context.current().info.workflowExecution;
    const firing = execution ? `${execution.workflowId}/${execution.runId}` : 'unknown';
    try {
      await emitEvent(db, client, taskQueue, 'window.skipped', `window.skipped:${input.windowId}:${firing}`, {
        windowId: input.windowId,
        runId: null,
        firing,
        reason: input.reason,
      });
    } catch (err) {
      warn(`webhook window.skipped for ${input.windowId} not emitted: ${(err as Error).message}`);
    }
  }
  return { windowFiringSkipped };
}

export interface SweepOptions {
  /** How long before a window opens its `window.upcoming` heads-up is sent. */
  upcomingLeadSeconds: number;
  /** A `pending` delivery older than this has its workflow started again (default one minute). */
  pendingAfterMs?: number;
}

/**
 * The periodic sweep of the control worker (startWebhookSweeper): (1) deliveries left `pending`
 * because their workflow could not be started (Temporal was unreachable) get it started; (2) each
 * unpaused window opening within `upcomingLeadSeconds` sends `window.upcoming` once (its event id
 * names the window and the opening, so every later sweep finds it already emitted).
 */
export async function sweepWebhooks(
  db: Db,
  client: Client,
  taskQueue: string,
  options: SweepOptions,
): Promise<{ restarted: number; upcoming: number }> {
  const stale = await deliveries(db)
    .where({ status: 'pending' })
    .where('created_at', '<', new Date(Date.now() - (options.pendingAfterMs ?? 60_000)))
    .orderBy('created_at')
    .limit(500)
    .select('id');
  for (const { id } of stale) await startDelivery(client, taskQueue, id);

  let upcoming = 0;
  if ((await subscribersOf(db, 'window.upcoming')).length > 0) {
    const now = Date.now();
    for (const w of await listWindows(db)) {
      if (w.paused) continue;
      const described = await client.schedule
        .getHandle(windowScheduleId(w.id))
        .describe()
        .catch((err: unknown) => {
          if (err instanceof ScheduleNotFoundError) return null; // deleted meanwhile
          throw err;
        });
      if (!described) continue;
      const { info } = described;
      // The Schedule fires lead_seconds before the window opens (pre-approved windows plan ahead):
      // a firing already taken may still belong to an opening to come.
      const lead = w.lead_seconds * 1000;
      const opening = [...info.recentActions.map((a) => a.scheduledAt), ...info.nextActionTimes]
        .map((t) => t.getTime() + lead)
        .filter((t) => t > now)
        .sort((a, b) => a - b)[0];
      if (opening === undefined || opening - now > options.upcomingLeadSeconds * 1000) continue;
      const opensAt = new Date(opening).toISOString();
      upcoming += await emitEvent(db, client, taskQueue, 'window.upcoming', `window.upcoming:${w.id}:${opensAt}`, {
        windowId: w.id,
        name: w.name,
        opensAt,
        closesAt: new Date(opening + w.duration_seconds * 1000).toISOString(),
        timezone: w.timezone,
        approval: w.approval,
        targets: w.targets,
      });
    }
  }
  return { restarted: stale.length, upcoming };
}

/** Sweeps at once and then every `everyMs` while `alive()`; a failed sweep is reported and retried next time. */
export function startWebhookSweeper(
  run: () => Promise<unknown>,
  alive: () => boolean,
  warn: (message: string) => void,
  everyMs = 60_000,
): void {
  let busy = false;
  const tick = async () => {
    if (!alive()) return clearInterval(timer);
    if (busy) return;
    busy = true;
    try {
      await run();
    } catch (err) {
      warn(`webhook sweep failed: ${(err as Error).message}`);
    } finally {
      busy = false;
    }
  };
  const timer = setInterval(() => void tick(), everyMs);
  timer.unref();
  setTimeout(() => void tick(), 1000).unref();
}

/** The delivery activities, on the control task queue. */
export function createWebhookActivities(db: Db) {
  const record = (id: string, fields: Record<string, unknown>) =>
    deliveries(db)
      .where({ id })
      .update({ ...fields, updated_at: db.fn.now() });

  /** One attempt: POST the signed payload; a non-2xx answer or no answer is retried by Temporal. */
  async function deliverWebhook({ deliveryId: id }: { deliveryId: string }): Promise<void> {
    const d = await deliveries(db).where({ id }).first();
    if (!d || d.status !== 'pending') return;
    const sub = await subscriptions(db).where({ id: d.subscription_id }).first();
    if (!sub || sub.deleted_at) {
      await record(id, { status: 'cancelled', last_error: 'subscription deleted' });
      return;
    }
    const attempts = d.attempts + 1;
    let res: Response;
    try {
      res = await fetch(sub.url, {
        method: 'POST',
        redirect: 'manual',
        signal: AbortSignal.timeout(10_000),
        headers: {
          'content-type': 'application/json',
          'user-agent': 'patchnanny-webhooks',
          'x-patchnanny-event': d.event,
          'x-patchnanny-delivery': id,
          [SIGNATURE_HEADER]: signWebhook(sub.secret, d.payload),
        },
        body: d.payload,
      });
      await res.body?.cancel();
    } catch (err) {
      const cause = (err as { cause?: { code?: string; message?: string } }).cause;
      const message = `no answer: ${cause?.code ?? cause?.message ?? (err as Error).message}`;
      await record(id, { attempts, last_status: null, last_error: message });
      throw ApplicationFailure.retryable(message, 'webhook-unreachable');
    }
    if (res.status >= 200 && res.status < 300) {
      await record(id, { attempts, last_status: res.status, status: 'delivered', delivered_at: db.fn.now() });
      return;
    }
    const message = `HTTP ${res.status}`;
    await record(id, { attempts, last_status: res.status, last_error: message });
    throw ApplicationFailure.retryable(message, 'webhook-refused');
  }

  /** Every attempt failed: the log says so (its last error stays). */
  async function webhookGaveUp({ deliveryId: id }: { deliveryId: string }): Promise<void> {
    await record(id, { status: 'failed' });
  }

  return { deliverWebhook, webhookGaveUp };
}
export type WebhookActivities = ReturnType<typeof createWebhookActivities>;
