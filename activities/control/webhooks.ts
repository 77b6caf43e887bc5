/**
 * Signed webhooks, control side (docs/webhooks.md). A run's control activities tell `events`
 * what happened (a phase, an outcome); for each live subscription to the event a delivery row is
 * written and a `webhookDelivery` workflow of its own is started, which POSTs the signed payload
 * with retries and backoff (deliverWebhook below). The run never waits on a receiver: starting
 * the delivery workflow is its only cost, and a failure to emit is logged, never thrown into the run.
 */
import { createHash } from 'node:crypto';
import { ApplicationFailure } from '@temporalio/activity';
import { WorkflowExecutionAlreadyStartedError, type Client } from '@temporalio/client';
import type { RunOutcome } from '../../contract';
import { SIGNATURE_HEADER, signWebhook, type WebhookEvent } from '../../contract/webhooks';
import type { Db } from '../../db';
import { getRun, type RecordOutcomeInput, type RecordPhaseInput } from '../../db/runs';
import { deliveries, subscribersOf, subscriptions } from '../../db/webhooks';

/** What a run's control activities report (createControlActivities' `events`). */
export interface RunEvents {
  phase(input: RecordPhaseInput): Promise<void>;
  outcome(input: RecordOutcomeInput): Promise<void>;
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

export function webhookEvents(
  db: Db,
  client: Client,
  taskQueue: string,
  warn: (message: string) => void = () => {},
): RunEvents {
  async function emit(event: WebhookEvent, runId: string): Promise<void> {
    try {
      const subs = await subscribersOf(db, event);
      if (subs.length === 0) return;
      const run = await getRun(db, runId);
      if (!run) return;
      const eventId = `${event}:${runId}`;
      const payload = JSON.stringify({
        id: eventId,
        type: event,
        occurredAt: new Date().toISOString(),
        data: {
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
        },
      });
      for (const sub of subs) {
        const id = deliveryId(sub.id, eventId);
        await deliveries(db)
          .insert({ id, subscription_id: sub.id, event_id: eventId, event, payload })
          .onConflict('id')
          .ignore();
        try {
          await client.workflow.start('webhookDelivery', { workflowId: id, taskQueue, args: [{ deliveryId: id }] });
        } catch (err) {
          if (!(err instanceof WorkflowExecutionAlreadyStartedError)) throw err;
        }
      }
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
  };
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
