import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FakeIntegrations } from '../support/fake-integrations';
import { FakeOllama } from '../support/fake-ollama';
import { FakeOpenAi } from '../support/fake-openai';
import { OtlpReceiver } from '../support/otlp-receiver';
import { jsonOf, postJson, startVega, TEST_KEY, type VegaProcess } from '../support/vega-process';

type Sent = Array<{ role: string; content: string; tool_calls?: unknown[]; tool_name?: string }>;

let fake: FakeOllama;
let apis: FakeIntegrations;
let vega: VegaProcess;

beforeAll(async () => {
  fake = await FakeOllama.start();
  apis = await FakeIntegrations.start();
  vega = await startVega({
    env: {
      LLM_BASE_URL: fake.url,
      CACHE_MAX_ENTRIES: '0',
      SEARCH_URL: `${apis.url}/`,
      HOME_ASSISTANT_URL: apis.url,
      HOME_ASSISTANT_TOKEN: 'ha-secret',
      // A GitHub that cannot be reached: the dead integration.
      GITHUB_API_URL: 'http://127.0.0.1:1',
      INTEGRATION_TIMEOUT_S: '2',
    },
  });
});

afterAll(async () => {
  await vega?.stop();
  vega?.cleanup();
  await fake?.close();
  await apis?.close();
});

const history = async (session: string) =>
  jsonOf(await fetch(`${vega.url}/sessions/${session}/history`, { headers: { 'x-api-key': TEST_KEY } }));

describe('server-side tools on /chat', () => {
  it('web_search: the search is made, the model gets the result as a tool message, answers, and history shows the call', async () => {
    fake.behave({ toolCalls: [{ name: 'web_search', arguments: { query: 'vega star' } }] });
    const before = fake.sentMessages.length;
    const res = await postJson(vega.url, '/chat', { prompt: 'what is vega?', session_id: 'tools-1' });
    expect(res.status).toBe(200);
    const body = await jsonOf(res);
    expect(body.tool_calls).toMatchObject([{ name: 'web_search', outcome: 'ok', arguments: '{"query":"vega star"}' }]);
    const search = apis.calls.filter((c) => c.path === '/' && c.query.q === 'vega star');
    expect(search).toHaveLength(1);
    expect(search[0]!.query).toMatchObject({ format: 'json', no_html: '1' });

    const rounds = fake.sentMessages.slice(before) as Sent[];
    expect(rounds).toHaveLength(2);
    const offered = fake.generations.at(-2)!.body!.tools as Array<{ function: { name: string; parameters: { properties: object } } }>;
    expect(offered.map((t) => t.function.name).sort()).toEqual(['github_search', 'home_assistant_state', 'web_search']); // read-only and configured
    expect(offered.find((t) => t.function.name === 'web_search')!.function.parameters.properties).toHaveProperty('query');
    const second = rounds[1]!;
    expect(second.at(-2)).toMatchObject({
      role: 'assistant',
      tool_calls: [{ function: { name: 'web_search', arguments: { query: 'vega star' } } }],
    });
    const tool = second.at(-1)!;
    expect(tool).toMatchObject({ role: 'tool', tool_name: 'web_search' });
    expect(tool.content).toContain('brightest star');
    expect(tool.content).toContain('https://en.wikipedia.org/wiki/Vega');
    expect(tool.content).toContain('Altair');
    // Untrusted data: never promoted to a system message.
    expect(second.filter((m) => m.role === 'system').some((m) => m.content.includes('brightest'))).toBe(false);
    expect(body.response).toBe(`Echo: ${tool.content}`);

    const h = await history('tools-1');
    expect(h.items[0].tool_calls).toMatchObject([{ name: 'web_search', outcome: 'ok', arguments: '{"query":"vega star"}' }]);
    expect(h.items[0].tool_calls[0].duration_ms).toBeGreaterThanOrEqual(0);
  });

  it('streams: a tool event per call before the answer; history shows the call', async () => {
    fake.behave({ toolCalls: [{ name: 'home_assistant_state', arguments: { entity_id: 'sensor.outside_temperature' } }] });
    const res = await postJson(
      vega.url,
      '/chat',
      { prompt: 'how warm is it?', session_id: 'tools-2', stream: true },
      { accept: 'application/x-ndjson' },
    );
    expect(res.status).toBe(200);
    const lines = (await res.text())
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { type: string; name?: string; status?: string; delta?: string });
    const types = lines.map((l) => l.type);
    expect(lines.filter((l) => l.type === 'tool')).toMatchObject([
      { name: 'home_assistant_state', status: 'running' },
      { name: 'home_assistant_state', status: 'ok' },
    ]);
    expect(types.lastIndexOf('tool')).toBeLessThan(types.indexOf('chunk'));
    expect(types.at(-1)).toBe('done');
    expect(
      lines
        .filter((l) => l.type === 'chunk')
        .map((l) => l.delta)
        .join(''),
    ).toContain('21.5');
    const ha = apis.calls.filter((c) => c.path === '/api/states/sensor.outside_temperature');
    expect(ha.at(-1)!.headers.authorization).toBe('Bearer ha-secret');
    expect((await history('tools-2')).items[0].tool_calls).toMatchObject([{ name: 'home_assistant_state', outcome: 'ok' }]);
    expect(vega.output()).not.toContain('ha-secret');
  });

  it('bad arguments, an unknown tool, a tool not offered and a dead integration are tool errors the model reads, never a 5xx', async () => {
    fake.behave({
      toolCalls: [
        { name: 'web_search', arguments: { query: 5 } },
        { name: 'launch_rockets', arguments: {} },
        { name: 'slack_post', arguments: { text: 'hi' } },
        { name: 'github_search', arguments: { query: 'vega', kind: 'repositories' } },
      ],
    });
    const before = fake.sentMessages.length;
    const res = await postJson(vega.url, '/chat', { prompt: 'do things', session_id: 'tools-3' });
    expect(res.status).toBe(200);
    const body = await jsonOf(res);
    expect(body.tool_calls.map((c: { outcome: string }) => c.outcome)).toEqual(['invalid_arguments', 'unknown_tool', 'disabled', 'failed']);
    const results = (fake.sentMessages.slice(before)[1] as Sent).filter((m) => m.role === 'tool');
    expect(results).toHaveLength(4);
    for (const r of results) expect(JSON.parse(r.content)).toHaveProperty('error');
    expect(results[0]!.content).toContain('query');
    expect(results[1]!.content).toContain("unknown tool 'launch_rockets'");
    expect(results[3]!.content).toContain('github');
    expect((await history('tools-3')).items[0].status).toBe('ok');
  });

  it('stops offering tools after TOOL_MAX_ROUNDS (4) rounds, so a model that keeps calling must answer', async () => {
    fake.behave({ toolCalls: [{ name: 'web_search', arguments: { query: 'again' } }], toolCallsAlways: true });
    const before = fake.generations.length;
    const res = await postJson(vega.url, '/chat', { prompt: 'loop?', session_id: 'tools-4' });
    expect(res.status).toBe(200);
    const rounds = fake.generations.slice(before);
    expect(rounds.map((c) => Array.isArray(c.body?.tools))).toEqual([true, true, true, true, false]);
    expect((await jsonOf(res)).tool_calls).toHaveLength(4);
  });

  it('"tools": false turns them off for the turn', async () => {
    fake.behave({ toolCalls: [{ name: 'web_search', arguments: { query: 'again' } }] });
    const res = await postJson(vega.url, '/chat', { prompt: 'loop?', session_id: 'tools-4', tools: false });
    expect(res.status).toBe(200);
    expect(fake.generations.at(-1)!.body).not.toHaveProperty('tools');
    expect((await jsonOf(res)).tool_calls).toBeUndefined();
  });

  it('a model without tool support: answered without tools, and remembered', async () => {
    fake.behave({ noToolSupport: true });
    const before = fake.generations.length;
    const first = await postJson(vega.url, '/chat', { prompt: 'hello', model: 'test-model' });
    expect(first.status).toBe(200);
    expect((await jsonOf(first)).response).toBe('Echo: hello');
    const calls = fake.generations.slice(before);
    expect(calls.map((c) => Array.isArray(c.body?.tools))).toEqual([true, false]);
    const second = await postJson(vega.url, '/chat', { prompt: 'hello again', model: 'test-model', stream: true });
    expect(second.status).toBe(200);
    await second.text();
    expect(fake.generations.at(-1)!.body).not.toHaveProperty('tools');
    expect(fake.generations.length - before).toBe(3);
  });

  it('counts calls by tool and outcome', async () => {
    const text = await (await fetch(`${vega.url}/metrics`, { headers: { 'x-api-key': TEST_KEY } })).text();
    expect(text).toMatch(/vega_tool_calls_total\{[^}]*gen_ai_tool_name="web_search"[^}]*vega_tool_outcome="ok"/);
    expect(text).toMatch(/vega_tool_calls_total\{[^}]*gen_ai_tool_name="unknown"[^}]*vega_tool_outcome="unknown_tool"/);
    expect(text).toMatch(/vega_tool_duration_bucket\{[^}]*gen_ai_tool_name="web_search"/);
  });
});

describe("tool calls in OpenAI's format on /chat", () => {
  it("runs the call the backend asked for and answers; each call is an execute_tool span in the request's trace", async () => {
    const upstream = await FakeOpenAi.start();
    const local = await FakeIntegrations.start();
    const otlp = await OtlpReceiver.start();
    const v = await startVega({
      env: {
        LLM_BACKEND: 'openai',
        LLM_BASE_URL: upstream.url,
        MODEL_NAME: 'gpt-fake',
        SEARCH_URL: `${local.url}/`,
        TOOLS: 'web_search',
        CACHE_MAX_ENTRIES: '0',
        OTEL_EXPORTER_OTLP_ENDPOINT: otlp.url,
        OTEL_BSP_SCHEDULE_DELAY: '100',
      },
    });
    try {
      upstream.toolCalls = [{ name: 'web_search', arguments: '{"query":"lyra"}' }];
      for (const stream of [false, true]) {
        const res = await postJson(
          v.url,
          '/chat',
          { prompt: 'tell me about lyra', stream },
          stream ? { accept: 'application/x-ndjson' } : {},
        );
        expect(res.status).toBe(200);
        const text = stream
          ? (await res.text())
              .trim()
              .split('\n')
              .map((l) => JSON.parse(l) as { type: string; delta?: string })
              .filter((l) => l.type === 'chunk')
              .map((l) => l.delta)
              .join('')
          : (await jsonOf(res)).response;
        expect(text).toBe('Echo: tell me about lyra');
        const sent = upstream.calls.at(-1)!.body!.messages as Array<{ role: string; content: string | null; tool_call_id?: string }>;
        expect(sent.at(-2)).toMatchObject({ role: 'assistant', content: null });
        expect(sent.at(-1)).toMatchObject({ role: 'tool', tool_call_id: 'call_fake_0' });
        expect(sent.at(-1)!.content).toContain('lyra');
      }
      expect(local.calls.filter((c) => c.query.q === 'lyra')).toHaveLength(2);

      const res = await postJson(v.url, '/chat', { prompt: 'and once more' });
      const traceId = res.headers.get('x-correlation-id')!;
      // The tool span's parent is the server span, which ends (and is exported) after the response:
      // wait for both rather than for whichever batch comes first.
      await otlp.waitFor(() => {
        const t = otlp.trace(traceId);
        const found = t.find((sp) => sp.name === 'execute_tool web_search');
        return found !== undefined && t.some((sp) => sp.spanId === found.parentSpanId);
      });
      const spans = otlp.trace(traceId);
      const tool = spans.find((sp) => sp.name === 'execute_tool web_search')!;
      expect(tool.attributes).toMatchObject({
        'gen_ai.operation.name': 'execute_tool',
        'gen_ai.tool.name': 'web_search',
        'gen_ai.tool.call.id': 'call_fake_0',
        'vega.tool.outcome': 'ok',
      });
      // Under the request's span, with the search's own client span under it.
      expect(spans.some((sp) => sp.spanId === tool.parentSpanId)).toBe(true);
      expect(spans.some((sp) => sp.parentSpanId === tool.spanId && sp.kind === 3)).toBe(true);
    } finally {
      await v.stop();
      v.cleanup();
      await upstream.close();
      await local.close();
      await otlp.close();
    }
  });
});
