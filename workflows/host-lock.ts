/**
 * One run at a time per host, the Temporal way: a long-lived `host-lock.<agentId>` workflow
 * hands the host to one run at a time, first come first served (the mutex pattern of Temporal's
 * samples). Runs hold it only while their scripts run (plan; re-plan + apply), never while they
 * wait for an approval. A holder that vanished without releasing (terminated, not cancelled)
 * loses the host when its lease — a bound on its own script timeouts — runs out.
 */
import { condition, continueAsNew, getExternalWorkflowHandle, setHandler, workflowInfo } from '@temporalio/workflow';
import type { PatchRunInput } from '../contract';
import { hostLockId, parseRunId } from '../contract/run-id';
import { controlBySignal } from './activities';
import { acquireSignal, grantedSignal, hostQueueQuery, queuedSignal, releaseSignal } from './messages';

interface Waiter {
  runId: string;
  leaseMs: number;
}
interface Holder extends Waiter {
  until: number;
}
export interface HostLockInput {
  agentId: string;
  waiting?: Waiter[];
  holder?: Holder | null;
}

export async function hostLock(input: HostLockInput): Promise<void> {
  const waiting: Waiter[] = input.waiting ?? [];
  let holder: Holder | null = input.holder ?? null;
  let told = new Map<string, number>();

  setHandler(acquireSignal, (w) => {
    // Signals carry no sender: at least only this host's runs may queue for it (a forged request
    // naming a run of another host, or not a run at all, would hold the host for its lease).
    if (parseRunId(w.runId)?.agentId !== input.agentId) return;
    if (holder?.runId === w.runId || waiting.some((x) => x.runId === w.runId)) return;
    waiting.push({ runId: w.runId, leaseMs: w.leaseMs });
  });
  setHandler(releaseSignal, ({ runId }) => {
    if (holder?.runId === runId) holder = null;
    const i = waiting.findIndex((x) => x.runId === runId);
    if (i >= 0) waiting.splice(i, 1);
  });
  setHandler(hostQueueQuery, () => ({ holder: holder?.runId ?? null, waiting: waiting.map((w) => w.runId) }));

  /** Tell each waiting run its place when it changed (a visible `queued` phase). */
  const tellPositions = async (current: Holder) => {
    const next = new Map<string, number>();
    for (const [i, w] of waiting.entries()) {
      next.set(w.runId, i + 1);
      if (told.get(w.runId) === i + 1) continue;
      await getExternalWorkflowHandle(w.runId)
        .signal(queuedSignal, { position: i + 1, holder: current.runId })
        .catch(() => undefined); // a run that is gone is dropped when its turn comes
    }
    told = next;
  };

  for (;;) {
    if (holder === null && waiting.length > 0) {
      const next = waiting.shift()!;
      holder = { ...next, until: Date.now() + next.leaseMs };
      try {
        await getExternalWorkflowHandle(next.runId).signal(grantedSignal);
      } catch {
        holder = null; // the run is gone
        continue;
      }
    }
    // Idle: end now; the next request starts the lock again (signal-with-start). Lingering cost a
    // timer and a workflow task per run for nothing when a host runs one run at a time.
    if (holder === null) return;
    await tellPositions(holder);
    // The holder may have released while the positions were being signalled (a signal handler
    // ran during that await): hand the host on, or end, from the top. Found by the cluster test,
    // where a server process dying slows those signals down; reading `until` of null here failed
    // every workflow task of the lock for good and left its waiting runs queued for ever.
    if (holder === null) continue;
    const h: Holder = holder;
    const moved = await condition(
      () => holder !== h || waiting.some((w) => !told.has(w.runId)),
      Math.max(1, h.until - Date.now()),
    );
    if (!moved) holder = null; // lease ran out: the holder is gone or overran its own timeouts
    if (workflowInfo().continueAsNewSuggested) {
      await continueAsNew<typeof hostLock>({ agentId: input.agentId, waiting, holder });
    }
  }
}

/**
 * A run's side of its host's lock: `acquire` asks for the host and waits its turn (telling
 * `onQueued` its place while another run has the host); `release` gives it back or withdraws
 * the request.
 */
export function hostTurns(
  input: PatchRunInput,
  onQueued: (queue: { position: number; holder: string }) => Promise<void>,
) {
  const { agentId, runId } = input;
  let granted = false;
  let requested = false;
  let queued: { position: number; holder: string } | null = null;
  setHandler(grantedSignal, () => void (granted = true));
  setHandler(queuedSignal, (q) => void (queued = q));
  // A bound on how long one turn can legitimately last: pickup and script time of every attempt.
  const leaseMs = (input.timeouts.agentPickupMs + input.timeouts.scriptMs + 120_000) * 8;

  return {
    async acquire(): Promise<void> {
      granted = false;
      queued = null;
      requested = true;
      await controlBySignal.requestHostLock({ agentId, runId, leaseMs });
      for (;;) {
        await condition(() => granted || queued !== null);
        if (granted) return;
        const q = queued!;
        queued = null;
        await onQueued(q);
      }
    },
    async release(): Promise<void> {
      if (!requested) return;
      requested = false;
      granted = false;
      await getExternalWorkflowHandle(hostLockId(agentId))
        .signal(releaseSignal, { runId })
        .catch(() => undefined); // the lock is gone only after our lease ran out
    },
  };
}
