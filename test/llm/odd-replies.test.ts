import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { VegaError } from '../../src/errors';
import { HfProvider } from '../../src/llm/hf';
import { OllamaProvider } from '../../src/llm/ollama';
import { OpenAiProvider } from '../../src/llm/openai';
import type { Completion, LlmProvider, StreamEvent } from '../../src/llm/types';
import { HttpPool } from '../../src/net/dispatcher';
import { ndjson, providerRequest as req, sse, streamedFrom } from '../support/provider-streams';
import { ScriptedServer } from '../support/scripted-server';

// A backend's reply is whatever its server sent. Whatever that is, a provider either reads it into
// values of the types Vega stores and answers with, or refuses it as an upstream fault (a 502);
// it never throws anything else, and never passes an object on where a string or count belongs.

let server: ScriptedServer;
let pool: HttpPool;
beforeAll(async () => {
  server = await ScriptedServer.start();
  pool = new HttpPool();
});
afterAll(async () => {
  await pool?.close();
  await server?.close();
});

const opts = () => ({ baseUrl: server.url, pool, timeoutMs: 2000 });
const providers = () => ({ ollama: new OllamaProvider(opts()), openai: new OpenAiProvider(opts()), hf: new HfProvider(opts()) });

const isCount = (n: unknown) => Number.isSafeInteger(n) && (n as number) >= 0;

/** Fails unless every field of `c` has the type the rest of Vega relies on. */
function expectWellTyped(c: Completion | StreamEvent): void {
  if ('type' in c && c.type === 'delta') {
    expect(typeof c.text).toBe('string');
    return;
  }
  if ('type' in c && c.type === 'tool_calls') {
    for (const call of c.calls) expect([typeof call.id, typeof call.name, typeof call.arguments]).toEqual(['string', 'string', 'string']);
    return;
  }
  const done = c as Completion;
  if ('text' in done) expect(typeof done.text).toBe('string');
  expect(typeof done.model).toBe('string');
  expect(done.model.length).toBeGreaterThan(0);
  expect(isCount(done.usage.inputTokens) && isCount(done.usage.outputTokens)).toBe(true);
  expect(done.finishReason === undefined || typeof done.finishReason === 'string').toBe(true);
  for (const call of done.toolCalls ?? [])
    expect([typeof call.id, typeof call.name, typeof call.arguments]).toEqual(['string', 'string', 'string']);
}

/** Runs `read`; a refusal must be an upstream fault. Returns what was read, or undefined if refused. */
async function readOrRefuse<T>(read: () => Promise<T>): Promise<T | undefined> {
  try {
    return await read();
  } catch (err) {
    expect(err).toBeInstanceOf(VegaError);
    expect((err as VegaError).status).toBeGreaterThanOrEqual(500);
    return undefined;
  }
}

/** A field as documented, or any JSON value in its place, or absent. */
const field = <T>(documented: fc.Arbitrary<T>) => fc.oneof(documented, fc.jsonValue({ maxDepth: 2 }));
const record = (shape: Record<string, fc.Arbitrary<unknown>>) => field(fc.record(shape, { requiredKeys: [] }));
const toolCall = record({
  id: fc.string(),
  type: fc.constant('function'),
  function: record({ name: fc.string(), arguments: fc.string() }),
});

const ollamaMessage = fc.record(
  {
    model: field(fc.string()),
    message: record({
      role: fc.constant('assistant'),
      content: fc.string(),
      tool_calls: field(fc.array(record({ function: record({ name: fc.string(), arguments: fc.jsonValue() }) }))),
    }),
    done: field(fc.boolean()),
    done_reason: field(fc.string()),
    prompt_eval_count: field(fc.nat()),
    eval_count: field(fc.nat()),
  },
  { requiredKeys: [] },
);
const openAiMessage = fc.record(
  {
    model: field(fc.string()),
    choices: field(
      fc.array(
        record({
          message: record({ content: field(fc.string()), tool_calls: field(fc.array(toolCall)) }),
          delta: record({
            content: field(fc.string()),
            tool_calls: field(
              fc.array(
                fc
                  .record({ index: field(fc.nat(3)) })
                  .chain((p) => toolCall.map((c) => (typeof c === 'object' && c !== null ? { ...c, ...p } : c))),
              ),
            ),
          }),
          finish_reason: field(fc.string()),
        }),
        { maxLength: 2 },
      ),
    ),
    usage: record({ prompt_tokens: field(fc.nat()), completion_tokens: field(fc.nat()) }),
  },
  { requiredKeys: [] },
);
const tgiDetails = record({
  finish_reason: field(fc.string()),
  generated_tokens: field(fc.nat()),
  prefill: field(fc.array(fc.record({ id: fc.nat() }))),
});
const tgiReply = fc.record({ generated_text: field(fc.string()), details: tgiDetails }, { requiredKeys: [] });
const tgiEvent = fc.record(
  {
    token: record({ text: field(fc.string()), special: field(fc.boolean()) }),
    generated_text: field(fc.constant(null)),
    details: tgiDetails,
  },
  { requiredKeys: [] },
);
/** A reply's body: mostly an object of the documented shape, sometimes any JSON at all. */
const body = (shape: fc.Arbitrary<unknown>) =>
  fc.oneof({ weight: 4, arbitrary: shape }, { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 1 }) });

describe('odd backend replies', () => {
  it('reads any complete reply into well-typed values, or refuses it as an upstream fault', async () => {
    const all = providers();
    const cases = [
      { provider: all.ollama, reply: body(ollamaMessage) },
      { provider: all.openai, reply: body(openAiMessage) },
      { provider: all.hf, reply: body(tgiReply) },
    ] as const;
    for (const { provider, reply } of cases) {
      await fc.assert(
        fc.asyncProperty(reply, async (r) => {
          server.script = { headers: { 'content-type': 'application/json' }, chunks: [JSON.stringify(r)] };
          const out = await readOrRefuse(() => provider.chat(req()));
          if (out) expectWellTyped(out);
        }),
        { numRuns: 150 },
      );
    }
  });

  it('reads any stream into well-typed events, or refuses it as an upstream fault', async () => {
    const all = providers();
    const cases: Array<{ provider: LlmProvider; events: fc.Arbitrary<string[]>; type: string }> = [
      {
        provider: all.ollama,
        events: fc.array(body(ollamaMessage), { maxLength: 4 }).map((es) => ndjson(...(es as object[]), { done: true })),
        type: 'application/x-ndjson',
      },
      {
        provider: all.openai,
        events: fc.array(body(openAiMessage), { maxLength: 4 }).map((es) => sse(...(es as object[]), '[DONE]')),
        type: 'text/event-stream',
      },
      {
        provider: all.hf,
        events: fc.array(body(tgiEvent), { maxLength: 4 }).map((es) => sse(...(es as object[]), { generated_text: 'x' })),
        type: 'text/event-stream',
      },
    ];
    for (const { provider, events, type } of cases) {
      await fc.assert(
        fc.asyncProperty(events, async (chunks) => {
          const out = await readOrRefuse(() => streamedFrom(server, provider, chunks, type));
          for (const ev of out ?? []) expectWellTyped(ev);
        }),
        { numRuns: 150 },
      );
    }
  });

  it('takes a count, a model or a reason of the wrong kind as absent', async () => {
    const { ollama, openai, hf } = providers();
    const json = (o: unknown) => ({ headers: { 'content-type': 'application/json' }, chunks: [JSON.stringify(o)] });
    server.script = json({
      model: { name: 'x' },
      message: { content: 'ok' },
      done: true,
      done_reason: 7,
      prompt_eval_count: '3',
      eval_count: -1,
    });
    expect(await ollama.chat(req())).toEqual({
      text: 'ok',
      model: 'm',
      usage: { inputTokens: 0, outputTokens: 0 },
      finishReason: undefined,
    });
    server.script = json({
      model: 12,
      choices: [{ message: { content: 'ok' }, finish_reason: ['stop'] }],
      usage: { prompt_tokens: 1.5, completion_tokens: 2 },
    });
    expect(await openai.chat(req())).toEqual({
      text: 'ok',
      model: 'm',
      usage: { inputTokens: 0, outputTokens: 2 },
      finishReason: undefined,
    });
    // `prefill` is the prompt's tokens; a string's length is not a count of them.
    server.script = json({ generated_text: 'ok', details: { prefill: 'abcdef', generated_tokens: '4', finish_reason: 'length' } });
    expect(await hf.chat(req())).toEqual({ text: 'ok', model: 'm', usage: { inputTokens: 0, outputTokens: 0 }, finishReason: 'length' });
  });

  it('does not concatenate a streamed tool call part of the wrong kind into its arguments, nor make a call of one', async () => {
    const events = await streamedFrom(
      server,
      providers().openai,
      sse(
        { choices: [{ delta: { tool_calls: [{ index: 0, id: 'c1', function: { name: 'search', arguments: '{"q":' } }] } }] },
        { choices: [{ delta: { tool_calls: [{ index: 0, function: { arguments: { q: 1 } } }] } }] },
        { choices: [{ delta: { tool_calls: [null, 7, 'x'] } }] },
        { choices: [{ delta: { tool_calls: [{ index: 0, function: { arguments: '"x"}' } }] }, finish_reason: 'tool_calls' }] },
        '[DONE]',
      ),
      'text/event-stream',
    );
    expect(events[0]).toEqual({ type: 'tool_calls', calls: [{ id: 'c1', name: 'search', arguments: '{"q":"x"}' }] });
  });

  it('refuses a reply or an event that is JSON but not an object', async () => {
    const { ollama, openai, hf } = providers();
    for (const provider of [ollama, openai, hf]) {
      for (const reply of ['null', '[1]', '"text"', '3']) {
        server.script = { headers: { 'content-type': 'application/json' }, chunks: [reply] };
        await expect(provider.chat(req())).rejects.toMatchObject({ code: 'upstream_bad_response' });
      }
    }
    await expect(streamedFrom(server, ollama, ['null\n'], 'application/x-ndjson')).rejects.toMatchObject({ code: 'upstream_bad_response' });
    await expect(streamedFrom(server, openai, sse('null'), 'text/event-stream')).rejects.toMatchObject({ code: 'upstream_bad_response' });
    await expect(streamedFrom(server, hf, sse('[]'), 'text/event-stream')).rejects.toMatchObject({ code: 'upstream_bad_response' });
  });
});
