import type { Knex } from 'knex';
import { ulid } from 'ulid';
import { z } from 'zod';
import { isLegalPackageName, PackagePattern, type Family, type PackageException } from '../../contract';
import { ApiError, notFound } from '../errors';

const FutureDate = z.iso.datetime({ offset: true }).refine((s) => Date.parse(s) > Date.now(), 'must be in the future');

export const CreateExceptionBody = z
  .object({
    /** Package name, or a simple glob such as `linux-image-*`. */
    package: PackagePattern,
    reason: z.string().trim().min(1, 'a reason is required').max(2000),
    expiresAt: FutureDate.nullable().optional(),
  })
  .strict();
export type CreateExceptionBody = z.infer<typeof CreateExceptionBody>;

export const UpdateExceptionBody = CreateExceptionBody.partial()
  .strict()
  .refine((b) => Object.keys(b).length > 0, 'nothing to update');
export type UpdateExceptionBody = z.infer<typeof UpdateExceptionBody>;

function toException(r: Record<string, any>): PackageException {
  const expiresAt = r.expires_at ? new Date(r.expires_at) : null;
  return {
    id: r.id,
    agentId: r.agent_id,
    package: r.package,
    reason: r.reason,
    createdBy: r.created_by,
    createdAt: new Date(r.created_at).toISOString(),
    updatedAt: new Date(r.updated_at).toISOString(),
    expiresAt: expiresAt ? expiresAt.toISOString() : null,
    active: !expiresAt || expiresAt.getTime() > Date.now(),
  };
}

export function exceptionsService(db: Knex) {
  /** The agent the exception is for; its family decides which names are legal. */
  async function agentFamily(agentId: string): Promise<Family> {
    const agent = await db('agents').where({ id: agentId }).first('family');
    if (!agent) throw new ApiError('validation_failed', `agentId: unknown agent ${agentId}`, 'agentId');
    return agent.family as Family;
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
    checkName(await agentFamily(agentId), body.package);
    const [row] = await db('package_exceptions')
      .insert({
        id: `exc-${ulid().toLowerCase()}`,
        agent_id: agentId,
        package: body.package,
        reason: body.reason,
        created_by: by,
        expires_at: body.expiresAt ?? null,
      })
      .onConflict(['agent_id', 'package'])
      .ignore()
      .returning('*');
    if (!row) throw new ApiError('conflict', `agent ${agentId} already has an exception for ${body.package}`);
    return toException(row);
  }

  async function list(agentId: string): Promise<PackageException[]> {
    await agentFamily(agentId);
    const rows = await db('package_exceptions').where({ agent_id: agentId }).orderBy('package');
    return rows.map(toException);
  }

  async function update(agentId: string, id: string, body: UpdateExceptionBody): Promise<PackageException> {
    const family = await agentFamily(agentId);
    if (body.package !== undefined) checkName(family, body.package);
    const patch: Record<string, unknown> = { updated_at: db.fn.now() };
    if (body.package !== undefined) patch.package = body.package;
    if (body.reason !== undefined) patch.reason = body.reason;
    if (body.expiresAt !== undefined) patch.expires_at = body.expiresAt;
    const [row] = await db('package_exceptions').where({ id, agent_id: agentId }).update(patch).returning('*');
    if (!row) throw notFound(`exception ${id} of agent ${agentId}`);
    return toException(row);
  }

  async function remove(agentId: string, id: string): Promise<void> {
    const n = await db('package_exceptions').where({ id, agent_id: agentId }).delete();
    if (n === 0) throw notFound(`exception ${id} of agent ${agentId}`);
  }

  return { create, list, update, remove };
}
