/**
 * Patch baselines (issue 12) and the first-seen record of candidate versions their
 * "security fixes after N days" rule reads (contract/baselines.ts says how a plan is covered).
 */
import type { BaselineRules } from '../contract/baselines';
import type { PlanPackage } from '../contract';
import { jsonb, pgRow, type Db } from './index';

export interface BaselineRow {
  id: string;
  name: string;
  selector: string;
  rules: BaselineRules;
  enabled: boolean;
  note: string;
  created_by: string;
  /** The admin whose version of the baseline is in force: four-eyes runs are not approved by theirs. */
  updated_by: string;
  created_at: Date;
  updated_at: Date;
}

export type BaselineValues = Pick<BaselineRow, 'name' | 'selector' | 'rules' | 'enabled' | 'note'>;

const baselines = (db: Db) => db<BaselineRow>('patch_baselines');

/** Undefined when the name is taken. */
export async function insertBaseline(
  db: Db,
  id: string,
  values: BaselineValues,
  by: string,
): Promise<BaselineRow | undefined> {
  const [row] = await baselines(db)
    .insert({
      id,
      ...values,
      rules: jsonb(db, values.rules) as unknown as BaselineRules,
      created_by: by,
      updated_by: by,
    })
    .onConflict('name')
    .ignore()
    .returning('*');
  return row;
}

export function getBaseline(db: Db, id: string): Promise<BaselineRow | undefined> {
  return baselines(db).where({ id }).first();
}

export function listBaselines(db: Db): Promise<BaselineRow[]> {
  return baselines(db).orderBy('name');
}

export function enabledBaselines(db: Db): Promise<BaselineRow[]> {
  return baselines(db).where({ enabled: true }).orderBy('name');
}

/** The row before and after; undefined when unknown. Throws on a name another baseline has (unique). */
export async function replaceBaseline(
  db: Db,
  id: string,
  values: BaselineValues,
  by: string,
): Promise<{ before: BaselineRow; after: BaselineRow } | undefined> {
  const before = await baselines(db).where({ id }).forUpdate().first();
  if (!before) return undefined;
  const [after] = await baselines(db)
    .where({ id })
    .update({
      ...values,
      rules: jsonb(db, values.rules) as unknown as BaselineRules,
      updated_by: by,
      updated_at: db.fn.now() as unknown as Date,
    })
    .returning('*');
  return { before, after };
}

export async function deleteBaseline(db: Db, id: string): Promise<BaselineRow | undefined> {
  const [row] = await baselines(db).where({ id }).delete().returning('*');
  return row;
}

/**
 * Remember the candidates of a run's plan as seen now, unless seen before (the first time
 * stays). Scope: the OS id and family the run's script serves (the container's for a container
 * run), so Debian's and Ubuntu's same-named versions are not taken for one another.
 */
/**
 * Names from an agent may hold a NUL, which PostgreSQL refuses in text: stored (and looked up) as
 * U+FFFD by pgRow, so a control write can never fail for ever on one byte. A looked-up name that
 * differs from the plan's is simply not covered: that plan waits for a person.
 */
export async function recordFirstSeen(db: Db, runId: string, plan: readonly PlanPackage[]): Promise<void> {
  const rows = plan.filter((p) => p.candidate !== null);
  if (rows.length === 0) return;
  await db.raw(
    `insert into package_first_seen (scope, name, arch, candidate)
     select s.scope, p.name, p.arch, p.candidate
       from (select coalesce(c.os->>'id', a.os_id) || '/' || coalesce(c.family, a.family) as scope
               from patch_runs r
               join agents a on a.id = r.agent_id
               left join pve_containers c on c.agent_id = r.agent_id and c.vmid = r.container
              where r.id = ?) s,
            jsonb_to_recordset(?::jsonb) as p(name text, arch text, candidate text)
     on conflict do nothing`,
    [runId, JSON.stringify(rows.map((p) => pgRow({ name: p.name, arch: p.arch, candidate: p.candidate })))],
  );
}

/** When each candidate of a run's plan was first seen, in the run's scope: `name\0arch\0candidate` → time. */
export async function firstSeenFor(db: Db, runId: string, plan: readonly PlanPackage[]): Promise<Map<string, Date>> {
  const rows = plan.filter((p) => p.candidate !== null);
  if (rows.length === 0) return new Map();
  const { rows: found } = await db.raw<{
    rows: { name: string; arch: string; candidate: string; first_seen_at: Date }[];
  }>(
    `select f.name, f.arch, f.candidate, f.first_seen_at
       from package_first_seen f
       join (select coalesce(c.os->>'id', a.os_id) || '/' || coalesce(c.family, a.family) as scope
               from patch_runs r
               join agents a on a.id = r.agent_id
               left join pve_containers c on c.agent_id = r.agent_id and c.vmid = r.container
              where r.id = ?) s on s.scope = f.scope
       join jsonb_to_recordset(?::jsonb) as p(name text, arch text, candidate text)
         on p.name = f.name and p.arch = f.arch and p.candidate = f.candidate`,
    [runId, JSON.stringify(rows.map((p) => pgRow({ name: p.name, arch: p.arch, candidate: p.candidate })))],
  );
  return new Map(found.map((r) => [`${r.name}\u0000${r.arch}\u0000${r.candidate}`, r.first_seen_at]));
}
