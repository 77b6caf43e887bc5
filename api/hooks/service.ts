import { sha256Hex } from '../../contract/plan-hash';
import type { Db } from '../../db';
import { appendAudit } from '../../db/audit';
import { getHook, hookHashes, listHooks, upsertHook, type HookMetaRow } from '../../db/hooks';
import type { RunHooks } from '../../contract/rollout-policy';
import type { ScriptSignature } from '../../runtime/script-signing';
import { ApiError, notFound } from '../errors';
import type { PutHookBody } from './schema';

export interface HookMeta {
  name: string;
  sha256: string;
  updatedBy: string;
  updatedAt: string;
}

const toMeta = (r: HookMetaRow): HookMeta => ({
  name: r.name,
  sha256: r.sha256,
  updatedBy: r.updated_by,
  updatedAt: r.updated_at.toISOString(),
});

/** Every hook a run or window names must have been uploaded: a 400 naming the field otherwise. */
export async function requireHooks(db: Db, hooks: RunHooks | null | undefined): Promise<void> {
  const named = (['pre', 'post'] as const).flatMap((phase) => {
    const spec = hooks?.[phase];
    return spec ? [{ phase, script: spec.script }] : [];
  });
  const known = await hookHashes(
    db,
    named.map((n) => n.script),
  );
  for (const { phase, script } of named)
    if (!known.has(script))
      throw new ApiError(
        'validation_failed',
        `request body field hooks.${phase}.script: no hook ${script} (upload it with PUT /v1/hooks/${script})`,
        `hooks.${phase}.script`,
      );
}

/**
 * Hook scripts (issue 12, docs/reboot-and-hooks.md). Replacing a hook never changes what a run
 * already resolved executes: the run pinned the old SHA-256, and the agent refuses the new bytes.
 */
export function hooksService({ db }: { db: Db }) {
  async function put(name: string, body: PutHookBody, by: string): Promise<HookMeta & { replaced: string | null }> {
    const sha256 = sha256Hex(body.content);
    return db.transaction(async (trx) => {
      const before = await getHook(trx, name);
      const row = await upsertHook(trx, {
        name,
        content: body.content,
        sha256,
        signatures: body.signatures ?? null,
        updated_by: by,
      });
      await appendAudit(trx, {
        actor: by,
        kind: 'hook.put',
        subject: name,
        detail: {
          sha256,
          previousSha256: before?.sha256 ?? null,
          signedBy: (body.signatures ?? []).map((s) => s.keyId),
        },
      });
      return { ...toMeta(row), replaced: before?.sha256 ?? null };
    });
  }

  async function list(): Promise<HookMeta[]> {
    return (await listHooks(db)).map(toMeta);
  }

  /** With content and signatures (none: `[]`; agents with trusted keys refuse such a hook). */
  async function get(name: string): Promise<HookMeta & { content: string; signatures: ScriptSignature[] }> {
    const row = await getHook(db, name);
    if (!row) throw notFound(`hook ${name}`);
    return { ...toMeta(row), content: row.content, signatures: row.signatures ?? [] };
  }

  return { put, list, get };
}
export type HooksService = ReturnType<typeof hooksService>;
