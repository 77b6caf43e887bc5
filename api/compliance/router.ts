import Router from '@koa/router';
import type { AppState } from '../auth';
import { at } from '../roles';
import { validate } from '../validate';
import { ComplianceQuery } from './schema';
import type { ComplianceService } from './service';

export function complianceRouter(compliance: ComplianceService): Router<AppState> {
  const router = new Router<AppState>();

  router.get(...at('GET /v1/compliance'), validate({ query: ComplianceQuery }), async (ctx) => {
    ctx.body = await compliance.summary(ctx.state.valid.query.staleAfterSeconds);
  });

  return router;
}
