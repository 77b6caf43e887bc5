import Router from '@koa/router';
import type { Client } from '@temporalio/client';
import Koa from 'koa';
import pino from 'pino';
import type { Registry } from 'prom-client';
import type { ConfigurableTimeouts } from '../contract';
import type { Db } from '../db';
import type { Log } from '../runtime/log';
import { agentsRouter } from './agents/router';
import { agentsService } from './agents/service';
import { auditRouter } from './audit/router';
import { baselinesRouter } from './baselines/router';
import { baselinesService } from './baselines/service';
import { complianceRouter } from './compliance/router';
import { complianceService } from './compliance/service';
import { reviewsRouter } from './reviews/router';
import { reviewsService } from './reviews/service';
import { authenticate, type AppState } from './auth';
import type { AdminToken } from './env';
import { enrolmentTokensRouter } from './enrolment-tokens/router';
import { enrolmentTokensService } from './enrolment-tokens/service';
import { errorMiddleware } from './errors';
import { deskPages, type DeskConfig } from './desk/serve';
import { exceptionsRouter } from './exceptions/router';
import { containersRouter } from './containers/router';
import { containersService } from './containers/service';
import { exceptionsService } from './exceptions/service';
import { keysRouter } from './keys/router';
import { httpObserver } from './metrics';
import { keysService } from './keys/service';
import { API_VERSION } from './openapi/version';
import { openApiDocument } from './openapi/document';
import { rolloutsRouter } from './rollouts/router';
import { rolloutsService } from './rollouts/service';
import { runsRouter } from './runs/router';
import { outputRouter } from './runs/output-router';
import { outputService } from './runs/output';
import { runsService } from './runs/service';
import { scriptsRouter } from './scripts/router';
import { hooksRouter } from './hooks/router';
import { hooksService } from './hooks/service';
import { scriptsService } from './scripts/service';
import { usersRouter } from './users/router';
import { usersService } from './users/service';
import { windowsRouter } from './windows/router';
import { windowsService } from './windows/service';
import { webhooksRouter } from './webhooks/router';
import { webhooksService } from './webhooks/service';

/** Everything the features need; each service takes the part it uses. */
export interface AppDeps {
  db: Db;
  temporal: Client;
  admins: AdminToken[];
  controlQueue: string;
  runDefaults: ConfigurableTimeouts;
  /** The review page's links to the Temporal UI (default: the dev server's UI, namespace default). */
  desk?: DeskConfig;
  /** The process's log (default: none) and metrics registry (default: none served). */
  log?: Log;
  metrics?: Registry;
}

/** Each app's routers as mounted, the open one first (test/api/openapi.test.ts walks their layers). */
const MOUNTED = new WeakMap<Koa<AppState>, Router<AppState>[]>();
export const mountedRouters = (app: Koa<AppState>): Router<AppState>[] => MOUNTED.get(app) ?? [];

/** The authenticated routers, in the order they are mounted (the OpenAPI document reads their layers). */
export function apiRouters(deps: AppDeps): Router<AppState>[] {
  const compliance = complianceService(deps);
  const runs = runsService(deps);
  return [
    agentsRouter(agentsService(deps), compliance),
    enrolmentTokensRouter(enrolmentTokensService(deps)),
    exceptionsRouter(exceptionsService(deps)),
    containersRouter(containersService(deps)),
    scriptsRouter(scriptsService(deps)),
    runsRouter(runs),
    outputRouter(outputService(deps)),
    reviewsRouter(reviewsService({ db: deps.db, runs })),
    complianceRouter(compliance),
    windowsRouter(windowsService(deps)),
    rolloutsRouter(rolloutsService(deps)),
    auditRouter(deps.db),
    usersRouter(usersService(deps)),
    keysRouter(keysService(deps)),
    webhooksRouter(webhooksService(deps)),
    hooksRouter(hooksService(deps)),
    baselinesRouter(baselinesService(deps)),
  ];
}

export function createApp(deps: AppDeps): Koa<AppState> {
  const app = new Koa<AppState>();
  const log = deps.log ?? pino({ enabled: false });
  app.on('error', (err: Error) => {
    if (process.env.NODE_ENV !== 'test') log.error({ err }, 'request failed');
  });
  if (deps.metrics) app.use(httpObserver(deps.metrics, log));
  app.use(errorMiddleware);

  const open = new Router<AppState>();
  open.get('/healthz', async (ctx) => {
    const [db, temporal] = await Promise.all([
      deps.db.raw('select 1').then(
        () => true,
        () => false,
      ),
      deps.temporal.workflowService.getSystemInfo({}).then(
        () => true,
        () => false,
      ),
    ]);
    ctx.status = db && temporal ? 200 : 503;
    ctx.body = { ok: db && temporal, db, temporal };
  });
  const routers = apiRouters(deps);
  // Public, like the source it is made from: it names routes and schemas, no data. Built here,
  // at start, so a route without a row in api/openapi/routes.ts stops the API from starting.
  open.get('/v1/openapi.json', (ctx) => {
    ctx.body = document;
  });
  const document = openApiDocument(open, routers, API_VERSION).document;
  app.use(open.routes());
  app.use(deskPages(deps.desk ?? { temporalUiUrl: 'http://127.0.0.1:8233', namespace: 'default' }));

  app.use(authenticate(deps.db, deps.admins));
  MOUNTED.set(app, [open, ...routers]);
  for (const router of routers) {
    app.use(router.routes()).use(router.allowedMethods());
  }
  return app;
}
