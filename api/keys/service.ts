import type { Client } from '@temporalio/client';
import { WorkflowNotFoundError } from '@temporalio/common';
import { fromBase64Url } from '../../contract/approval';
import { openRunIds } from '../../db/runs';
import { pool } from '../../runtime/pool';
import { approverKeysWithdrawnSignal } from '../../workflows/messages';
import { approverKeyId } from '../../contract/approval-key-id';
import { mayDecide } from '../../contract/roles';
import type { Db } from '../../db';
import {
  getApproverKey,
  insertApproverKey,
  listApproverKeys,
  revokeApproverKey,
  type ApproverKeyRow,
} from '../../db/approver-keys';
import { appendAudit } from '../../db/audit';
import { getUser } from '../../db/users';
import type { Principal } from '../auth';
import type { AdminToken } from '../env';
import { ApiError, notFound } from '../errors';
import type { CreateKeyBody } from './schema';
import { iso } from '../views';

/**
 * Tell every open run that these approver keys no longer count (revoked, or their owner disabled
 * or no longer an approver): each run pinned the keys valid when it started and would otherwise
 * still accept them (workflows/patch-run.ts). Repeating it is harmless; a run Temporal could not
 * reach makes the whole call fail, so the admin repeats the request.
 */
export async function withdrawKeysFromOpenRuns(db: Db, temporal: Client, keyIds: string[]): Promise<void> {
  if (keyIds.length === 0) return;
  const failed: string[] = [];
  await pool(await openRunIds(db), 8, async (runId) => {
    try {
      await temporal.workflow.getHandle(runId).signal(approverKeysWithdrawnSignal, { keyIds });
    } catch (err) {
      // Ended meanwhile, or its workflow not started yet (its claim reads the keys valid now).
      if (err instanceof WorkflowNotFoundError) return;
      failed.push(`${runId}: ${err instanceof Error ? err.message : String(err)}`);
    }
  });
  if (failed.length > 0)
    throw new ApiError(
      'unavailable',
      `keys ${keyIds.join(', ')} no longer count, but ${failed.length} open runs could not be told (repeat the request): ${failed.slice(0, 5).join('; ')}`,
    );
}

function toKey(r: ApproverKeyRow) {
  return {
    id: r.id,
    owner: r.owner,
    publicKey: r.public_key,
    createdBy: r.created_by,
    createdAt: r.created_at.toISOString(),
    revokedAt: iso(r.revoked_at),
    revokedBy: r.revoked_by,
  };
}

export function keysService({ db, admins, temporal }: { db: Db; admins: AdminToken[]; temporal: Client }) {
  /** Only someone who may approve holds an approval key: an admin or approver user, or a bootstrap admin. */
  async function mayApprove(owner: string): Promise<string | null> {
    if (admins.some((a) => a.name === owner)) return null;
    const user = await getUser(db, owner);
    if (!user) return `${owner} is not a user`;
    if (user.disabled_at) return `user ${owner} is disabled`;
    if (!mayDecide(user.role)) return `${owner} is a ${user.role}; only approvers and admins hold approval keys`;
    return null;
  }

  /** An admin registers a key for anyone who may approve; an approver only their own. */
  async function create(body: CreateKeyBody, caller: Principal) {
    if (fromBase64Url(body.publicKey).length !== 32)
      throw new ApiError('validation_failed', 'publicKey: a 32-byte Ed25519 public key is required', 'publicKey');
    const owner = body.owner ?? caller.name;
    if (caller.role !== 'admin' && owner !== caller.name)
      throw new ApiError('forbidden', `${caller.name} may register only their own key`);
    const refused = await mayApprove(owner);
    if (refused) throw new ApiError('conflict', refused, 'owner');
    const id = approverKeyId(body.publicKey);
    const row = await db.transaction(async (trx) => {
      const key = await insertApproverKey(trx, { id, owner, public_key: body.publicKey, created_by: caller.name });
      if (key)
        await appendAudit(trx, {
          actor: caller.name,
          kind: 'approver-key.enrolled',
          subject: id,
          detail: { owner, publicKey: body.publicKey },
        });
      return key;
    });
    // One public key, one id, one owner: registering it again (even revoked) is refused.
    if (!row) throw new ApiError('conflict', `key ${id} is registered already`);
    return toKey(row);
  }

  const list = async () => (await listApproverKeys(db)).map(toKey);

  /** An admin revokes any key; an approver only their own (a lost laptop must not wait for an admin). */
  async function revoke(id: string, caller: Principal) {
    const existing = await getApproverKey(db, id);
    if (!existing) throw notFound(`key ${id}`);
    if (caller.role !== 'admin' && existing.owner !== caller.name)
      throw new ApiError('forbidden', `${caller.name} may revoke only their own key`);
    const row = await db.transaction(async (trx) => {
      const r = await revokeApproverKey(trx, id, caller.name);
      if (r)
        await appendAudit(trx, {
          actor: caller.name,
          kind: 'approver-key.revoked',
          subject: id,
          detail: { owner: r.owner },
        });
      return r;
    });
    // Runs waiting for approval pinned the key when they started: they drop it now (again, when repeated).
    await withdrawKeysFromOpenRuns(db, temporal, [id]);
    return toKey(row ?? existing); // revoked already: idempotent
  }

  return { create, list, revoke };
}
export type KeysService = ReturnType<typeof keysService>;
