import Koa from 'koa';
import Router from '@koa/router';
import type { ConversationRepository } from '../db/conversations';
import type { Database } from '../db/knex';
import { VegaError } from '../errors';
import type { BackendChain } from '../llm/backends';
import type { ChatService } from '../llm/chat-service';
import type { SessionContext } from '../sessions/context';
import type { SessionStore } from '../sessions/store';
import type { Logger } from '../telemetry/logger';
import type { Config } from '../config/schema';
import { accessLog } from './middleware/access-log';
import { requireApiKey } from './middleware/auth';
import { authThrottle } from './middleware/auth-throttle';
import { jsonBody } from './middleware/body';
import { correlation, rejectInvalidCorrelationId } from './middleware/correlation';
import { errorHandler } from './middleware/errors';
import type { InflightTracker } from './middleware/inflight';
import { registerChatRoutes } from './routes/chat';
import { registerHealthRoutes, type SharedStateHealth } from './routes/health';
import { registerHistoryRoutes } from './routes/history';
import { registerSessionRoutes } from './routes/sessions';
import { registerMetricsRoute } from './routes/metrics';
import { registerOpenAiRoutes } from './routes/openai';
import type { VegaState } from './state';
import { registerPerformanceAdmin, type PerformanceAdminDeps } from './routes/admin/performance';
import { registerResourcesAdmin, type ResourcesAdminDeps } from './routes/admin/resources';
import { registerDatabaseAdmin, type DatabaseAdminDeps } from './routes/admin/database';
import { registerDiagnosticsAdmin, type DiagnosticsAdminDeps } from './routes/admin/diagnostics';
import { registerAdminAliases } from './routes/admin/aliases';
import { setServerRoute } from './server-span';
import { registerComprehensiveAdmin } from './routes/admin/comprehensive';
import { requireJson } from './validation';

export interface AppDeps {
  readonly config: () => Config;
  readonly logger: Logger;
  readonly db: Database;
  readonly conversations: ConversationRepository;
  readonly chat: ChatService;
  /** Session ownership, context, memories and forgetting. */
  readonly sessions: { readonly store: SessionStore; readonly context: SessionContext };
  /** The LLM backends, primary first: each has a health entry. */
  readonly backends: BackendChain;
  readonly inflight: InflightTracker;
  /** The shared-state link (REDIS_URL): checked by /readyz and the comprehensive health. */
  readonly redis?: SharedStateHealth | undefined;
  readonly admin: PerformanceAdminDeps & ResourcesAdminDeps & DatabaseAdminDeps & DiagnosticsAdminDeps;
}

/** What a response stream fails with when the client has gone away. */
const CLIENT_LEFT = new Set(['ERR_STREAM_PREMATURE_CLOSE', 'ECONNRESET', 'EPIPE']);

/**
 * The admin paths, case-insensitive as the router matches. The router matches the raw path; the
 * admin-key guard also tests the percent-decoded one, so no spelling of /admin gets past it.
 */
const ADMIN_PATH = /^\/admin(\/|$)/i;
const decodedPath = (path: string): string => {
  try {
    return decodeURIComponent(path);
  } catch {
    return path;
  }
};

/** The routes that take a request body (`METHOD path`, `:param` matching one segment); no other request's body is read. */
const BODY_ROUTES = ['POST /chat', 'POST /v1/chat/completions', 'PUT /sessions/:id/memories'];

/** Paths served without the API key: probes and (unless METRICS_API_KEY is set) the scrape. */
const PUBLIC_PATHS = new Set(['/healthz', '/readyz', '/metrics']);

/**
 * The Koa application. Order matters: ids first (so every answer carries them), then the one
 * error path, then admission (drain), auth before the body is read, and the routes.
 */
export function createApp(deps: AppDeps): Koa<VegaState> {
  const app = new Koa<VegaState>();
  const config = deps.config();
  // Two route tables: the admin API's, consulted only for paths under /admin, and the rest. The
  // router tests a request against every route it has, so /chat no longer walks the thirty-odd
  // admin routes (their tests and the router's debug calls were ~8 KB of garbage per chat).
  const router = new Router<VegaState>();
  const adminRouter = new Router<VegaState>();
  registerHealthRoutes(router, {
    knex: deps.db.knex,
    backends: deps.backends.backends,
    inflight: deps.inflight,
    redis: deps.redis,
  });
  registerMetricsRoute(router, config.metricsApiKey);
  const streamLimits = () => ({ stallMs: deps.config().streams.stallMs, maxMs: deps.config().streams.maxMs });
  registerChatRoutes(router, {
    chat: deps.chat,
    context: deps.sessions.context,
    logger: deps.logger,
    maxPromptChars: () => deps.config().limits.maxPromptChars,
    streamLimits,
  });
  registerOpenAiRoutes(router, {
    chat: deps.chat,
    logger: deps.logger,
    maxPromptChars: () => deps.config().limits.maxPromptChars,
    streamLimits,
    models: (signal) => deps.chat.provider.listModels(signal),
    sessions: deps.sessions.store,
  });
  registerHistoryRoutes(router, deps.conversations, deps.sessions.store, {
    admit: (clientId) => deps.admin.stages.rateLimiter.admit(clientId),
    maxPageBytes: () => deps.config().limits.maxHistoryPageBytes,
  });
  registerSessionRoutes(router, { sessions: deps.sessions.store, logger: deps.logger });
  registerPerformanceAdmin(adminRouter, deps.admin);
  registerResourcesAdmin(adminRouter, deps.admin);
  registerDatabaseAdmin(adminRouter, deps.admin);
  registerDiagnosticsAdmin(adminRouter, deps.admin);
  registerComprehensiveAdmin(adminRouter, { ...deps.admin, backends: deps.backends, redis: deps.redis });
  registerAdminAliases(adminRouter);
  // The route table as registered, read at request time: what an operator (and the auth test)
  // checks the API reference and the key guard against.
  adminRouter.get('/admin/routes', (ctx) => {
    ctx.body = {
      routes: [...router.stack, ...adminRouter.stack]
        .filter((layer) => layer.methods.length > 0)
        .map((layer) => ({
          methods: layer.methods.filter((m) => m !== 'HEAD'),
          path: String(layer.path),
          public: PUBLIC_PATHS.has(String(layer.path)) && !(layer.path === '/metrics' && config.metricsApiKey),
        })),
    };
  });

  const auth = requireApiKey(
    () => deps.config().apiKeys,
    () => deps.config().adminApiKeys,
  );
  app.use(correlation());
  app.use(accessLog(deps.logger));
  app.use(errorHandler(deps.logger));
  app.use(rejectInvalidCorrelationId());
  app.use(deps.inflight.middleware());
  // Repeated 401s from one address are throttled (429) before any key is compared.
  const guardedAuth = authThrottle({ maxFailures: config.authThrottle.maxFailures, windowMs: config.authThrottle.windowMs })(
    auth as Koa.Middleware,
  );
  app.use((ctx, next) => (PUBLIC_PATHS.has(ctx.path) ? next() : guardedAuth(ctx, next)));
  // /admin/* can clear caches and reset breakers: admin keys only (API_KEY, ADMIN_API_KEYS).
  app.use((ctx, next) => {
    if (ADMIN_PATH.test(decodedPath(ctx.path)) && ctx.state.isAdmin !== true) {
      throw new VegaError('forbidden', 'this key is a client key; /admin routes need an admin key (API_KEY or one of ADMIN_API_KEYS)');
    }
    return next();
  });
  app.use((ctx, next) => {
    if (ctx.method === 'POST' || ctx.method === 'PUT' || ctx.method === 'PATCH') requireJson(ctx);
    return next();
  });
  // Bodies are read only for the routes that take one, after auth and before the route runs.
  app.use(jsonBody({ routes: BODY_ROUTES, limitBytes: config.limits.maxBodyBytes, maxDepth: config.limits.maxJsonDepth }));
  // The router answers a wrong method with 405 (an unknown one with 501) and an `Allow` header;
  // this turns both into the one error shape as a 405 (an unknown method is the client's
  // mistake, never a 5xx), keeping `Allow`.
  app.use(async (ctx, next) => {
    await next();
    if ((ctx.status === 405 || ctx.status === 501) && ctx.body == null) {
      const allow = ctx.response.get('Allow');
      if (allow === '') ctx.remove('Allow');
      throw new VegaError(
        'method_not_allowed',
        allow ? `${ctx.method.slice(0, 20)} is not allowed on this route; allowed: ${allow}` : 'method not supported',
      );
    }
  });
  // No route outside the admin table starts with /admin, and none in it starts otherwise (checked
  // here, at start); the router matches case-insensitively, as ADMIN_PATH does. So each request is
  // matched against the one table that can hold its route, as it was against the single table.
  for (const [table, admin] of [
    [router, false],
    [adminRouter, true],
  ] as const) {
    const stray = table.stack.find((layer) => ADMIN_PATH.test(String(layer.path)) !== admin);
    if (stray) throw new Error(`route ${String(stray.path)} is in the ${admin ? 'admin' : 'public'} table`);
  }
  type Routed = Koa.Middleware<VegaState>;
  const routes = { public: router.routes() as Routed, admin: adminRouter.routes() as Routed };
  const methods = { public: router.allowedMethods() as Routed, admin: adminRouter.allowedMethods() as Routed };
  // The matched route names the server span, labels http.server.request.duration (errors too) and
  // goes on the access line. The router sets it before it runs the route's handler, that is before
  // this call returns, so it is on the response before the client can leave.
  app.use((ctx, next) => {
    const table = ADMIN_PATH.test(ctx.path) ? 'admin' : 'public';
    const done = routes[table](ctx, () => methods[table](ctx, next));
    if (ctx._matchedRoute !== undefined) setServerRoute(ctx.res, String(ctx._matchedRoute));
    return done;
  });
  app.on('error', (err: NodeJS.ErrnoException & { headerSent?: boolean }) => {
    // A client that leaves while a response is being written (its socket reset or closed under
    // Koa's write of a body): normal, and already logged once (at info) where it was seen.
    if (err.headerSent && CLIENT_LEFT.has(err.code ?? '')) {
      deps.logger.debug({ error_code: 'client_closed', cause: err.code }, 'response pipeline closed by the client');
      return;
    }
    deps.logger.error({ err }, 'koa error outside the error handler');
  });
  return app;
}
