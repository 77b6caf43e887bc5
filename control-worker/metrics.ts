/**
 * The control worker's run counters and run lines: a run starts when its workflow claims its row
 * (API and window runs alike) and ends when its outcome is recorded. Counted by the process that
 * did it, so several control workers add up (sum by outcome). A write the SDK retries after it
 * succeeded (a local activity re-run with its workflow task) can count once more: rare, and said
 * in docs/observability.md.
 */
import { Counter, type Registry } from 'prom-client';
import type { RunObserver } from '../activities/control';
import { RUN_OUTCOMES } from '../contract';
import type { Log } from '../runtime/log';

export function runObserver(registry: Registry, log: Log): RunObserver {
  const started = new Counter({
    name: 'patchnanny_runs_started_total',
    help: 'Patch runs whose workflow claimed its run row, by mode (dry-run, apply)',
    labelNames: ['mode'] as const,
    registers: [registry],
  });
  const ended = new Counter({
    name: 'patchnanny_runs_ended_total',
    help: 'Patch runs ended, by outcome (completed, failed, rejected, expired, plan-drift, …)',
    labelNames: ['outcome'] as const,
    registers: [registry],
  });
  // Every label value from the start, so increase() sees the first run of each kind.
  for (const mode of ['dry-run', 'apply']) started.inc({ mode }, 0);
  for (const outcome of RUN_OUTCOMES) ended.inc({ outcome }, 0);
  return {
    started(runId, mode) {
      started.inc({ mode });
      log.info({ runId, mode }, 'run started');
    },
    ended(runId, outcome, failureReason) {
      ended.inc({ outcome });
      log.info({ runId, outcome, failureReason }, `run ended: ${outcome}`);
    },
  };
}
