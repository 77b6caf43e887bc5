import Router from '@koa/router';
import type { AppState } from '../auth';
import { at } from '../roles';
import { validate } from '../validate';
import { CreateUserBody, CreateUserTokenBody, UpdateUserBody, UserParams, UserTokenParams } from './schema';
import type { UsersService } from './service';

export function usersRouter(users: UsersService): Router<AppState> {
  const router = new Router<AppState>();

  router.get(...at('GET /v1/users'), async (ctx) => {
    ctx.body = { users: await users.list() };
  });

  router.post(...at('POST /v1/users'), validate({ body: CreateUserBody }), async (ctx) => {
    ctx.status = 201;
    ctx.body = { user: await users.create(ctx.state.valid.body, ctx.state.principal.name) };
  });

  router.get(...at('GET /v1/users/:name'), validate({ params: UserParams }), async (ctx) => {
    ctx.body = { user: await users.get(ctx.state.valid.params.name) };
  });

  router.patch(...at('PATCH /v1/users/:name'), validate({ params: UserParams, body: UpdateUserBody }), async (ctx) => {
    const { params, body } = ctx.state.valid;
    ctx.body = { user: await users.update(params.name, body, ctx.state.principal.name) };
  });

  router.post(
    ...at('POST /v1/users/:name/tokens'),
    validate({ params: UserParams, body: CreateUserTokenBody }),
    async (ctx) => {
      const { params, body } = ctx.state.valid;
      ctx.status = 201;
      ctx.body = await users.createToken(params.name, body, ctx.state.principal.name);
    },
  );

  router.delete(...at('DELETE /v1/users/:name/tokens/:id'), validate({ params: UserTokenParams }), async (ctx) => {
    const { name, id } = ctx.state.valid.params;
    ctx.body = { token: await users.revokeToken(name, id, ctx.state.principal.name) };
  });

  return router;
}
