import type { Family } from '../contract';
import type { ScriptSignature } from '../runtime/script-signing';
import type { Db } from './index';

export interface ScriptRow {
  name: string;
  family: Family;
  content: string;
  sha256: string;
  /** The Ed25519 signatures of `<name>.sig` (runtime/script-signing.ts); null when it had none. */
  signatures: ScriptSignature[] | null;
  updated_at: Date;
}

export type ScriptMetaRow = Omit<ScriptRow, 'content' | 'signatures'>;

const scripts = (db: Db) => db<ScriptRow>('scripts');

/** Insert or replace a script by name, pinning its SHA-256. */
export async function upsertScript(db: Db, script: Omit<ScriptRow, 'updated_at'>): Promise<void> {
  await scripts(db)
    .insert({
      ...script,
      // jsonb: an array is passed as JSON text (pg would send a JS array as a Postgres array).
      signatures: script.signatures ? (JSON.stringify(script.signatures) as unknown as ScriptSignature[]) : null,
      updated_at: db.fn.now(),
    })
    .onConflict('name')
    .merge(['family', 'content', 'sha256', 'signatures', 'updated_at']);
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
