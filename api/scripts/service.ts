import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import type { Knex } from 'knex';
import { Family } from '../../contract';
import { sha256Hex } from '../../contract/plan-hash';

export interface ScriptMeta {
  name: string;
  family: Family;
  sha256: string;
  updatedAt: string;
}

/** Load every `<family>-update.sh` of a folder into the scripts table, pinning its SHA-256. */
export async function loadScripts(db: Knex, dir: string): Promise<ScriptMeta[]> {
  const loaded: ScriptMeta[] = [];
  for (const file of (await readdir(dir)).sort()) {
    const m = /^([a-z]+)-update\.sh$/.exec(file);
    const family = m ? Family.safeParse(m[1]) : null;
    if (!family?.success) continue;
    const content = await readFile(path.join(dir, file), 'utf8');
    const sha256 = sha256Hex(content);
    await db('scripts')
      .insert({ name: file, family: family.data, content, sha256, updated_at: db.fn.now() })
      .onConflict('name')
      .merge(['family', 'content', 'sha256', 'updated_at']);
    loaded.push({ name: file, family: family.data, sha256, updatedAt: new Date().toISOString() });
  }
  return loaded;
}

export async function listScripts(db: Knex): Promise<ScriptMeta[]> {
  const rows = await db('scripts').select('name', 'family', 'sha256', 'updated_at').orderBy('name');
  return rows.map((r) => ({
    name: r.name,
    family: r.family,
    sha256: r.sha256,
    updatedAt: new Date(r.updated_at).toISOString(),
  }));
}

export async function getScript(db: Knex, name: string): Promise<(ScriptMeta & { content: string }) | null> {
  const r = await db('scripts').where({ name }).first();
  return r
    ? {
        name: r.name,
        family: r.family,
        sha256: r.sha256,
        updatedAt: new Date(r.updated_at).toISOString(),
        content: r.content,
      }
    : null;
}
