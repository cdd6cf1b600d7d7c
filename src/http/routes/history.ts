import type Router from '@koa/router';
import { DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, type ConversationRepository } from '../../db/conversations';
import type { SessionStore } from '../../sessions/store';
import type { VegaState } from '../state';
import { intParam, stringParam } from '../validation';
import { checkAccess, sessionIdParam } from './sessions';

export interface HistoryRouteDeps {
  /** Admits a read for a client or throws 429 (the chat rate limiter: reads cost too). */
  readonly admit: (clientId: string) => void | Promise<void>;
  /** Most bytes of JSON a page holds (HISTORY_PAGE_MAX_BYTES). */
  readonly maxPageBytes: () => number;
}

/**
 * `GET /history` and `GET /sessions/:id/history`: keyset-paged, newest first. A client key sees
 * its own conversations and sessions; an admin key sees all.
 */
export function registerHistoryRoutes(
  router: Router<VegaState>,
  conversations: ConversationRepository,
  sessions: SessionStore,
  deps: HistoryRouteDeps,
): void {
  router.get('/history', async (ctx) => {
    ctx.set('Cache-Control', 'no-store');
    await deps.admit(ctx.state.clientId ?? 'anonymous');
    ctx.body = await conversations.page({
      maxBytes: deps.maxPageBytes(),
      limit: intParam(ctx.query.limit, 'limit', 1, MAX_PAGE_SIZE, DEFAULT_PAGE_SIZE),
      cursor: stringParam(ctx.query.cursor, 'cursor'),
      owner: ctx.state.isAdmin ? undefined : (ctx.state.clientId ?? 'anonymous'),
    });
  });
  router.get('/sessions/:id/history', async (ctx) => {
    ctx.set('Cache-Control', 'no-store');
    const sessionId = sessionIdParam(ctx);
    const limit = intParam(ctx.query.limit, 'limit', 1, MAX_PAGE_SIZE, DEFAULT_PAGE_SIZE);
    const cursor = stringParam(ctx.query.cursor, 'cursor');
    await deps.admit(ctx.state.clientId ?? 'anonymous');
    if (!(await checkAccess(sessions, ctx, sessionId))) {
      ctx.body = { items: [], next_cursor: null };
      return;
    }
    ctx.body = await conversations.page({ sessionId, limit, cursor, maxBytes: deps.maxPageBytes() });
  });
}
