import { VegaError } from '../../errors';
import type Router from '@koa/router';
import type { Context } from 'koa';
import type { ChatService } from '../../llm/chat-service';
import type { SessionContext } from '../../sessions/context';
import { newSessionId } from '../../sessions/session-id';
import type { StreamEvent } from '../../llm/types';
import type { ToolResult } from '../../tools/runner';
import { errorBody, streamFailed } from '../error-body';
import { relayStream } from '../stream-guard';
import type { Logger } from '../../telemetry/logger';
import { onResponseClose } from '../response-close';
import type { VegaState } from '../state';
import { chatBodySchema, parseOr400 } from '../validation';

export interface ChatRouteDeps {
  readonly chat: ChatService;
  readonly context: SessionContext;
  readonly logger: Logger;
  readonly maxPromptChars: () => number;
  /** STREAM_STALL_S and LLM_STREAM_MAX_S, in ms. */
  readonly streamLimits: () => { stallMs: number; maxMs: number };
}

/** An AbortSignal that fires when the client goes away before the response is complete. */
export function clientGone(ctx: Context): AbortSignal {
  const controller = new AbortController();
  onResponseClose(ctx.res, () => {
    if (!ctx.res.writableFinished) controller.abort();
  });
  return controller.signal;
}

/** The route template koa's router matched, for metric labels. */
export function routeOf(ctx: Context): string | undefined {
  return ctx._matchedRoute ? String(ctx._matchedRoute) : undefined;
}

/** `POST /chat`: JSON, server-sent events with `stream: true`, or NDJSON when asked for. */
export function registerChatRoutes(router: Router<VegaState>, deps: ChatRouteDeps): void {
  router.post('/chat', async (ctx) => {
    const body = parseOr400(chatBodySchema(deps.maxPromptChars()), (ctx.request as { body?: unknown }).body);
    const sessionId = body.session_id ?? newSessionId();
    const clientId = ctx.state.clientId ?? 'anonymous';
    // Before the backend call: this turn sees the turns committed before it started.
    const context = await deps.context.prepare({
      sessionId,
      given: body.session_id !== undefined,
      clientId,
      prompt: body.prompt,
      useContext: body.context !== false,
      streamed: body.stream === true,
    });
    ctx.state.serverSpan?.setAttributes({ 'vega.context.turns': context.turns, 'vega.context.chars': context.chars });
    const input = {
      prompt: body.prompt,
      messages: context.messages,
      sessionId,
      model: body.model,
      temperature: body.temperature,
      topP: body.top_p,
      maxTokens: body.max_tokens,
      source: 'chat',
      clientId,
      serverTools: body.tools !== false,
    };
    const signal = clientGone(ctx);
    const correlationId = ctx.state.correlationId ?? '';
    if (!body.stream) {
      const out = await deps.chat.complete(input, signal);
      ctx.set('X-Cache', out.cached ? 'hit' : 'miss');
      ctx.set('X-Vega-Backend', out.backend);
      ctx.set('Cache-Control', 'no-store');
      ctx.body = {
        response: out.response,
        session_id: out.sessionId,
        model: out.model,
        correlation_id: correlationId,
        cached: out.cached,
        usage: { input_tokens: out.usage.inputTokens, output_tokens: out.usage.outputTokens },
        ...(out.toolResults?.length ? { tool_calls: out.toolResults.map(toolCallView) } : {}),
      };
      return;
    }
    // Errors before the first byte (refused, timeout, open breaker) get a normal status code.
    const { cached, backend, events } = await deps.chat.stream(input, signal);
    const ndjson = /application\/x-ndjson/i.test(ctx.get('accept')) && !/text\/event-stream/i.test(ctx.get('accept'));
    const format = ndjson ? ndjsonFrame : sseFrame;
    const done = { session_id: input.sessionId, correlation_id: correlationId, cached };
    await relayStream(ctx, frames(events, format, done, { route: routeOf(ctx), logger: deps.logger }), {
      headers: {
        'Content-Type': ndjson ? 'application/x-ndjson; charset=utf-8' : 'text/event-stream; charset=utf-8',
        'X-Cache': cached ? 'hit' : 'miss',
        'X-Vega-Backend': backend,
      },
      ...deps.streamLimits(),
      errorFrame: (err) => format('error', errorBody(err, correlationId)),
      onClose: (err) => deps.logger.warn({ error_code: err.code }, 'stream closed by Vega'),
    });
  });
}

/** A server-side tool call as a /chat reply shows it. */
function toolCallView(r: ToolResult) {
  return { id: r.id, name: r.name, arguments: r.arguments, outcome: r.outcome, duration_ms: Math.round(r.durationMs) };
}

type Frame = (event: string, data: unknown) => string;
const sseFrame: Frame = (event, data) => `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`;
const ndjsonFrame: Frame = (event, data) => `${JSON.stringify({ type: event, ...(data as object) })}\n`;

/** Relays provider events as frames; an upstream failure becomes a final `error` frame. */
async function* frames(
  events: AsyncGenerator<StreamEvent>,
  frame: Frame,
  done: { session_id: string; correlation_id: string; cached: boolean },
  where: { route: string | undefined; logger: Logger },
): AsyncGenerator<string> {
  try {
    for await (const ev of events) {
      if (ev.type === 'delta') {
        yield frame('chunk', { delta: ev.text });
      } else if (ev.type === 'tool') {
        yield frame('tool', { id: ev.id, name: ev.name, status: ev.status });
      } else if (ev.type === 'done') {
        yield frame('done', {
          ...done,
          model: ev.model,
          finish_reason: ev.finishReason ?? null,
          usage: { input_tokens: ev.usage.inputTokens, output_tokens: ev.usage.outputTokens },
        });
      }
    }
  } catch (thrown) {
    if (thrown instanceof VegaError && thrown.code === 'client_closed') {
      // Leaving is the client's right: one info line, and nobody left to send a frame to.
      where.logger.info({ error_code: thrown.code }, 'client left mid-stream');
      return;
    }
    yield frame('error', errorBody(streamFailed(thrown, where), done.correlation_id));
  }
}
