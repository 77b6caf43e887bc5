/**
 * Every process's log: one JSON object a line on stdout (pino), with `level` as a word, an ISO
 * `time`, `proc` (api, gate, agent) and, on every line that concerns a patch run, `runId` (the
 * run's id = its workflow id). `npm start` renders these lines for people (scripts/dev/start.ts);
 * a service manager or a log shipper takes them as they are. Workflow code never imports this
 * (the sandbox has no pino): workflows log with the SDK's workflow logger, which the Runtime
 * forwards here (sdkLogger).
 */
import pino from 'pino';
import type { Logger as SdkLogger, LogLevel as SdkLevel, LogMetadata } from '@temporalio/common';
import { z } from 'zod';

export type Log = pino.Logger;

export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** PATCHNANNY_LOG_LEVEL: `info` by default; upper case (the SDK's spelling, `WARN`) is accepted too. */
export const LogLevelSetting = z
  .preprocess((v) => (typeof v === 'string' ? v.toLowerCase() : v), z.enum(LOG_LEVELS))
  .default('info');

/** The level from a raw environment, for the logger that must exist before the configuration is parsed. */
export function logLevelOf(env: NodeJS.ProcessEnv = process.env): LogLevel {
  const parsed = LogLevelSetting.safeParse(env.PATCHNANNY_LOG_LEVEL);
  return parsed.success ? parsed.data : 'info';
}

/**
 * Fields never written, whatever a caller passes: credentials by the names this project gives
 * them. Tokens are never logged on purpose either; this is the net under that rule.
 */
const REDACT = [
  'token',
  'authorization',
  'apiKey',
  'password',
  '*.token',
  '*.authorization',
  '*.apiKey',
  '*.password',
  'headers.authorization',
  'req.headers.authorization',
];

/** A process's logger. `destination` defaults to stdout, written synchronously so a line said before exit is not lost. */
export function createLog(proc: string, level: LogLevel, destination?: pino.DestinationStream): Log {
  return pino(
    {
      level,
      base: { proc, pid: process.pid },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      redact: { paths: REDACT, censor: '[redacted]' },
    },
    destination ?? pino.destination({ dest: 1, sync: true }),
  );
}

/** A run's id is its workflow id; runs and only runs have ids of this shape. */
const PATCH_RUN = /^patch-run\./;

/**
 * The Temporal SDK's logger (Runtime.install({ logger })) writing into `log`: SDK, workflow and
 * activity lines become JSON lines like ours. The SDK's `runId` is Temporal's execution id, which
 * is not ours: it becomes `temporalRunId`, and a patch run's workflow id becomes `runId`.
 */
export function sdkLogger(log: Log): SdkLogger {
  const emit = (level: SdkLevel, message: string, meta: LogMetadata = {}) => {
    const { runId, workflowId, error, ...rest } = meta as Record<string, unknown>;
    const fields: Record<string, unknown> = { ...rest, component: 'temporal-sdk' };
    if (typeof workflowId === 'string') {
      fields.workflowId = workflowId;
      if (PATCH_RUN.test(workflowId)) fields.runId = workflowId;
    }
    if (runId !== undefined) fields.temporalRunId = runId;
    if (error !== undefined) fields.err = error;
    log[level.toLowerCase() as LogLevel](fields, message);
  };
  return {
    log: emit,
    trace: (m, meta) => emit('TRACE', m, meta),
    debug: (m, meta) => emit('DEBUG', m, meta),
    info: (m, meta) => emit('INFO', m, meta),
    warn: (m, meta) => emit('WARN', m, meta),
    error: (m, meta) => emit('ERROR', m, meta),
  };
}

/** An Error's message, or the thing itself as text (for a log line's message). */
export const errorText = (err: unknown) => (err instanceof Error ? err.message : String(err));
