/**
 * What the API process tells an operator: one histogram of requests by route pattern and status
 * (and an access log line each), and the fleet's state read from the database at scrape time
 * (runs in progress by phase, runs waiting for approval, agents by status, each accepted agent's
 * last-seen age). The run counters (started, ended by outcome) are the control worker's:
 * control-worker/metrics.ts.
 */
import type { Context, Next } from 'koa';
import { Gauge, Histogram, type Registry } from 'prom-client';
import { AGENT_STATUSES, RUN_PHASES } from '../contract';
import type { Db } from '../db';
import type { Log } from '../runtime/log';
import { secondsSince } from '../runtime/metrics';

/** A request that matched no route is counted under this pattern, never under its raw path. */
const UNMATCHED = 'unmatched';

/** The route pattern (`/v1/runs/:id`) @koa/router matched, or UNMATCHED. */
const routeOf = (ctx: Context): string => (ctx as Context & { _matchedRoute?: string })._matchedRoute ?? UNMATCHED;

/** The run a request concerns: `:id` of a /v1/runs/:id route, or the run POST /v1/runs created. */
function runIdOf(ctx: Context, route: string): string | undefined {
  if (route.startsWith('/v1/runs/:id')) return (ctx as Context & { params?: Record<string, string> }).params?.id;
  if (route === '/v1/runs' && ctx.method === 'POST') {
    const body = ctx.body as { run?: { id?: unknown } } | undefined;
    return typeof body?.run?.id === 'string' ? body.run.id : undefined;
  }
  return undefined;
}

/**
 * Outermost middleware: times the request, counts it by method, route pattern and status, and
 * logs it (`info` for writes and server errors, `debug` for reads: agents read their own record
 * every minute, which would drown the rest). Never the query string, a header or a body.
 */
export function httpObserver(registry: Registry, log: Log) {
  const requests = new Histogram({
    name: 'patchnanny_http_request_duration_seconds',
    help: 'API requests by method, route pattern and status code, and how long they took',
    labelNames: ['method', 'route', 'status'] as const,
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [registry],
  });
  return async (ctx: Context, next: Next): Promise<void> => {
    const start = process.hrtime.bigint();
    try {
      await next();
    } finally {
      const seconds = secondsSince(start);
      const route = routeOf(ctx);
      const status = ctx.status;
      requests.observe({ method: ctx.method, route, status: String(status) }, seconds);
      const level = status >= 500 ? 'error' : ctx.method === 'GET' || ctx.method === 'HEAD' ? 'debug' : 'info';
      const runId = runIdOf(ctx, route);
      log[level](
        { method: ctx.method, route, status, ms: Math.round(seconds * 1000), ...(runId ? { runId } : {}) },
        `${ctx.method} ${route} ${status}`,
      );
    }
  };
}

/**
 * Gauges computed from the database when /metrics is scraped: four small queries (runs not
 * ended, by the phase index; agents), so any number of API processes report the same figures
 * (alert on max()). A failed query leaves its gauge empty for that scrape and says so.
 */
export function fleetGauges(registry: Registry, db: Db, log: Log): void {
  const warn = (what: string) => (err: unknown) => log.warn({ err }, `metrics: reading ${what} failed`);
  /** A gauge of row counts by one column, every known value present (0 when no row has it). */
  const countsBy = (
    name: string,
    help: string,
    label: string,
    known: readonly string[],
    rows: () => Promise<unknown>,
  ) =>
    new Gauge({
      name,
      help,
      labelNames: [label],
      registers: [registry],
      async collect() {
        this.reset();
        const got = await rows().catch(warn(name));
        if (!Array.isArray(got)) return;
        for (const value of known) this.set({ [label]: value }, 0);
        for (const r of got as { key: string; n: number }[]) this.set({ [label]: r.key }, r.n);
      },
    });
  countsBy(
    'patchnanny_runs_in_progress',
    'Runs not ended yet, by phase (queued, planning, awaiting-approval, applying, …)',
    'phase',
    RUN_PHASES.filter((p) => p !== 'done'),
    () => db('patch_runs').whereNull('outcome').groupBy('phase').select('phase as key', db.raw('count(*)::int as n')),
  );
  countsBy(
    'patchnanny_agents',
    'Registered agents by status (pending, accepted, revoked)',
    'status',
    AGENT_STATUSES,
    () => db('agents').groupBy('status').select('status as key', db.raw('count(*)::int as n')),
  );
  new Gauge({
    name: 'patchnanny_runs_awaiting_approval',
    help: 'Runs waiting for an approval now',
    registers: [registry],
    async collect() {
      const rows: unknown = await db('patch_runs')
        .whereNull('outcome')
        .where({ phase: 'awaiting-approval' })
        .select(db.raw('count(*)::int as n'))
        .catch(warn('runs awaiting approval'));
      if (Array.isArray(rows)) this.set((rows as { n: number }[])[0].n);
      else this.reset();
    },
  });
  new Gauge({
    name: 'patchnanny_agent_last_seen_age_seconds',
    help: 'Seconds since each accepted agent last reached the API (it reads its own record every PATCHNANNY_AGENT_CHECK_MS)',
    labelNames: ['agent_id'] as const,
    registers: [registry],
    async collect() {
      this.reset();
      const rows = await db('agents')
        .where({ status: 'accepted' })
        .whereNotNull('last_seen_at')
        .select('id', db.raw('extract(epoch from now() - last_seen_at)::float8 as age'))
        .catch(warn('agents last seen'));
      for (const r of (rows ?? []) as { id: string; age: number }[]) this.set({ agent_id: r.id }, Math.max(0, r.age));
    },
  });
}
