import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { Family } from '../../contract';
import { sha256Hex } from '../../contract/plan-hash';
import type { Db } from '../../db';
import { deleteScriptsExcept, getScript, listScripts, upsertScript, type ScriptMetaRow } from '../../db/scripts';
import { notFound } from '../errors';

export interface ScriptsDeps {
  db: Db;
}

export interface ScriptMeta {
  name: string;
  family: Family;
  sha256: string;
  updatedAt: string;
}

const toMeta = (r: ScriptMetaRow): ScriptMeta => ({
  name: r.name,
  family: r.family,
  sha256: r.sha256,
  updatedAt: r.updated_at.toISOString(),
});

export function scriptsService({ db }: ScriptsDeps) {
  /**
   * Load every `<family>-update.sh` of a folder into the scripts table, pinning its SHA-256 (at
   * start). The folder is the truth: a script it no longer has (yum-update.sh, gone since the
   * yum family runs dnf-update.sh) is removed, so it is neither listed nor served.
   */
  async function load(dir: string): Promise<ScriptMeta[]> {
    const loaded: ScriptMeta[] = [];
    for (const file of (await readdir(dir)).sort()) {
      const m = /^([a-z]+)-update\.sh$/.exec(file);
      const family = m ? Family.safeParse(m[1]) : null;
      if (!family?.success) continue;
      const content = await readFile(path.join(dir, file), 'utf8');
      const sha256 = sha256Hex(content);
      await upsertScript(db, { name: file, family: family.data, content, sha256 });
      loaded.push({ name: file, family: family.data, sha256, updatedAt: new Date().toISOString() });
    }
    await deleteScriptsExcept(
      db,
      loaded.map((s) => s.name),
    );
    return loaded;
  }

  async function list(): Promise<ScriptMeta[]> {
    return (await listScripts(db)).map(toMeta);
  }

  async function get(name: string): Promise<ScriptMeta & { content: string }> {
    const row = await getScript(db, name);
    if (!row) throw notFound(`script ${name}`);
    return { ...toMeta(row), content: row.content };
  }

  return { load, list, get };
}
export type ScriptsService = ReturnType<typeof scriptsService>;
