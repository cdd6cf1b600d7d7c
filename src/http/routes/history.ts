import type Router from '@koa/router';
import { DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, type ConversationRepository } from '../../db/conversations';
import { InvalidRequest } from '../../errors';
import type { VegaState } from '../state';
import { intParam, SESSION_ID, stringParam } from '../validation';

/** `GET /history` and `GET /sessions/:id/history`: keyset-paged, newest first. */
export function registerHistoryRoutes(router: Router<VegaState>, conversations: ConversationRepository): void {
  router.get('/history', async (ctx) => {
    ctx.set('Cache-Control', 'no-store');
    ctx.body = await conversations.page({
      limit: intParam(ctx.query.limit, 'limit', 1, MAX_PAGE_SIZE, DEFAULT_PAGE_SIZE),
      cursor: stringParam(ctx.query.cursor, 'cursor'),
    });
  });
  router.get('/sessions/:id/history', async (ctx) => {
    ctx.set('Cache-Control', 'no-store');
    const sessionId = ctx.params.id ?? '';
    if (!SESSION_ID.test(sessionId)) {
      throw new InvalidRequest('session id must be 1-128 characters of letters, digits and . _ : -', 'invalid_session_id');
    }
    ctx.body = await conversations.page({
      sessionId,
      limit: intParam(ctx.query.limit, 'limit', 1, MAX_PAGE_SIZE, DEFAULT_PAGE_SIZE),
      cursor: stringParam(ctx.query.cursor, 'cursor'),
    });
  });
}
