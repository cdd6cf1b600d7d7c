import { randomUUID } from 'node:crypto';
import { VegaError } from '../../errors';
import type Router from '@koa/router';
import { SessionNotFound } from '../../sessions/context';
import type { SessionStore } from '../../sessions/store';
import { newSessionId } from '../../sessions/session-id';
import { z } from 'zod';
import type { ChatService } from '../../llm/chat-service';
import type { ChatMessage, GenerationOptions, StreamEvent, ToolCall } from '../../llm/types';
import { InvalidRequest, ModelNotFound } from '../../errors';
import type { Logger } from '../../telemetry/logger';
import { errorBody, streamFailed } from '../error-body';
import { relayStream } from '../stream-guard';
import type { VegaState } from '../state';
import { memoized, MODEL_NAME, parseOr400, SESSION_ID } from '../validation';
import { clientGone, routeOf } from './chat';

/**
 * The body of an OpenAI chat-completions request: every field of OpenAI's Chat Completions API is
 * known. What the backend can honour is passed through; fields with no meaning for a self-hosted
 * backend are accepted and ignored (IGNORED_FIELDS, listed in docs/api.md); a setting Vega cannot
 * honour is a 400 that names it (`refusedField`, the provider's `unsupported`). A field OpenAI
 * does not have is refused, as OpenAI itself does.
 */
const completionsSchema = memoized((maxPromptChars: number) => buildCompletionsSchema(maxPromptChars));

/** Accepted and ignored: they change nothing about the answer a self-hosted backend gives. */
export const IGNORED_FIELDS = [
  'store',
  'metadata',
  'service_tier',
  'prompt_cache_key',
  'safety_identifier',
  'reasoning_effort',
  'verbosity',
  'prediction',
] as const;

const MAX_TOOLS = 128;

function buildCompletionsSchema(maxPromptChars: number) {
  const textParts = z
    .array(
      z.union([
        z.object({ type: z.literal('text'), text: z.string() }),
        z.object({ type: z.literal('refusal'), refusal: z.string() }).transform((p) => ({ type: 'text' as const, text: p.refusal })),
      ]),
    )
    .transform((parts) => parts.map((p) => p.text).join(''));
  const content = z.union([z.string(), textParts]);
  const toolCall = z.object({
    id: z.string().min(1).max(200),
    type: z.literal('function'),
    function: z.object({ name: z.string().min(1).max(64), arguments: z.string() }),
  });
  const message = z.discriminatedUnion(
    'role',
    [
      z.object({ role: z.enum(['system', 'developer']), content, name: z.string().max(64).optional() }),
      z.object({ role: z.literal('user'), content, name: z.string().max(64).optional() }),
      z
        .object({
          role: z.literal('assistant'),
          content: content.nullish(),
          tool_calls: z.array(toolCall).max(MAX_TOOLS).optional(),
          name: z.string().max(64).optional(),
          refusal: z.string().nullish(),
          audio: z.null().optional(),
        })
        .refine(
          (m) => (m.content !== null && m.content !== undefined) || (m.tool_calls?.length ?? 0) > 0,
          'an assistant message needs content or tool_calls',
        ),
      z.object({ role: z.literal('tool'), content, tool_call_id: z.string().min(1).max(200) }),
    ],
    {
      error: (iss) =>
        iss.code === 'invalid_union' && 'discriminator' in iss ? 'must be one of: system, developer, user, assistant, tool' : undefined,
    },
  );
  const chars = (m: z.infer<typeof message>) =>
    (m.content ?? '').length +
    ('tool_calls' in m ? (m.tool_calls ?? []).reduce((n, c) => n + c.function.arguments.length + c.function.name.length, 0) : 0);
  const tool = z.object({
    type: z.literal('function'),
    function: z.object({
      name: z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, 'must be 1-64 characters of letters, digits, _ and -'),
      description: z.string().max(4096).optional(),
      parameters: z.record(z.string(), z.unknown()).optional(),
      strict: z.boolean().nullish(),
    }),
  });
  return z.strictObject({
    model: z.string().regex(MODEL_NAME, 'must be 1-200 characters of letters, digits and . _ : / -').optional(),
    messages: z
      .array(message)
      .min(1, 'must hold at least one message')
      .max(256)
      .refine((m) => m.some((x) => x.role === 'user' && (x.content ?? '').trim().length > 0), 'must hold a non-empty user message')
      .refine((m) => m.reduce((n, x) => n + chars(x), 0) <= maxPromptChars, `must total at most ${maxPromptChars} characters`),
    temperature: z.number().min(0).max(2).nullish(),
    top_p: z.number().min(0).max(1).nullish(),
    max_tokens: z.number().int().min(1).max(1_000_000).nullish(),
    max_completion_tokens: z.number().int().min(1).max(1_000_000).nullish(),
    stream: z.boolean().nullish(),
    stream_options: z.object({ include_usage: z.boolean().optional(), include_obfuscation: z.boolean().optional() }).nullish(),
    n: z.number().int().min(1).max(128).nullish(),
    user: z.string().max(256).optional(),
    tools: z.array(tool).max(MAX_TOOLS).optional(),
    tool_choice: z
      .union([
        z.enum(['auto', 'none', 'required']),
        z.object({ type: z.literal('function'), function: z.object({ name: z.string().min(1).max(64) }) }),
      ])
      .optional(),
    parallel_tool_calls: z.boolean().optional(),
    response_format: z
      .discriminatedUnion('type', [
        z.object({ type: z.literal('text') }),
        z.object({ type: z.literal('json_object') }),
        z.object({
          type: z.literal('json_schema'),
          json_schema: z.object({
            name: z.string().min(1).max(64),
            description: z.string().optional(),
            schema: z.record(z.string(), z.unknown()).optional(),
            strict: z.boolean().nullish(),
          }),
        }),
      ])
      .optional(),
    stop: z.union([z.string(), z.array(z.string()).max(4)]).nullish(),
    presence_penalty: z.number().min(-2).max(2).nullish(),
    frequency_penalty: z.number().min(-2).max(2).nullish(),
    seed: z.number().int().nullish(),
    // Known, and refused unless they ask for nothing (refusedField).
    logprobs: z.boolean().nullish(),
    top_logprobs: z.number().int().min(0).max(20).nullish(),
    logit_bias: z.record(z.string(), z.number()).nullish(),
    modalities: z.array(z.enum(['text', 'audio'])).nullish(),
    audio: z.unknown().optional(),
    functions: z.unknown().optional(),
    function_call: z.unknown().optional(),
    web_search_options: z.unknown().optional(),
    // Accepted and ignored (IGNORED_FIELDS).
    store: z.boolean().nullish(),
    metadata: z.record(z.string(), z.string()).nullish(),
    service_tier: z.string().max(64).nullish(),
    prompt_cache_key: z.string().max(1024).optional(),
    safety_identifier: z.string().max(256).optional(),
    reasoning_effort: z.string().max(32).nullish(),
    verbosity: z.string().max(32).nullish(),
    prediction: z.unknown().optional(),
  });
}

type CompletionsBody = z.infer<ReturnType<typeof buildCompletionsSchema>>;

/** A field no backend Vega speaks to can honour, when it asks for something. */
function refusedField(b: CompletionsBody): string | undefined {
  if (b.n !== null && b.n !== undefined && b.n !== 1) return 'n';
  if (b.logprobs === true) return 'logprobs';
  if (b.top_logprobs !== null && b.top_logprobs !== undefined) return 'top_logprobs';
  if (b.logit_bias && Object.keys(b.logit_bias).length > 0) return 'logit_bias';
  if (b.modalities?.includes('audio')) return 'modalities';
  if (b.audio !== undefined && b.audio !== null) return 'audio';
  if (b.functions !== undefined && b.functions !== null) return 'functions';
  if (b.function_call !== undefined && b.function_call !== null) return 'function_call';
  if (b.web_search_options !== undefined && b.web_search_options !== null) return 'web_search_options';
  const names = new Set((b.tools ?? []).map((t) => t.function.name));
  if (typeof b.tool_choice === 'object' && !names.has(b.tool_choice.function.name)) return 'tool_choice';
  if ((b.tool_choice === 'required' || typeof b.tool_choice === 'object') && names.size === 0) return 'tool_choice';
  return undefined;
}

/** The messages as the providers take them (`developer` is sent as `system`). */
function toMessages(b: CompletionsBody): ChatMessage[] {
  return b.messages.map((m): ChatMessage => {
    switch (m.role) {
      case 'developer':
      case 'system':
        return { role: 'system', content: m.content };
      case 'user':
        return { role: 'user', content: m.content };
      case 'tool':
        return { role: 'tool', content: m.content, toolCallId: m.tool_call_id };
      case 'assistant':
        return {
          role: 'assistant',
          content: m.content ?? '',
          ...(m.tool_calls?.length
            ? { toolCalls: m.tool_calls.map((c) => ({ id: c.id, name: c.function.name, arguments: c.function.arguments })) }
            : {}),
        };
    }
  });
}

function toOptions(b: CompletionsBody): GenerationOptions | undefined {
  const stop = typeof b.stop === 'string' ? [b.stop] : (b.stop ?? undefined);
  const o: GenerationOptions = {
    ...(b.tools?.length ? { tools: b.tools } : {}),
    ...(b.tool_choice !== undefined ? { toolChoice: b.tool_choice } : {}),
    ...(b.parallel_tool_calls !== undefined ? { parallelToolCalls: b.parallel_tool_calls } : {}),
    ...(b.response_format ? { responseFormat: b.response_format } : {}),
    ...(stop?.length ? { stop } : {}),
    ...(b.seed !== null && b.seed !== undefined ? { seed: b.seed } : {}),
    ...(b.presence_penalty !== null && b.presence_penalty !== undefined ? { presencePenalty: b.presence_penalty } : {}),
    ...(b.frequency_penalty !== null && b.frequency_penalty !== undefined ? { frequencyPenalty: b.frequency_penalty } : {}),
    ...(b.user !== undefined ? { user: b.user } : {}),
  };
  return Object.keys(o).length > 0 ? o : undefined;
}

const wireToolCalls = (calls: readonly ToolCall[]) =>
  calls.map((c, index) => ({ index, id: c.id, type: 'function' as const, function: { name: c.name, arguments: c.arguments } }));

export interface OpenAiRouteDeps {
  readonly chat: ChatService;
  readonly logger: Logger;
  readonly maxPromptChars: () => number;
  /** The backend's models (its own list). */
  readonly models: (signal: AbortSignal) => Promise<string[]>;
  /** Session ownership: an `X-Session-ID` another key owns is refused (the route adds no context). */
  readonly sessions?: SessionStore;
  /** STREAM_STALL_S and LLM_STREAM_MAX_S, in ms. */
  readonly streamLimits: () => { stallMs: number; maxMs: number };
}

/** `POST /v1/chat/completions` and `GET /v1/models`: Vega as an OpenAI-compatible server. */
export function registerOpenAiRoutes(router: Router<VegaState>, deps: OpenAiRouteDeps): void {
  const model = (id: string) => ({ id, object: 'model', created: 0, owned_by: deps.chat.provider.name });
  router.get('/v1/models', async (ctx) => {
    ctx.body = { object: 'list', data: (await deps.models(clientGone(ctx))).map(model) };
  });
  // A wildcard: model ids may hold a slash (`org/model`).
  router.get('/v1/models/*id', async (ctx) => {
    const raw = (ctx.params as Record<string, unknown>).id;
    const id = Array.isArray(raw) ? raw.join('/') : String(raw ?? '');
    const models = await deps.models(clientGone(ctx));
    // Ollama lists `name:tag`; a name alone means its `latest` tag, as Ollama itself reads it.
    const found = models.find((m) => m === id || m === `${id}:latest`);
    if (!MODEL_NAME.test(id) || found === undefined) throw new ModelNotFound(id.slice(0, 200));
    ctx.body = model(id);
  });

  router.post('/v1/chat/completions', async (ctx) => {
    const body = parseOr400(completionsSchema(deps.maxPromptChars()), (ctx.request as { body?: unknown }).body);
    const messages = toMessages(body);
    const options = toOptions(body);
    const refused = refusedField(body) ?? deps.chat.provider.unsupported?.({ messages, options });
    if (refused) throw new InvalidRequest(`${refused}: not supported with the configured LLM backend (${deps.chat.provider.name})`);
    const sessionHeader = ctx.get('x-session-id');
    const sessionId = SESSION_ID.test(sessionHeader) ? sessionHeader : newSessionId();
    if (deps.sessions && sessionId === sessionHeader) {
      // Stateless, but it writes turns into the session: only into the caller's own.
      const client = ctx.state.clientId ?? 'anonymous';
      const owner = (await deps.sessions.owner(sessionId)) ?? (await deps.sessions.claim(sessionId, client));
      if (owner !== client) throw new SessionNotFound();
    }
    const lastUser = [...messages].reverse().find((m) => m.role === 'user');
    const input = {
      prompt: lastUser?.content ?? '',
      messages,
      options,
      storeMessages: true,
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
        id,
        object: 'chat.completion',
        created,
        model: out.model,
        choices: [
          {
            index: 0,
            message: out.toolCalls?.length
              ? {
                  role: 'assistant',
                  content: out.response === '' ? null : out.response,
                  tool_calls: wireToolCalls(out.toolCalls).map(({ index: _i, ...c }) => c),
                  refusal: null,
                }
              : { role: 'assistant', content: out.response, refusal: null },
            finish_reason: out.toolCalls?.length ? 'tool_calls' : (out.finishReason ?? 'stop'),
            logprobs: null,
          },
        ],
        usage: {
          prompt_tokens: out.usage.inputTokens,
          completion_tokens: out.usage.outputTokens,
          total_tokens: out.usage.inputTokens + out.usage.outputTokens,
        },
      };
      return;
    }
    const { cached, backend, events } = await deps.chat.stream(input, signal);
    const includeUsage = body.stream_options?.include_usage === true;
    const frames = chunks(events, { id, created, model: input.model ?? '', includeUsage }, ctx.state.correlationId ?? '', {
      route: routeOf(ctx),
      logger: deps.logger,
    });
    await relayStream(ctx, frames, {
      headers: { 'Content-Type': 'text/event-stream; charset=utf-8', 'X-Cache': cached ? 'hit' : 'miss', 'X-Vega-Backend': backend },
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
  let calledTools = false;
  try {
    for await (const ev of events) {
      if (ev.type === 'delta') {
        yield frame(
          [{ index: 0, delta: first ? { role: 'assistant', content: ev.text } : { content: ev.text }, finish_reason: null }],
          model,
        );
        first = false;
        continue;
      }
      if (ev.type === 'tool_calls') {
        // One delta per call: its id, name and the whole arguments text (a client joins deltas by index).
        for (const call of wireToolCalls(ev.calls)) {
          yield frame(
            [{ index: 0, delta: { ...(first ? { role: 'assistant', content: null } : {}), tool_calls: [call] }, finish_reason: null }],
            model,
          );
          first = false;
        }
        calledTools = ev.calls.length > 0;
        continue;
      }
      if (ev.type !== 'done') continue; // server-side tool events are /chat's only
      model = ev.model;
      yield frame([{ index: 0, delta: {}, finish_reason: calledTools ? 'tool_calls' : (ev.finishReason ?? 'stop') }], model);
      if (meta.includeUsage) {
        const u = ev.usage;
        yield frame([], model, {
          usage: { prompt_tokens: u.inputTokens, completion_tokens: u.outputTokens, total_tokens: u.inputTokens + u.outputTokens },
        });
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
