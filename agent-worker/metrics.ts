/**
 * The agent's metrics and run lines, from one activity interceptor: every activity it executes
 * (hashVerify, scriptExecute) counted and timed by type and result, and patch scripts timed by
 * mode and how they ended. Each activity's start and end is logged with the run id (the
 * activity's workflow id), never its arguments or the script's output.
 */
import type { ActivityInterceptorsFactory } from '@temporalio/worker';
import { CancelledFailure } from '@temporalio/common';
import { Histogram, type Registry } from 'prom-client';
import type { Log } from '../runtime/log';
import { secondsSince } from '../runtime/metrics';

/** Seconds: a hash check takes milliseconds, a dry-run seconds, an apply up to the script timeout (1 h by default). */
const BUCKETS = [0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600];

export function activityObserver(registry: Registry, log: Log): ActivityInterceptorsFactory {
  const activities = new Histogram({
    name: 'patchnanny_agent_activity_duration_seconds',
    help: 'Activities this agent executed, by type and result (completed, failed, cancelled), and how long they took',
    labelNames: ['activity', 'result'] as const,
    buckets: BUCKETS,
    registers: [registry],
  });
  const scripts = new Histogram({
    name: 'patchnanny_agent_script_duration_seconds',
    help: 'Patch scripts this agent ran, by mode (dry-run, apply) and result (ok, nonzero-exit, error, cancelled)',
    labelNames: ['mode', 'result'] as const,
    buckets: BUCKETS,
    registers: [registry],
  });
  return (ctx) => ({
    inbound: {
      async execute(input, next) {
        const { activityType, workflowExecution } = ctx.info;
        const runId = workflowExecution?.workflowId;
        const arg = input.args[0] as { mode?: unknown } | undefined;
        const mode = activityType === 'scriptExecute' && typeof arg?.mode === 'string' ? arg.mode : undefined;
        const start = process.hrtime.bigint();
        log.info({ runId, activity: activityType, mode }, `${activityType} started`);
        const done = (result: string, scriptResult: string, err?: unknown) => {
          const seconds = secondsSince(start);
          activities.observe({ activity: activityType, result }, seconds);
          if (mode) scripts.observe({ mode, result: scriptResult }, seconds);
          const fields = { runId, activity: activityType, mode, result, ms: Math.round(seconds * 1000) };
          if (err) log.warn({ ...fields, err }, `${activityType} ${result}`);
          else log.info(fields, `${activityType} ${result}`);
        };
        try {
          const out = await next(input);
          const exitCode = (out as { exitCode?: unknown } | undefined)?.exitCode;
          done('completed', exitCode === 0 ? 'ok' : 'nonzero-exit');
          return out;
        } catch (err) {
          const cancelled = err instanceof CancelledFailure || ctx.cancellationSignal.aborted;
          done(cancelled ? 'cancelled' : 'failed', cancelled ? 'cancelled' : 'error', err);
          throw err;
        }
      },
    },
  });
}
