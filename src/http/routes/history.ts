import type Router from '@koa/router';
import { DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, type ConversationRepository } from '../../db/conversations';
import type { SessionStore } from '../../sessions/store';
import type { VegaState } from '../state';
import { intParam, stringParam } from '../validation';
import { checkAccess, sessionIdParam } from './sessions';

/**
 * `GET /history` and `GET /sessions/:id/history`: keyset-paged, newest first. A client key sees
 * its own conversations and sessions; an admin key sees all.
 */
export function registerHistoryRoutes(router: Router<VegaState>, conversations: ConversationRepository, sessions: SessionStore): void {
  router.get('/history', async (ctx) => {
    ctx.body = await conversations.page({
      limit: intParam(ctx.query.limit, 'limit', 1, MAX_PAGE_SIZE, DEFAULT_PAGE_SIZE),
      cursor: stringParam(ctx.query.cursor, 'cursor'),
      owner: ctx.state.isAdmin ? undefined : (ctx.state.clientId ?? 'anonymous'),
    });
  });
  router.get('/sessions/:id/history', async (ctx) => {
    const sessionId = sessionIdParam(ctx);
    const limit = intParam(ctx.query.limit, 'limit', 1, MAX_PAGE_SIZE, DEFAULT_PAGE_SIZE);
    const cursor = stringParam(ctx.query.cursor, 'cursor');
    if (!(await checkAccess(sessions, ctx, sessionId))) {
      ctx.body = { items: [], next_cursor: null };
      return;
    }
    ctx.body = await conversations.page({ sessionId, limit, cursor });
  });
}
