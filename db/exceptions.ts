import type { Db } from './index';

export interface ExceptionRow {
  id: string;
  agent_id: string;
  /** A Proxmox VE container of the agent's node (its VMID); 0: the agent's host itself. */
  container: number;
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
  const [row] = await exceptions(db)
    .insert(exception)
    .onConflict(['agent_id', 'container', 'package'])
    .ignore()
    .returning('*');
  return row;
}

/** An agent's exceptions; with `container`, only that container's (0: the host's own). */
export function listExceptions(db: Db, agentId: string, container?: number): Promise<ExceptionRow[]> {
  const q = exceptions(db).where({ agent_id: agentId }).orderBy(['container', 'package']);
  return container === undefined ? q : q.where({ container });
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
export async function activeExceptionPatterns(db: Db, agentId: string, container = 0): Promise<string[]> {
  // A container's exceptions are its own: never the node's, never a sibling's.
  const rows = await exceptions(db)
    .where({ agent_id: agentId, container })
    .andWhere((w) => {
      void w.whereNull('expires_at').orWhere('expires_at', '>', db.fn.now()); // builds, does not run
    })
    .orderBy('package')
    .select('package');
  return rows.map((r) => r.package);
}
