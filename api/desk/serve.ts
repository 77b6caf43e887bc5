/**
 * The review page (issue 17), served by the API at `/`: one HTML file, one stylesheet and one
 * script compiled from desk/ (plain TypeScript, no framework, nothing from a CDN). The files need
 * no token; everything they show comes from the /v1 API with the token the person signs in with.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import Router from '@koa/router';

/** Where the page links a run's workflow: the Temporal UI and the namespace runs live in. */
export interface DeskConfig {
  temporalUiUrl: string;
  namespace: string;
}

/** The built page (build step: tsc -p desk, scripts/dev/build-desk.ts copies the HTML and CSS). */
export const DESK_STATIC = path.join(__dirname, 'static');

const FILES = [
  { route: '/', file: 'index.html', type: 'text/html; charset=utf-8' },
  { route: '/desk/page.js', file: 'page.js', type: 'text/javascript; charset=utf-8' },
  { route: '/desk/desk.css', file: 'desk.css', type: 'text/css; charset=utf-8' },
] as const;

/**
 * Same-origin everything, no inline script or style, no framing: the page holds a bearer token
 * and an approver's key in memory, so nothing else may run in it.
 */
const SECURITY_HEADERS = {
  'content-security-policy':
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; " +
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'cache-control': 'no-cache',
};

export function deskRouter(config: DeskConfig): Router {
  const router = new Router();
  // Read once at start: a missing build fails the start, not the first visitor.
  for (const { route, file, type } of FILES) {
    const body = readFileSync(path.join(DESK_STATIC, file));
    router.get(route, (ctx) => {
      ctx.set(SECURITY_HEADERS);
      ctx.type = type;
      ctx.body = body;
    });
  }
  router.get('/desk/config.json', (ctx) => {
    ctx.set(SECURITY_HEADERS);
    ctx.body = config;
  });
  return router;
}
