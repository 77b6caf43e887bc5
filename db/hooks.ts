import type { ScriptSignature } from '../runtime/script-signing';
import { jsonb, type Db } from './index';

/** A hook script (issue 12, docs/reboot-and-hooks.md): served and verified like a patch script. */
export interface HookRow {
  name: string;
  content: string;
  sha256: string;
  /** Detached Ed25519 signatures (runtime/script-signing.ts); null when uploaded without. */
  signatures: ScriptSignature[] | null;
  updated_by: string;
  updated_at: Date;
}

export type HookMetaRow = Omit<HookRow, 'content' | 'signatures'>;

const hooks = (db: Db) => db<HookRow>('hooks');

/** Insert or replace a hook by name; the row it became. */
export async function upsertHook(db: Db, hook: Omit<HookRow, 'updated_at'>): Promise<HookRow> {
  const [row] = await hooks(db)
    .insert({
      ...hook,
      signatures: hook.signatures ? (jsonb(db, hook.signatures) as unknown as ScriptSignature[]) : null,
      updated_at: db.fn.now() as unknown as Date,
    })
    .onConflict('name')
    .merge(['content', 'sha256', 'signatures', 'updated_by', 'updated_at'])
    .returning('*');
  return row;
}

export function listHooks(db: Db): Promise<HookMetaRow[]> {
  return hooks(db).select('name', 'sha256', 'updated_by', 'updated_at').orderBy('name');
}

export function getHook(db: Db, name: string): Promise<HookRow | undefined> {
  return hooks(db).where({ name }).first();
}

/** The pinned hashes of the named hooks (a run reads them when it is resolved). */
export async function hookHashes(db: Db, names: readonly string[]): Promise<Map<string, string>> {
  if (names.length === 0) return new Map();
  const rows = await hooks(db).whereIn('name', names).select('name', 'sha256');
  return new Map(rows.map((r) => [r.name, r.sha256]));
}
