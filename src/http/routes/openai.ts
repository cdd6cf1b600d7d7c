import { randomUUID } from 'node:crypto';
import { Readable } from 'node:stream';
import { VegaError } from '../../errors';
import type Router from '@koa/router';
import { SessionNotFound } from '../../sessions/context';
import type { SessionStore } from '../../sessions/store';
import { z } from 'zod';
import type { ChatService } from '../../llm/chat-service';
import type { StreamEvent } from '../../llm/types';
import type { Logger } from '../../telemetry/logger';
import { errorBody, streamFailed } from '../error-body';
import { guardStream } from '../stream-guard';
import type { VegaState } from '../state';
import { memoized, MODEL_NAME, parseOr400, SESSION_ID } from '../validation';
import { clientGone, routeOf } from './chat';

/**
 * The body of an OpenAI chat-completions request. Fields OpenAI clients commonly send but Vega
 * does not act on are accepted and ignored; anything else is refused, as OpenAI itself does.
 */
const completionsSchema = memoized((maxPromptChars: number) => buildCompletionsSchema(maxPromptChars));

function buildCompletionsSchema(maxPromptChars: number) {
  const content = z.union([
    z.string(),
    z.array(z.object({ type: z.literal('text'), text: z.string() })).transform((parts) => parts.map((p) => p.text).join('')),
  ]);
  return z.strictObject({
    model: z.string().regex(MODEL_NAME, 'must be 1-200 characters of letters, digits and . _ : / -').optional(),
    messages: z.array(z.object({ role: z.enum(['system', 'user', 'assistant']), content, name: z.string().max(64).optional() }))
      .min(1, 'must hold at least one message').max(256)
      .refine((m) => m.some((x) => x.role === 'user' && x.content.trim().length > 0), 'must hold a non-empty user message')
      .refine((m) => m.reduce((n, x) => n + x.content.length, 0) <= maxPromptChars, `must total at most ${maxPromptChars} characters`),
    temperature: z.number().min(0).max(2).nullish(),
    top_p: z.number().min(0).max(1).nullish(),
    max_tokens: z.number().int().min(1).max(1_000_000).nullish(),
    max_completion_tokens: z.number().int().min(1).max(1_000_000).nullish(),
    stream: z.boolean().nullish(),
    stream_options: z.object({ include_usage: z.boolean().optional() }).nullish(),
    n: z.literal(1).nullish(),
    user: z.string().max(256).optional(),
    // Accepted for compatibility, not forwarded.
    stop: z.union([z.string(), z.array(z.string())]).nullish(),
    presence_penalty: z.number().nullish(),
    frequency_penalty: z.number().nullish(),
    seed: z.number().int().nullish(),
  });
}

export interface OpenAiRouteDeps {
  readonly chat: ChatService;
  readonly logger: Logger;
  readonly maxPromptChars: () => number;
  readonly models: () => string[];
  /** Session ownership: an `X-Session-ID` another key owns is refused (the route adds no context). */
  readonly sessions?: SessionStore;
  /** STREAM_STALL_S and LLM_STREAM_MAX_S, in ms. */
  readonly streamLimits: () => { stallMs: number; maxMs: number };
}

/** `POST /v1/chat/completions` and `GET /v1/models`: Vega as an OpenAI-compatible server. */
export function registerOpenAiRoutes(router: Router<VegaState>, deps: OpenAiRouteDeps): void {
  router.get('/v1/models', (ctx) => {
    ctx.body = { object: 'list', data: deps.models().map((id) => ({ id, object: 'model', created: 0, owned_by: 'vega' })) };
  });

  router.post('/v1/chat/completions', async (ctx) => {
    const body = parseOr400(completionsSchema(deps.maxPromptChars()), (ctx.request as { body?: unknown }).body);
    const sessionHeader = ctx.get('x-session-id');
    const sessionId = SESSION_ID.test(sessionHeader) ? sessionHeader : randomUUID();
    if (deps.sessions && sessionId === sessionHeader) {
      // Stateless, but it writes turns into the session: only into the caller's own.
      const client = ctx.state.clientId ?? 'anonymous';
      const owner = (await deps.sessions.owner(sessionId)) ?? (await deps.sessions.claim(sessionId, client));
      if (owner !== client) throw new SessionNotFound();
    }
    const lastUser = [...body.messages].reverse().find((m) => m.role === 'user');
    const input = {
      prompt: lastUser?.content ?? '',
      messages: body.messages.map((m) => ({ role: m.role, content: m.content })),
      sessionId,
      model: body.model,
      temperature: body.temperature ?? undefined,
      topP: body.top_p ?? undefined,
      maxTokens: body.max_completion_tokens ?? body.max_tokens ?? undefined,
      source: 'openai',
      clientId: ctx.state.clientId ?? 'anonymous',
    };
    const id = `chatcmpl-${ctx.state.correlationId ?? randomUUID()}`;
    const created = Math.floor(Date.now() / 1000);
    const signal = clientGone(ctx);
    ctx.set('X-Session-ID', sessionId);
    if (!body.stream) {
      const out = await deps.chat.complete(input, signal);
      ctx.set('X-Cache', out.cached ? 'hit' : 'miss');
      ctx.set('X-Vega-Backend', out.backend);
      ctx.set('Cache-Control', 'no-store');
      ctx.body = {
        id, object: 'chat.completion', created, model: out.model,
        choices: [{ index: 0, message: { role: 'assistant', content: out.response }, finish_reason: out.finishReason ?? 'stop', logprobs: null }],
        usage: { prompt_tokens: out.usage.inputTokens, completion_tokens: out.usage.outputTokens, total_tokens: out.usage.inputTokens + out.usage.outputTokens },
      };
      return;
    }
    const { cached, backend, events } = await deps.chat.stream(input, signal);
    ctx.status = 200;
    ctx.set('Content-Type', 'text/event-stream; charset=utf-8');
    ctx.set('Cache-Control', 'no-store');
    ctx.set('X-Accel-Buffering', 'no');
    ctx.set('X-Cache', cached ? 'hit' : 'miss');
    ctx.set('X-Vega-Backend', backend);
    const includeUsage = body.stream_options?.include_usage === true;
    const stream = Readable.from(chunks(events, { id, created, model: input.model ?? '', includeUsage }, ctx.state.correlationId ?? '', { route: routeOf(ctx), logger: deps.logger }), { objectMode: false });
    ctx.body = stream;
    guardStream(ctx.res, stream, {
      ...deps.streamLimits(),
      errorFrame: (err) => `data: ${JSON.stringify(errorBody(err, ctx.state.correlationId, { type: 'upstream_error' }))}\n\n`,
      onClose: (err) => deps.logger.warn({ error_code: err.code }, 'stream closed by Vega'),
    });
  });
}

async function* chunks(
  events: AsyncGenerator<StreamEvent>,
  meta: { id: string; created: number; model: string; includeUsage: boolean },
  correlationId: string,
  where: { route: string | undefined; logger: Logger },
): AsyncGenerator<string> {
  const frame = (choices: unknown[], model: string, extra: object = {}) =>
    `data: ${JSON.stringify({ id: meta.id, object: 'chat.completion.chunk', created: meta.created, model, choices, ...extra })}\n\n`;
  let model = meta.model;
  let first = true;
  try {
    for await (const ev of events) {
      if (ev.type === 'delta') {
        yield frame([{ index: 0, delta: first ? { role: 'assistant', content: ev.text } : { content: ev.text }, finish_reason: null }], model);
        first = false;
        continue;
      }
      model = ev.model;
      yield frame([{ index: 0, delta: {}, finish_reason: ev.finishReason ?? 'stop' }], model);
      if (meta.includeUsage) {
        const u = ev.usage;
        yield frame([], model, { usage: { prompt_tokens: u.inputTokens, completion_tokens: u.outputTokens, total_tokens: u.inputTokens + u.outputTokens } });
      }
      yield 'data: [DONE]\n\n';
    }
  } catch (thrown) {
    if (thrown instanceof VegaError && thrown.code === 'client_closed') {
      // Leaving is the client's right: one info line, and nobody left to send a frame to.
      where.logger.info({ error_code: thrown.code }, 'client left mid-stream');
      return;
    }
    yield `data: ${JSON.stringify(errorBody(streamFailed(thrown, where), correlationId, { type: 'upstream_error' }))}\n\n`;
  }
}
