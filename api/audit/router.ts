import Router from '@koa/router';
import type { Db } from '../../db';
import { listAudit, type AuditRow } from '../../db/audit';
import type { AppState } from '../auth';
import { at } from '../roles';
import { validate } from '../validate';
import { ListAuditQuery } from './schema';

/** A row as the API shows it: everything needed to recompute its hash (docs/audit.md). */
const toEntry = (r: AuditRow) => ({
  seq: r.seq,
  at: r.at.toISOString(),
  actor: r.actor,
  kind: r.kind,
  subject: r.subject,
  detail: r.detail,
  prevHash: r.prev_hash,
  hash: r.hash,
});

/** GET /v1/audit: the trail oldest first, paged with `after` (the previous page's `next`). */
export function auditRouter(db: Db): Router<AppState> {
  const router = new Router<AppState>();
  router.get(...at('GET /v1/audit'), validate({ query: ListAuditQuery }), async (ctx) => {
    const q = ctx.state.valid.query;
    // One row more than the page tells whether there is a next page.
    const rows = await listAudit(db, { ...q, limit: q.limit + 1 });
    const page = rows.slice(0, q.limit).map(toEntry);
    ctx.body = { entries: page, next: rows.length > q.limit ? page[page.length - 1].seq : null };
  });
  return router;
}
