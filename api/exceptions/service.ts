import { ulid } from 'ulid';
import { isLegalPackageName, type Family, type PackageException } from '../../contract';
import type { Db } from '../../db';
import { appendAudit } from '../../db/audit';
import { getAgent } from '../../db/agents';
import { getContainer } from '../../db/containers';
import {
  deleteException,
  insertException,
  listExceptions,
  updateException,
  type ExceptionChange,
  type ExceptionRow,
} from '../../db/exceptions';
import { ApiError, notFound } from '../errors';
import type { CreateExceptionBody, UpdateExceptionBody } from './schema';
import { iso } from '../views';

export interface ExceptionsDeps {
  db: Db;
}

function toException(r: ExceptionRow): PackageException {
  return {
    id: r.id,
    agentId: r.agent_id,
    container: r.container === 0 ? null : r.container,
    package: r.package,
    reason: r.reason,
    createdBy: r.created_by,
    createdAt: r.created_at.toISOString(),
    updatedAt: r.updated_at.toISOString(),
    expiresAt: iso(r.expires_at),
    active: !r.expires_at || r.expires_at.getTime() > Date.now(),
  };
}

const dateOrNull = (iso: string | null | undefined) => (iso ? new Date(iso) : null);

export function exceptionsService({ db }: ExceptionsDeps) {
  /** The agent (or its container) the exception is for; its family decides which names are legal. */
  async function agentFamily(agentId: string, container?: number): Promise<Family> {
    const agent = await getAgent(db, agentId);
    if (!agent) throw new ApiError('validation_failed', `agentId: unknown agent ${agentId}`, 'agentId');
    if (container === undefined) return agent.family;
    const ct = await getContainer(db, agentId, container);
    if (!ct || ct.gone_at)
      throw new ApiError('validation_failed', `container: agent ${agentId} has no container ${container}`, 'container');
    if (!ct.family)
      throw new ApiError(
        'conflict',
        `container ${container} is unsupported: ${ct.unsupported ?? 'no family'}`,
        'container',
      );
    return ct.family;
  }

  const checkName = (family: Family, name: string) => {
    if (!isLegalPackageName(family, name)) {
      throw new ApiError(
        'validation_failed',
        `request body field package: ${JSON.stringify(name)} is not a legal ${family} package name or glob`,
        'package',
      );
    }
  };

  async function create(agentId: string, body: CreateExceptionBody, by: string): Promise<PackageException> {
    checkName(await agentFamily(agentId, body.container), body.package);
    return db.transaction(async (trx) => {
      const row = await insertException(trx, {
        id: `exc-${ulid().toLowerCase()}`,
        agent_id: agentId,
        container: body.container ?? 0,
        package: body.package,
        reason: body.reason,
        created_by: by,
        expires_at: dateOrNull(body.expiresAt),
      });
      if (!row)
        throw new ApiError(
          'conflict',
          `${body.container ? `container ${body.container} of ` : ''}agent ${agentId} already has an exception for ${body.package}`,
        );
      const exception = toException(row);
      await appendAudit(trx, { actor: by, kind: 'exception.created', subject: row.id, detail: { exception } });
      return exception;
    });
  }

  async function list(agentId: string, container?: number): Promise<PackageException[]> {
    await agentFamily(agentId);
    return (await listExceptions(db, agentId, container)).map(toException);
  }

  async function update(agentId: string, id: string, body: UpdateExceptionBody, by: string): Promise<PackageException> {
    if (body.package !== undefined) {
      const current = (await listExceptions(db, agentId)).find((e) => e.id === id);
      if (!current) throw notFound(`exception ${id} of agent ${agentId}`);
      checkName(await agentFamily(agentId, current.container || undefined), body.package);
    } else await agentFamily(agentId);
    const change: ExceptionChange = {};
    if (body.package !== undefined) change.package = body.package;
    if (body.reason !== undefined) change.reason = body.reason;
    if (body.expiresAt !== undefined) change.expires_at = dateOrNull(body.expiresAt);
    return db.transaction(async (trx) => {
      const row = await updateException(trx, agentId, id, change);
      if (!row) throw notFound(`exception ${id} of agent ${agentId}`);
      const exception = toException(row);
      await appendAudit(trx, {
        actor: by,
        kind: 'exception.updated',
        subject: id,
        detail: { change: body, exception },
      });
      return exception;
    });
  }

  async function remove(agentId: string, id: string, by: string): Promise<void> {
    await db.transaction(async (trx) => {
      if (!(await deleteException(trx, agentId, id))) throw notFound(`exception ${id} of agent ${agentId}`);
      await appendAudit(trx, { actor: by, kind: 'exception.deleted', subject: id, detail: { agentId } });
    });
  }

  return { create, list, update, remove };
}
export type ExceptionsService = ReturnType<typeof exceptionsService>;
