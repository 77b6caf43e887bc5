import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { Family } from '../../contract';
import { sha256Hex } from '../../contract/plan-hash';
import type { Db } from '../../db';
import { deleteScriptsExcept, getScript, listScripts, upsertScript, type ScriptMetaRow } from '../../db/scripts';
import { notFound } from '../errors';
import { SignatureFile, sigPathFor, type ScriptSignature } from '../../runtime/script-signing';

export interface ScriptsDeps {
  db: Db;
}

export interface ScriptMeta {
  name: string;
  family: Family;
  sha256: string;
  updatedAt: string;
}

/**
 * `<script>.sig` next to a script, if there is one. The API checks only its form: it holds no
 * trusted keys and is not what the agents trust (a signature is verified on the host).
 */
async function readSignatures(scriptPath: string): Promise<ScriptSignature[] | null> {
  let text: string;
  try {
    text = await readFile(sigPathFor(scriptPath), 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
  const parsed = SignatureFile.safeParse(JSON.parse(text));
  if (!parsed.success) throw new Error(`${sigPathFor(scriptPath)} is not a signature file: ${parsed.error.message}`);
  return parsed.data.signatures;
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
   * yum family runs dnf-update.sh) is removed, so it is neither listed nor served. Its detached
   * signatures (`<name>.sig`, written by `npm run sign:scripts`) are loaded with it.
   */
  async function load(dir: string): Promise<(ScriptMeta & { signedBy: string[] })[]> {
    const loaded: (ScriptMeta & { signedBy: string[] })[] = [];
    for (const file of (await readdir(dir)).sort()) {
      const m = /^([a-z]+)-update\.sh$/.exec(file);
      const family = m ? Family.safeParse(m[1]) : null;
      if (!family?.success) continue;
      const content = await readFile(path.join(dir, file), 'utf8');
      const sha256 = sha256Hex(content);
      const signatures = await readSignatures(path.join(dir, file));
      await upsertScript(db, { name: file, family: family.data, content, sha256, signatures });
      loaded.push({
        name: file,
        family: family.data,
        sha256,
        updatedAt: new Date().toISOString(),
        signedBy: (signatures ?? []).map((s) => s.keyId),
      });
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

  /** With its signatures (none: `[]`; agents with trusted keys refuse such a script). */
  async function get(name: string): Promise<ScriptMeta & { content: string; signatures: ScriptSignature[] }> {
    const row = await getScript(db, name);
    if (!row) throw notFound(`script ${name}`);
    return { ...toMeta(row), content: row.content, signatures: row.signatures ?? [] };
  }

  return { load, list, get };
}
export type ScriptsService = ReturnType<typeof scriptsService>;
