import { ulid } from 'ulid';
import type { EnrolmentToken } from '../../contract';
import type { Db } from '../../db';
import { appendAudit } from '../../db/audit';
import {
  insertEnrolmentToken,
  listEnrolmentTokens,
  revokeEnrolmentToken,
  type EnrolmentTokenRow,
} from '../../db/enrolment-tokens';
import { newToken } from '../auth';
import { notFound } from '../errors';
import type { CreateEnrolmentTokenBody } from './schema';
import { iso } from '../views';

export interface EnrolmentTokensDeps {
  db: Db;
}

function toEnrolmentToken(r: EnrolmentTokenRow): EnrolmentToken {
  return {
    id: r.id,
    note: r.note,
    expiresAt: r.expires_at.toISOString(),
    maxUses: r.max_uses,
    uses: r.uses,
    preAccepted: r.pre_accepted,
    createdBy: r.created_by,
    createdAt: r.created_at.toISOString(),
    revokedAt: iso(r.revoked_at),
  };
}

export function enrolmentTokensService({ db }: EnrolmentTokensDeps) {
  /** A new token: returned once, here; the database keeps only its SHA-256. */
  async function create(
    body: CreateEnrolmentTokenBody,
    by: string,
  ): Promise<{ enrolmentToken: EnrolmentToken; token: string }> {
    const { token, hash } = newToken('enrolment');
    const row = await db.transaction(async (trx) => {
      const inserted = await insertEnrolmentToken(trx, {
        id: `enr-${ulid().toLowerCase()}`,
        token_hash: hash,
        note: body.note ?? '',
        expires_at: new Date(Date.now() + body.expiresInSeconds * 1000),
        max_uses: body.maxUses,
        pre_accepted: body.preAccepted,
        created_by: by,
      });
      // The token itself never: only what it allows.
      const { id, note, expiresAt, maxUses, preAccepted } = toEnrolmentToken(inserted);
      await appendAudit(trx, {
        actor: by,
        kind: 'enrolment-token.created',
        subject: id,
        detail: { note, expiresAt, maxUses, preAccepted },
      });
      return inserted;
    });
    return { enrolmentToken: toEnrolmentToken(row), token };
  }

  async function list(): Promise<EnrolmentToken[]> {
    return (await listEnrolmentTokens(db)).map(toEnrolmentToken);
  }

  /** Revoke: it registers nothing more (agents it registered are not affected). Idempotent. */
  async function revoke(id: string, by: string): Promise<EnrolmentToken> {
    const row = await db.transaction(async (trx) => {
      const r = await revokeEnrolmentToken(trx, id);
      if (!r) throw notFound(`enrolment token ${id}`);
      await appendAudit(trx, { actor: by, kind: 'enrolment-token.revoked', subject: id });
      return r;
    });
    return toEnrolmentToken(row);
  }

  return { create, list, revoke };
}
export type EnrolmentTokensService = ReturnType<typeof enrolmentTokensService>;
