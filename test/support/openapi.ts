import { openApiDocument, type Operation } from '../../api/openapi/document';
import { mountedRouters, createApp, type AppDeps } from '../../api/app';

/**
 * The documented statuses of each route, `METHOD /koa/:path` → statuses, from the document the
 * app serves (made from stand-in deps: building the routers touches none of them).
 */
export function documentedStatuses(): Map<string, number[]> {
  const app = createApp({ db: {}, temporal: {}, admins: [], controlQueue: 'x', runDefaults: {} } as unknown as AppDeps);
  const [open, ...routers] = mountedRouters(app);
  const { operations } = openApiDocument(open, routers, 'test');
  return new Map(operations.map((o: Operation) => [`${o.method} ${o.path}`, o.statuses]));
}
