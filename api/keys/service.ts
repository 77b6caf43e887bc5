import { fromBase64Url } from '../../contract/approval';
import { approverKeyId } from '../../contract/approval-key-id';
import type { Db } from '../../db';
import {
  getApproverKey,
  insertApproverKey,
  listApproverKeys,
  revokeApproverKey,
  type ApproverKeyRow,
} from '../../db/approver-keys';
import { ApiError, notFound } from '../errors';
import type { CreateKeyBody } from './schema';

function toKey(r: ApproverKeyRow) {
  return {
    id: r.id,
    owner: r.owner,
    publicKey: r.public_key,
    createdBy: r.created_by,
    createdAt: r.created_at.toISOString(),
    revokedAt: r.revoked_at ? r.revoked_at.toISOString() : null,
    revokedBy: r.revoked_by,
  };
}

export function keysService({ db }: { db: Db }) {
  async function create(body: CreateKeyBody, caller: string) {
    if (fromBase64Url(body.publicKey).length !== 32)
      throw new ApiError('validation_failed', 'publicKey: a 32-byte Ed25519 public key is required', 'publicKey');
    const id = approverKeyId(body.publicKey);
    const row = await insertApproverKey(db, {
      id,
      owner: body.owner ?? caller,
      public_key: body.publicKey,
      created_by: caller,
    });
    // One public key, one id, one owner: registering it again (even revoked) is refused.
    if (!row) throw new ApiError('conflict', `key ${id} is registered already`);
    return toKey(row);
  }

  const list = async () => (await listApproverKeys(db)).map(toKey);

  async function revoke(id: string, caller: string) {
    const row = await revokeApproverKey(db, id, caller);
    if (row) return toKey(row);
    const existing = await getApproverKey(db, id);
    if (!existing) throw notFound(`key ${id}`);
    return toKey(existing); // revoked already: idempotent
  }

  return { create, list, revoke };
}
export type KeysService = ReturnType<typeof keysService>;
