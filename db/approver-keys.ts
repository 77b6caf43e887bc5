/** Approvers' Ed25519 public keys (issue 10): registered by admins, pinned by each run at its start. */
import type { PinnedKey } from '../contract/approval';
import { APPROVING_ROLES } from '../contract/roles';
import type { Db } from '.';

export interface ApproverKeyRow {
  id: string;
  owner: string;
  public_key: string;
  created_by: string;
  created_at: Date;
  revoked_at: Date | null;
  revoked_by: string | null;
}

const keys = (db: Db) => db<ApproverKeyRow>('approver_keys');

/** Register a key; null when that public key is registered already (under its one id). */
export async function insertApproverKey(
  db: Db,
  row: Pick<ApproverKeyRow, 'id' | 'owner' | 'public_key' | 'created_by'>,
): Promise<ApproverKeyRow | null> {
  const [inserted] = await keys(db).insert(row).onConflict('id').ignore().returning('*');
  return inserted ?? null;
}

export async function listApproverKeys(db: Db): Promise<ApproverKeyRow[]> {
  return keys(db).orderBy('created_at').orderBy('id');
}

export async function getApproverKey(db: Db, id: string): Promise<ApproverKeyRow | undefined> {
  return keys(db).where({ id }).first();
}

/** Revoke once: a revoked key stays listed (the record of what signed what), never counts again. */
export async function revokeApproverKey(db: Db, id: string, by: string): Promise<ApproverKeyRow | undefined> {
  const [row] = await keys(db)
    .where({ id })
    .whereNull('revoked_at')
    .update({ revoked_at: db.fn.now(), revoked_by: by })
    .returning('*');
  return row;
}

/**
 * The keys whose signatures approve a run: not revoked, and held by someone who may approve now —
 * a user whose role is admin or approver and who is not disabled, or a bootstrap admin
 * (PATCHNANNY_ADMIN_TOKENS names are not users; only an admin can have registered a key for one,
 * see api/keys). A user made a viewer later, or disabled, no longer approves with their key.
 */
export async function approverKeys(db: Db): Promise<PinnedKey[]> {
  const { rows } = await db.raw<{ rows: Pick<ApproverKeyRow, 'id' | 'owner' | 'public_key'>[] }>(
    `select k.id, k.owner, k.public_key
       from approver_keys k left join users u on u.name = k.owner
      where k.revoked_at is null
        and (u.name is null or (u.role = any(?) and u.disabled_at is null))
      order by k.id`,
    [[...APPROVING_ROLES]],
  );
  return rows.map((r) => ({ keyId: r.id, owner: r.owner, publicKey: r.public_key }));
}
