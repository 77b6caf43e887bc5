import type { Client } from '@temporalio/client';
import { ulid } from 'ulid';
import { mayDecide } from '../../contract/roles';
import { listApproverKeys } from '../../db/approver-keys';
import { withdrawKeysFromOpenRuns } from '../keys/service';
import type { Db } from '../../db';
import {
  getUser,
  insertUser,
  insertUserToken,
  listUsers,
  revokeUserToken,
  tokensOf,
  updateUser,
  type UserRow,
  type UserTokenRow,
} from '../../db/users';
import { newToken } from '../auth';
import type { AdminToken } from '../env';
import { appendAudit } from '../../db/audit';
import { ApiError, notFound } from '../errors';
import type { CreateUserBody, CreateUserTokenBody, UpdateUserBody } from './schema';
import { iso } from '../views';

export interface UsersDeps {
  db: Db;
  /** Bootstrap admins: their names are taken (a user of the same name would be two people in one). */
  admins: AdminToken[];
  /** To tell open runs that a disabled (or demoted) approver's keys no longer count. */
  temporal: Client;
}

const toUser = (r: UserRow) => ({
  name: r.name,
  displayName: r.display_name,
  role: r.role,
  createdBy: r.created_by,
  createdAt: r.created_at.toISOString(),
  disabledAt: iso(r.disabled_at),
});

const toToken = (t: UserTokenRow) => ({
  id: t.id,
  note: t.note,
  createdAt: t.created_at.toISOString(),
  revokedAt: iso(t.revoked_at),
});

export function usersService({ db, admins, temporal }: UsersDeps) {
  async function row(name: string): Promise<UserRow> {
    const r = await getUser(db, name);
    if (!r) throw notFound(`user ${name}`);
    return r;
  }

  async function create(body: CreateUserBody, by: string) {
    if (admins.some((a) => a.name === body.name))
      throw new ApiError('conflict', `${body.name} is a bootstrap admin (PATCHNANNY_ADMIN_TOKENS)`, 'name');
    const created = await db.transaction(async (trx) => {
      const user = await insertUser(trx, {
        name: body.name,
        display_name: body.displayName ?? null,
        role: body.role,
        created_by: by,
      });
      if (user)
        await appendAudit(trx, { actor: by, kind: 'user.created', subject: user.name, detail: { role: user.role } });
      return user;
    });
    if (!created) throw new ApiError('conflict', `user ${body.name} exists`, 'name');
    return toUser(created);
  }

  const list = async () => (await listUsers(db)).map(toUser);

  async function get(name: string) {
    const r = await row(name);
    return { ...toUser(r), tokens: (await tokensOf(db, name)).map(toToken) };
  }

  async function update(name: string, patch: UpdateUserBody, by: string) {
    const current = await row(name);
    const values = {
      ...(patch.displayName !== undefined ? { display_name: patch.displayName } : {}),
      ...(patch.role ? { role: patch.role } : {}),
      ...(patch.disabled !== undefined
        ? { disabled_at: patch.disabled ? (current.disabled_at ?? new Date()) : null }
        : {}),
    };
    // An empty PATCH changes nothing (and writes nothing, not even to the audit trail).
    if (Object.keys(values).length === 0) return toUser(current);
    // The change and its audit entry commit together, or neither does.
    const updated = await db.transaction(async (trx) => {
      const u = await updateUser(trx, name, values);
      if (!u) throw notFound(`user ${name}`);
      await appendAudit(trx, { actor: by, kind: 'user.updated', subject: name, detail: { ...patch } });
      return u;
    });
    // Disabled, or no longer one who may approve: open runs stop counting their keys now.
    if (updated.disabled_at || !mayDecide(updated.role)) {
      const keys = (await listApproverKeys(db)).filter((k) => k.owner === name && !k.revoked_at).map((k) => k.id);
      await withdrawKeysFromOpenRuns(db, temporal, keys);
    }
    return toUser(updated);
  }

  /** A new token for the user; the secret is in this answer only. */
  async function createToken(name: string, body: CreateUserTokenBody, by: string) {
    const user = await row(name);
    if (user.disabled_at) throw new ApiError('conflict', `user ${name} is disabled`);
    const { token, hash } = newToken('user');
    const created = await db.transaction(async (trx) => {
      const t = await insertUserToken(trx, {
        id: `utk-${ulid().toLowerCase()}`,
        user_name: name,
        token_hash: hash,
        note: body.note ?? '',
      });
      // The token's id, never its secret.
      await appendAudit(trx, { actor: by, kind: 'user-token.created', subject: t.id, detail: { user: name } });
      return t;
    });
    return { token, ...toToken(created), user: name };
  }

  async function revokeToken(name: string, id: string, by: string) {
    const revoked = await db.transaction(async (trx) => {
      const t = await revokeUserToken(trx, name, id);
      if (!t) throw notFound(`token ${id} of user ${name}`);
      await appendAudit(trx, { actor: by, kind: 'user-token.revoked', subject: id, detail: { user: name } });
      return t;
    });
    return toToken(revoked);
  }

  return { create, list, get, update, createToken, revokeToken };
}
export type UsersService = ReturnType<typeof usersService>;
