/**
 * The messages a patch run handles, declared once: the workflow sets the handlers, the API and
 * the CLI send them. Update and signal share a name so `temporal workflow update --name approve`
 * and `temporal workflow signal --name approve` do the same thing (the update can refuse).
 */
import { defineQuery, defineSignal, defineUpdate } from '@temporalio/workflow';
import type { ApproveDecision, RejectDecision, RunStatus } from '../contract';

export const approveUpdate = defineUpdate<RunStatus, [ApproveDecision]>('approve');
export const rejectUpdate = defineUpdate<RunStatus, [RejectDecision]>('reject');
export const approveSignal = defineSignal<[unknown]>('approve');
export const rejectSignal = defineSignal<[unknown]>('reject');
export const statusQuery = defineQuery<RunStatus>('status');
/**
 * The API tells each open run of an agent it just revoked: the run ends `agent-revoked` at once,
 * whatever it waits on (an apply in flight is not waited for: its result can no longer be trusted).
 */
export const agentRevokedSignal = defineSignal<[{ by: string }]>('agentRevoked');

/**
 * The API tells every open run when approver keys stop counting (a key revoked, its owner disabled
 * or no longer an approver): the run drops them from the keys it pinned at its claim, so a stolen
 * key revoked now approves nothing that is still waiting. It can only take trust away.
 */
export const approverKeysWithdrawnSignal = defineSignal<[{ keyIds: string[] }]>('approverKeysWithdrawn');

/** Failure types the update validators raise, mapped to HTTP 409 by the API. */
export const DECISION_REFUSED = {
  notAwaiting: 'not-awaiting-approval',
  stalePlan: 'stale-plan-hash',
  malformed: 'malformed-decision',
  /** An approval whose signature does not hold (unknown/revoked key, wrong signer, other run, stale). */
  badSignature: 'invalid-approval-signature',
  /** Four-eyes: the approver is who requested the run (or created the window that did). */
  fourEyes: 'four-eyes',
} as const;

// ---- the per-host lock (workflows/host-lock.ts) ----

/** A run asks for its host (sent with signal-with-start by the requestHostLock activity). */
export const acquireSignal = defineSignal<[{ runId: string; leaseMs: number }]>('acquire');
/** A run gives its host back, or withdraws its request. */
export const releaseSignal = defineSignal<[{ runId: string }]>('release');
/** The lock tells a run it may run its scripts now. */
export const grantedSignal = defineSignal('granted');
/** The lock tells a waiting run its place in the queue (1 = next). */
export const queuedSignal = defineSignal<[{ position: number; holder: string }]>('queued');
export const hostQueueQuery = defineQuery<{ holder: string | null; waiting: string[] }>('queue');
