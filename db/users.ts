/** People (`users`, one role each) and their bearer tokens (`user_tokens`, SHA-256 only). */
import type { UserRole } from '../contract/roles';
import type { Db } from './index';

export interface UserRow {
  name: string;
  display_name: string | null;
  role: UserRole;
  created_by: string;
  created_at: Date;
  disabled_at: Date | null;
}

export interface UserTokenRow {
  id: string;
  user_name: string;
  token_hash: string;
  note: string;
  created_at: Date;
  revoked_at: Date | null;
}

const users = (db: Db) => db<UserRow>('users');
const tokens = (db: Db) => db<UserTokenRow>('user_tokens');

/** The user a token belongs to, with the token's own state (null when no token has that hash). */
export function userByTokenHash(
  db: Db,
  tokenHash: string,
): Promise<(UserRow & { token_id: string; token_revoked_at: Date | null }) | undefined> {
  return db('user_tokens as t')
    .join('users as u', 'u.name', 't.user_name')
    .where('t.token_hash', tokenHash)
    .first('u.*', 't.id as token_id', 't.revoked_at as token_revoked_at');
}

/** Insert a user; undefined when the name is taken. */
export async function insertUser(
  db: Db,
  user: Pick<UserRow, 'name' | 'display_name' | 'role' | 'created_by'>,
): Promise<UserRow | undefined> {
  const [row] = await users(db).insert(user).onConflict('name').ignore().returning('*');
  return row;
}

export const listUsers = (db: Db): Promise<UserRow[]> => users(db).orderBy('name');

export const getUser = (db: Db, name: string): Promise<UserRow | undefined> => users(db).where({ name }).first();

export async function updateUser(
  db: Db,
  name: string,
  values: Partial<Pick<UserRow, 'display_name' | 'role' | 'disabled_at'>>,
): Promise<UserRow | undefined> {
  const [row] = await users(db).where({ name }).update(values).returning('*');
  return row;
}

export const tokensOf = (db: Db, userName: string): Promise<UserTokenRow[]> =>
  tokens(db).where({ user_name: userName }).orderBy('created_at');

export async function insertUserToken(
  db: Db,
  token: Pick<UserTokenRow, 'id' | 'user_name' | 'token_hash' | 'note'>,
): Promise<UserTokenRow> {
  const [row] = await tokens(db).insert(token).returning('*');
  return row;
}

/** Revoke a token of a user (idempotent: the first revocation time stays). */
export async function revokeUserToken(db: Db, userName: string, id: string): Promise<UserTokenRow | undefined> {
  await tokens(db).where({ user_name: userName, id }).whereNull('revoked_at').update({ revoked_at: db.fn.now() });
  return tokens(db).where({ user_name: userName, id }).first();
}
