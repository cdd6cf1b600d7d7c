import type Router from '@koa/router';
import { DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, type ConversationRepository } from '../../db/conversations';
import { InvalidRequest } from '../../errors';
import type { VegaState } from '../state';
import { intParam, SESSION_ID, stringParam } from '../validation';

/** `GET /history` and `GET /sessions/:id/history`: keyset-paged, newest first. */
export interface HistoryRouteDeps {
  /** Admits a read for a client or throws 429 (the chat rate limiter: reads cost too). */
  readonly admit: (clientId: string) => void;
  /** Most bytes of JSON a page holds (HISTORY_PAGE_MAX_BYTES). */
  readonly maxPageBytes: () => number;
}

export function registerHistoryRoutes(router: Router<VegaState>, conversations: ConversationRepository, deps: HistoryRouteDeps): void {
  router.get('/history', async (ctx) => {
    ctx.set('Cache-Control', 'no-store');
    deps.admit(ctx.state.clientId ?? 'anonymous');
    ctx.body = await conversations.page({
      maxBytes: deps.maxPageBytes(),
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
    deps.admit(ctx.state.clientId ?? 'anonymous');
    ctx.body = await conversations.page({
      maxBytes: deps.maxPageBytes(),
      sessionId,
      limit: intParam(ctx.query.limit, 'limit', 1, MAX_PAGE_SIZE, DEFAULT_PAGE_SIZE),
      cursor: stringParam(ctx.query.cursor, 'cursor'),
    });
  });
}
