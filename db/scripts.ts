import type { Family } from '../contract';
import type { Db } from './index';

export interface ScriptRow {
  name: string;
  family: Family;
  content: string;
  sha256: string;
  updated_at: Date;
}

export type ScriptMetaRow = Omit<ScriptRow, 'content'>;

const scripts = (db: Db) => db<ScriptRow>('scripts');

/** Insert or replace a script by name, pinning its SHA-256. */
export async function upsertScript(db: Db, script: Omit<ScriptRow, 'updated_at'>): Promise<void> {
  await scripts(db)
    .insert({ ...script, updated_at: db.fn.now() })
    .onConflict('name')
    .merge(['family', 'content', 'sha256', 'updated_at']);
}

/** Forget every script not named here (one no longer shipped is no longer served). */
export async function deleteScriptsExcept(db: Db, names: readonly string[]): Promise<void> {
  await scripts(db).whereNotIn('name', names).delete();
}

export function listScripts(db: Db): Promise<ScriptMetaRow[]> {
  return scripts(db).select('name', 'family', 'sha256', 'updated_at').orderBy('name');
}

export function getScript(db: Db, name: string): Promise<ScriptRow | undefined> {
  return scripts(db).where({ name }).first();
}

/** The pinned hash alone (a run reads it at plan time; the content is the agent's business). */
export async function scriptSha256(db: Db, name: string): Promise<string | undefined> {
  const row = await scripts(db).where({ name }).first('sha256');
  return row?.sha256;
}
