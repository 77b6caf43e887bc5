import type { Db } from './index';

export interface EnrolmentTokenRow {
  id: string;
  /** SHA-256 of the token; the token itself is shown once, at creation, and never stored. */
  token_hash: string;
  note: string;
  expires_at: Date;
  /** null: any number of registrations until it expires. */
  max_uses: number | null;
  uses: number;
  /** Agents registered with it are accepted at once (an admin vouched for the hosts in advance). */
  pre_accepted: boolean;
  created_by: string;
  created_at: Date;
  revoked_at: Date | null;
}

export type NewEnrolmentToken = Omit<EnrolmentTokenRow, 'uses' | 'created_at' | 'revoked_at'>;

/** Why a token cannot register (another) agent; null when it can. */
export type EnrolmentRefusal = 'unknown' | 'expired' | 'used-up' | 'revoked';

const tokens = (db: Db) => db<EnrolmentTokenRow>('enrolment_tokens');

export async function insertEnrolmentToken(db: Db, token: NewEnrolmentToken): Promise<EnrolmentTokenRow> {
  const [row] = await tokens(db).insert(token).returning('*');
  return row;
}

/** Newest first: the token an admin just made is at the top. */
export function listEnrolmentTokens(db: Db): Promise<EnrolmentTokenRow[]> {
  return tokens(db).select('*').orderBy('created_at', 'desc').orderBy('id', 'desc');
}

/** Revoke a token (kept for the record of the agents it enrolled); undefined when unknown. */
export async function revokeEnrolmentToken(db: Db, id: string): Promise<EnrolmentTokenRow | undefined> {
  const [row] = await tokens(db)
    .where({ id })
    .update({ revoked_at: db.raw('coalesce(revoked_at, now())') as unknown as Date })
    .returning('*');
  return row;
}

/**
 * Spend one use of the token with this hash, if it can still register an agent: one conditional
 * update, so concurrent registrations on a token with one use left cannot both get it. Run it in
 * the transaction that inserts the agent, so a failed insert gives the use back.
 */
export async function spendEnrolmentToken(db: Db, tokenHash: string): Promise<EnrolmentTokenRow | undefined> {
  const [row] = await tokens(db)
    .where({ token_hash: tokenHash })
    .whereNull('revoked_at')
    .andWhere('expires_at', '>', db.fn.now())
    .andWhere((w) => {
      void w.whereNull('max_uses').orWhereRaw('uses < max_uses'); // builds, does not run
    })
    .update({ uses: db.raw('uses + 1') as unknown as number })
    .returning('*');
  return row;
}

/**
 * The token with this hash and why it cannot register an agent now (null: it can); undefined when
 * no token has this hash. A read for authentication and error messages: the registration itself
 * spends its use with spendEnrolmentToken, which decides.
 */
export async function enrolmentTokenState(
  db: Db,
  tokenHash: string,
): Promise<{ id: string; refusal: Exclude<EnrolmentRefusal, 'unknown'> | null } | undefined> {
  const row = await tokens(db)
    .where({ token_hash: tokenHash })
    .first<(Pick<EnrolmentTokenRow, 'id' | 'revoked_at' | 'max_uses' | 'uses'> & { expired: boolean }) | undefined>(
      'id',
      'revoked_at',
      'max_uses',
      'uses',
      db.raw('expires_at <= now() as expired'),
    );
  if (!row) return undefined;
  const refusal = row.revoked_at
    ? 'revoked'
    : row.expired
      ? 'expired'
      : row.max_uses !== null && row.uses >= row.max_uses
        ? 'used-up'
        : null;
  return { id: row.id, refusal };
}

/** What the API says to the holder of a token that cannot register (another) agent. */
export function refusalMessage(id: string, refusal: EnrolmentRefusal): string {
  switch (refusal) {
    case 'expired':
      return `enrolment token ${id} has expired`;
    case 'used-up':
      return `enrolment token ${id} is used up (it was limited in registrations)`;
    case 'revoked':
      return `enrolment token ${id} was revoked`;
    case 'unknown':
      return 'invalid token';
  }
}
