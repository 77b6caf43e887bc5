import type { Db } from './index';

export interface ExceptionRow {
  id: string;
  agent_id: string;
  /** Package name or simple `*` glob, legal for the agent's family. */
  package: string;
  reason: string;
  created_by: string;
  created_at: Date;
  updated_at: Date;
  expires_at: Date | null;
}

export type NewException = Omit<ExceptionRow, 'created_at' | 'updated_at'>;
export type ExceptionChange = Partial<Pick<ExceptionRow, 'package' | 'reason' | 'expires_at'>>;

const exceptions = (db: Db) => db<ExceptionRow>('package_exceptions');

/** Undefined when the agent already has an exception for that package. */
export async function insertException(db: Db, exception: NewException): Promise<ExceptionRow | undefined> {
  const [row] = await exceptions(db).insert(exception).onConflict(['agent_id', 'package']).ignore().returning('*');
  return row;
}

export function listExceptions(db: Db, agentId: string): Promise<ExceptionRow[]> {
  return exceptions(db).where({ agent_id: agentId }).orderBy('package');
}

/** Undefined when the agent has no exception `id`. */
export async function updateException(
  db: Db,
  agentId: string,
  id: string,
  change: ExceptionChange,
): Promise<ExceptionRow | undefined> {
  const [row] = await exceptions(db)
    .where({ id, agent_id: agentId })
    .update({ ...change, updated_at: db.fn.now() })
    .returning('*');
  return row;
}

/** Whether there was such an exception to delete. */
export async function deleteException(db: Db, agentId: string, id: string): Promise<boolean> {
  return (await exceptions(db).where({ id, agent_id: agentId }).delete()) > 0;
}

/** Patterns a run must exclude now: this agent's package exceptions that have not expired. */
export async function activeExceptionPatterns(db: Db, agentId: string): Promise<string[]> {
  const rows = await exceptions(db)
    .where({ agent_id: agentId })
    .andWhere((w) => {
      void w.whereNull('expires_at').orWhere('expires_at', '>', db.fn.now()); // builds, does not run
    })
    .orderBy('package')
    .select('package');
  return rows.map((r) => r.package);
}
