import { ulid } from 'ulid';
import type { BaselineBody } from '../../contract/baselines';
import type { Db } from '../../db';
import { appendAudit } from '../../db/audit';
import {
  deleteBaseline,
  getBaseline,
  insertBaseline,
  listBaselines,
  replaceBaseline,
  type BaselineRow,
} from '../../db/baselines';
import { ApiError, notFound } from '../errors';

/**
 * Patch baselines (issue 12, docs/labels-and-baselines.md): an admin's standing approval. Every
 * change is audited with the whole baseline in the transaction that makes it, so the trail says
 * which rules were in force when a run was approved by one.
 */
export function baselinesService({ db }: { db: Db }) {
  function toBaseline(r: BaselineRow) {
    return {
      id: r.id,
      name: r.name,
      selector: r.selector,
      rules: r.rules,
      enabled: r.enabled,
      note: r.note,
      createdBy: r.created_by,
      updatedBy: r.updated_by,
      createdAt: r.created_at.toISOString(),
      updatedAt: r.updated_at.toISOString(),
    };
  }

  const values = (b: BaselineBody) => ({
    name: b.name,
    selector: b.selector,
    rules: b.rules,
    enabled: b.enabled,
    note: b.note ?? '',
  });
  const nameTaken = (name: string) => new ApiError('conflict', `name: a baseline named ${name} exists`, 'name');

  async function create(body: BaselineBody, by: string) {
    const id = `bl-${ulid().toLowerCase()}`;
    return db.transaction(async (trx) => {
      const row = await insertBaseline(trx, id, values(body), by);
      if (!row) throw nameTaken(body.name);
      const baseline = toBaseline(row);
      await appendAudit(trx, { actor: by, kind: 'baseline.created', subject: id, detail: { baseline } });
      return baseline;
    });
  }

  async function get(id: string) {
    const row = await getBaseline(db, id);
    if (!row) throw notFound(`baseline ${id}`);
    return toBaseline(row);
  }

  async function list() {
    return (await listBaselines(db)).map(toBaseline);
  }

  async function replace(id: string, body: BaselineBody, by: string) {
    return db.transaction(async (trx) => {
      const changed = await replaceBaseline(trx, id, values(body), by).catch((err: unknown) => {
        // 23505: unique_violation (another baseline has the name).
        if ((err as { code?: string }).code === '23505') throw nameTaken(body.name);
        throw err;
      });
      if (!changed) throw notFound(`baseline ${id}`);
      const baseline = toBaseline(changed.after);
      await appendAudit(trx, {
        actor: by,
        kind: 'baseline.updated',
        subject: id,
        detail: { before: toBaseline(changed.before), baseline },
      });
      return baseline;
    });
  }

  async function remove(id: string, by: string) {
    await db.transaction(async (trx) => {
      const row = await deleteBaseline(trx, id);
      if (!row) throw notFound(`baseline ${id}`);
      await appendAudit(trx, {
        actor: by,
        kind: 'baseline.deleted',
        subject: id,
        detail: { baseline: toBaseline(row) },
      });
    });
  }

  return { create, get, list, replace, remove };
}
export type BaselinesService = ReturnType<typeof baselinesService>;
