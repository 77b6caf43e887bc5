/**
 * The review desk's reads (issue 17): runs awaiting approval with their plans, and each host's
 * compliance from its run history. Read-only; the decisions themselves go through the runs'
 * workflows like any other approval.
 */
import type { RunOutcome, RunMode } from '../contract';
import type { Db } from './index';
import type { RunPackageRow } from './runs';

/** A run waiting for a decision, with what the desk shows of its host. */
export interface AwaitingRunRow {
  id: string;
  agent_id: string;
  hostname: string;
  container: number | null;
  plan_hash: string;
  requested_by: string;
  four_eyes: boolean;
  exclusions: string[];
  reboot_required: boolean | null;
  reboot_reason: string | null;
  window_id: string | null;
  created_at: Date;
  /** When the run began to wait: its plan was recorded (nothing else updates a waiting run's row). */
  updated_at: Date;
}

/** Every run awaiting approval, oldest waiting first. */
export function listAwaitingRuns(db: Db): Promise<AwaitingRunRow[]> {
  return db('patch_runs as r')
    .join('agents as a', 'a.id', 'r.agent_id')
    .where('r.phase', 'awaiting-approval')
    .whereNull('r.outcome')
    .whereNotNull('r.plan_hash')
    .orderBy([
      { column: 'r.updated_at', order: 'asc' },
      { column: 'r.id', order: 'asc' },
    ])
    .select(
      'r.id',
      'r.agent_id',
      'a.hostname',
      'r.container',
      'r.plan_hash',
      'r.requested_by',
      'r.four_eyes',
      'r.exclusions',
      'r.reboot_required',
      'r.reboot_reason',
      'r.window_id',
      'r.created_at',
      'r.updated_at',
    );
}

/** Package rows of one kind for these runs (one query however many runs). */
export function packagesOfRuns(
  db: Db,
  runIds: readonly string[],
  kind: RunPackageRow['kind'],
): Promise<RunPackageRow[]> {
  if (runIds.length === 0) return Promise.resolve([]);
  return db<RunPackageRow>('run_packages')
    .whereIn('run_id', runIds)
    .where({ kind })
    .orderBy(['run_id', 'name', 'arch']);
}

/** The held packages of every run awaiting approval (one join, not a list of 1,000 ids). */
export function heldOfAwaitingRuns(db: Db): Promise<RunPackageRow[]> {
  return db('run_packages as p')
    .join('patch_runs as r', 'r.id', 'p.run_id')
    .where('r.phase', 'awaiting-approval')
    .whereNull('r.outcome')
    .where('p.kind', 'held')
    .orderBy(['p.run_id', 'p.name', 'p.arch'])
    .select('p.*');
}

/** What each host's compliance is computed from; host runs only (a container's are its own). */
export interface HostComplianceRow {
  agent_id: string;
  /** Finish of the latest apply that completed. */
  last_applied_at: Date | null;
  /** The latest run that has a plan. */
  plan_run_id: string | null;
  plan_run_mode: RunMode | null;
  plan_run_outcome: RunOutcome | null;
  plan_at: Date | null;
  /** The latest run that ended. */
  last_run_id: string | null;
  last_outcome: RunOutcome | null;
  last_failure_reason: string | null;
  last_finished_at: Date | null;
  /** The host's reboot state from its latest run that reported one, and since when it has been true. */
  reboot_required: boolean | null;
  reboot_reason: string | null;
  reboot_since: Date | null;
}

/**
 * One row per agent: its latest plan, latest outcome, latest apply that completed and reboot
 * state. Lateral subqueries over the (agent_id, created_at) order, so it stays one query a fleet.
 */
export async function hostCompliance(db: Db): Promise<HostComplianceRow[]> {
  const { rows } = await db.raw<{ rows: HostComplianceRow[] }>(
    `select a.id as agent_id,
            applied.finished_at as last_applied_at,
            plan.id as plan_run_id, plan.mode as plan_run_mode, plan.outcome as plan_run_outcome,
            plan.updated_at as plan_at,
            last.id as last_run_id, last.outcome as last_outcome, last.failure_reason as last_failure_reason,
            last.finished_at as last_finished_at,
            reboot.reboot_required, reboot.reboot_reason,
            case when reboot.reboot_required then (
              select min(coalesce(s.finished_at, s.updated_at)) from patch_runs s
               where s.agent_id = a.id and s.container is null and s.reboot_required
                 and s.created_at > coalesce((
                   select max(f.created_at) from patch_runs f
                    where f.agent_id = a.id and f.container is null and f.reboot_required = false), '-infinity')
            ) end as reboot_since
       from agents a
       left join lateral (
         select max(r.finished_at) as finished_at from patch_runs r
          where r.agent_id = a.id and r.container is null and r.mode = 'apply' and r.outcome = 'completed'
       ) applied on true
       left join lateral (
         select r.id, r.mode, r.outcome, r.updated_at from patch_runs r
          where r.agent_id = a.id and r.container is null and r.plan_hash is not null
          order by r.created_at desc, r.id desc limit 1
       ) plan on true
       left join lateral (
         select r.id, r.outcome, r.failure_reason, r.finished_at from patch_runs r
          where r.agent_id = a.id and r.container is null and r.outcome is not null
          order by r.finished_at desc nulls last, r.id desc limit 1
       ) last on true
       left join lateral (
         select r.reboot_required, r.reboot_reason from patch_runs r
          where r.agent_id = a.id and r.container is null and r.reboot_required is not null
          order by r.created_at desc, r.id desc limit 1
       ) reboot on true
      order by a.id`,
  );
  return rows;
}

/**
 * Per run: how many packages its plan has, and how many are security fixes — as the manager named
 * them (issue 16's `security`), else, when it said nothing, by a repository whose name says security.
 */
export async function planCounts(
  db: Db,
  runIds: readonly string[],
): Promise<Map<string, { packages: number; security: number; held: string[] }>> {
  const out = new Map<string, { packages: number; security: number; held: string[] }>();
  if (runIds.length === 0) return out;
  const rows = await db('run_packages')
    .whereIn('run_id', runIds)
    .whereIn('kind', ['planned', 'held'])
    .groupBy('run_id')
    .select<{ run_id: string; packages: string; security: string; held: string[] }[]>(
      'run_id',
      db.raw(`count(*) filter (where kind = 'planned') as packages`),
      db.raw(`count(*) filter (where kind = 'planned' and coalesce(security, repo ~* 'security')) as security`),
      db.raw(`coalesce(array_agg(name order by name) filter (where kind = 'held'), '{}') as held`),
    );
  for (const r of rows) out.set(r.run_id, { packages: Number(r.packages), security: Number(r.security), held: r.held });
  return out;
}

/** Every agent's active exception patterns for its host (container 0), by agent. */
export async function activeExceptionsByAgent(db: Db): Promise<Map<string, string[]>> {
  const rows = await db('package_exceptions')
    .where({ container: 0 })
    .andWhere((w) => {
      void w.whereNull('expires_at').orWhere('expires_at', '>', db.fn.now()); // builds, does not run
    })
    .orderBy(['agent_id', 'package'])
    .select<{ agent_id: string; package: string }[]>('agent_id', 'package');
  const out = new Map<string, string[]>();
  for (const r of rows) out.set(r.agent_id, [...(out.get(r.agent_id) ?? []), r.package]);
  return out;
}
