import type Router from '@koa/router';
import type { Context } from 'koa';
import { InvalidRequest } from '../../errors';
import { SessionNotFound } from '../../sessions/context';
import type { SessionStore } from '../../sessions/store';
import { sessionHash } from '../../sessions/summarizer';
import type { Logger } from '../../telemetry/logger';
import type { VegaState } from '../state';
import { memoriesBodySchema, parseOr400, SESSION_ID } from '../validation';

export interface SessionRouteDeps {
  readonly sessions: SessionStore;
  readonly logger: Logger;
}

/** The `:id` of a session route, or 400. */
export function sessionIdParam(ctx: { params: Record<string, string | undefined> }): string {
  const sessionId = ctx.params.id ?? '';
  if (!SESSION_ID.test(sessionId)) {
    throw new InvalidRequest('session id must be 1-128 characters of letters, digits and . _ : -', 'invalid_session_id');
  }
  return sessionId;
}

/**
 * May the caller use this session? Its owner may, an admin key may; anyone else gets the 404 an
 * unknown route would get (the id says nothing about whose it is). A session nobody has used is
 * empty, not missing: resolves false.
 */
export async function checkAccess(sessions: SessionStore, ctx: Context & { state: VegaState }, sessionId: string): Promise<boolean> {
  const owner = await sessions.owner(sessionId);
  if (owner === undefined) return false;
  if (ctx.state.isAdmin || owner === ctx.state.clientId) return true;
  throw new SessionNotFound();
}

/** Pinned memories and forgetting: `/sessions/:id/memories` and `DELETE /sessions/:id`. */
export function registerSessionRoutes(router: Router<VegaState>, deps: SessionRouteDeps): void {
  const { sessions } = deps;
  router.get('/sessions/:id/memories', async (ctx) => {
    const sessionId = sessionIdParam(ctx);
    const exists = await checkAccess(sessions, ctx, sessionId);
    ctx.body = { session_id: sessionId, memories: exists ? await sessions.memories(sessionId) : [] };
  });
  router.put('/sessions/:id/memories', async (ctx) => {
    const sessionId = sessionIdParam(ctx);
    const body = parseOr400(memoriesBodySchema, (ctx.request as { body?: unknown }).body);
    const exists = await checkAccess(sessions, ctx, sessionId);
    if (!exists) {
      // Pinning facts before the first turn claims the session for the caller.
      const owner = await sessions.claim(sessionId, ctx.state.clientId ?? 'anonymous');
      if (owner !== ctx.state.clientId && !ctx.state.isAdmin) throw new SessionNotFound();
    }
    await sessions.replaceMemories(sessionId, body.memories);
    ctx.body = { session_id: sessionId, memories: await sessions.memories(sessionId) };
  });
  router.delete('/sessions/:id/memories', async (ctx) => {
    const sessionId = sessionIdParam(ctx);
    const exists = await checkAccess(sessions, ctx, sessionId);
    ctx.body = { session_id: sessionId, deleted: exists ? await sessions.clearMemories(sessionId) : 0 };
  });
  router.delete('/sessions/:id', async (ctx) => {
    const sessionId = sessionIdParam(ctx);
    const exists = await checkAccess(sessions, ctx, sessionId);
    const gone = exists ? await sessions.forget(sessionId) : { turns: 0, memories: 0, sessions: 0 };
    const rows = gone.turns + gone.memories + gone.sessions;
    // The audit trail of forgetting: who, which session (hashed: the raw id may be personal), how much.
    deps.logger.info(
      {
        audit: 'session_deleted',
        session_hash: sessionHash(sessionId),
        client_id: ctx.state.clientId,
        admin: ctx.state.isAdmin === true,
        rows,
        turns: gone.turns,
        memories: gone.memories,
      },
      'session deleted',
    );
    ctx.body = { session_id: sessionId, deleted: { rows, turns: gone.turns, memories: gone.memories, summaries: gone.sessions } };
  });
}
