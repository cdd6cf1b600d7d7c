import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FakeOllama } from '../support/fake-ollama';
import { FakeOpenAi } from '../support/fake-openai';
import { conversationRows, UUID_V7 } from '../support/db';
import { jsonOf, postJson, startVega, TEST_KEY, type VegaProcess } from '../support/vega-process';

let fake: FakeOllama;
let vega: VegaProcess;
let client: OpenAI;

beforeAll(async () => {
  fake = await FakeOllama.start();
  vega = await startVega({ env: { LLM_BASE_URL: fake.url } });
  client = new OpenAI({ baseURL: `${vega.url}/v1`, apiKey: TEST_KEY, maxRetries: 0 });
});

afterAll(async () => {
  await vega?.stop();
  vega?.cleanup();
  await fake?.close();
});

describe('POST /v1/chat/completions with the official openai client', () => {
  it('completes a chat', async () => {
    const out = await client.chat.completions.create({ model: 'llama3.2', messages: [{ role: 'user', content: 'hello from openai' }] });
    expect(out.object).toBe('chat.completion');
    expect(out.choices[0]!.message).toMatchObject({ role: 'assistant', content: 'Echo: hello from openai' });
    expect(out.choices[0]!.finish_reason).toBe('stop');
    expect(out.usage).toMatchObject({ prompt_tokens: 3, completion_tokens: 3, total_tokens: 6 });
    const rows = await conversationRows(vega.dbPath, { source: 'openai' });
    const row = rows.find((r) => r.prompt === 'hello from openai' && r.status === 'ok');
    // No X-Session-ID: a session of its own, with a time-ordered id (a UUIDv7).
    expect(row?.session_id).toMatch(UUID_V7);
  });

  it('streams a chat, with usage when asked for', async () => {
    const stream = await client.chat.completions.create({
      model: 'llama3.2',
      messages: [
        { role: 'system', content: 'be brief' },
        { role: 'user', content: 'stream please' },
      ],
      stream: true,
      stream_options: { include_usage: true },
    });
    let text = '';
    let usage: OpenAI.CompletionUsage | undefined | null;
    let finish: string | null | undefined;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta?.content ?? '';
      finish ??= chunk.choices[0]?.finish_reason;
      usage ??= chunk.usage;
    }
    expect(text).toBe('Echo: stream please');
    expect(finish).toBe('stop');
    expect(usage).toMatchObject({ completion_tokens: 3 });
    const sent = fake.generations.at(-1)!.body as { messages: unknown[] };
    expect(sent.messages).toEqual([
      { role: 'system', content: 'be brief' },
      { role: 'user', content: 'stream please' },
    ]);
  });

  it('gives the client an APIError with the right status for bad input', async () => {
    const bad = await client.chat.completions
      .create({ model: 'llama3.2', messages: [{ role: 'user', content: 'x' }], temperature: 5 })
      .catch((e: unknown) => e);
    expect(bad).toBeInstanceOf(OpenAI.APIError);
    expect((bad as InstanceType<typeof OpenAI.APIError>).status).toBe(400);
    const empty = await client.chat.completions.create({ model: 'llama3.2', messages: [] }).catch((e: unknown) => e);
    expect((empty as InstanceType<typeof OpenAI.APIError>).status).toBe(400);
    const unknownModel = await client.chat.completions
      .create({ model: 'nope', messages: [{ role: 'user', content: 'x' }] })
      .catch((e: unknown) => e);
    expect(unknownModel).toBeInstanceOf(OpenAI.NotFoundError);
    const noKey = new OpenAI({ baseURL: `${vega.url}/v1`, apiKey: 'wrong-key', maxRetries: 0 });
    const denied = await noKey.chat.completions
      .create({ model: 'llama3.2', messages: [{ role: 'user', content: 'x' }] })
      .catch((e: unknown) => e);
    expect(denied).toBeInstanceOf(OpenAI.AuthenticationError);
  });

  it('refuses a request argument it does not know, as OpenAI does', async () => {
    const res = await postJson(vega.url, '/v1/chat/completions', { messages: [{ role: 'user', content: 'x' }], tools_please: true });
    expect(res.status).toBe(400);
    expect((await jsonOf(res)).error.message).toContain('tools_please');
  });
});

describe('LLM_BACKEND=openai and LLM_BACKEND=hf', () => {
  let upstream: FakeOpenAi;
  beforeAll(async () => {
    upstream = await FakeOpenAi.start();
  });
  afterAll(async () => {
    await upstream?.close();
  });

  for (const backend of ['openai', 'hf'] as const) {
    it(`${backend}: answers /chat and streams through the backend's own API, with its key as a bearer token`, async () => {
      const v = await startVega({
        env: { LLM_BACKEND: backend, LLM_BASE_URL: upstream.url, LLM_API_KEY: 'upstream-secret', MODEL_NAME: 'gpt-fake' },
      });
      try {
        const res = await postJson(v.url, '/chat', { prompt: `via ${backend}` });
        expect(res.status).toBe(200);
        const body = await jsonOf(res);
        expect(body.response).toBe(`Echo: via ${backend}`);
        expect(body.usage.output_tokens).toBe(3);
        const call = upstream.calls.at(-1)!;
        expect(call.path).toBe(backend === 'openai' ? '/v1/chat/completions' : '/generate');
        expect(call.headers.authorization).toBe('Bearer upstream-secret');
        expect(call.headers.traceparent).toMatch(/^00-[0-9a-f]{32}-/);

        const streamed = await postJson(
          v.url,
          '/chat',
          { prompt: `stream via ${backend}`, stream: true },
          { accept: 'application/x-ndjson' },
        );
        const lines = (await streamed.text())
          .trim()
          .split('\n')
          .map((l) => JSON.parse(l) as { type: string; delta?: string; usage?: { output_tokens: number } });
        expect(
          lines
            .filter((l) => l.type === 'chunk')
            .map((l) => l.delta)
            .join(''),
        ).toBe(`Echo: stream via ${backend}`);
        expect(lines.at(-1)).toMatchObject({ type: 'done', usage: { output_tokens: 3 } });

        const ready = await jsonOf(await fetch(`${v.url}/readyz`));
        expect(ready.checks.llm).toMatchObject({ backend, status: 'ok', models: 1 });
        expect(v.output()).not.toContain('upstream-secret');
      } finally {
        await v.stop();
        v.cleanup();
      }
    });
  }
});

describe('the whole OpenAI face: tools, message forms, pass-through, models', () => {
  const tools: OpenAI.ChatCompletionTool[] = [
    {
      type: 'function',
      function: {
        name: 'get_weather',
        description: 'The weather in a city',
        parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'], additionalProperties: false },
        strict: true,
      },
    },
    { type: 'function', function: { name: 'get_time', parameters: { type: 'object', properties: {} } } },
  ];
  let upstream: FakeOpenAi;
  let v: VegaProcess;
  let oa: OpenAI;
  beforeAll(async () => {
    upstream = await FakeOpenAi.start();
    v = await startVega({ env: { LLM_BACKEND: 'openai', LLM_BASE_URL: upstream.url, MODEL_NAME: 'gpt-fake' } });
    oa = new OpenAI({ baseURL: `${v.url}/v1`, apiKey: TEST_KEY, maxRetries: 0 });
  });
  afterAll(async () => {
    await v?.stop();
    v?.cleanup();
    await upstream?.close();
  });

  it("returns the backend's tool calls in OpenAI form, and the backend received exactly the client's tools", async () => {
    upstream.toolCalls = [{ name: 'get_weather', arguments: '{"city":"Oslo"}' }];
    const out = await oa.chat.completions.create({
      model: 'gpt-fake',
      messages: [{ role: 'user', content: 'weather in Oslo?' }],
      tools,
      tool_choice: 'auto',
      parallel_tool_calls: true,
    });
    expect(out.choices[0]!.finish_reason).toBe('tool_calls');
    expect(out.choices[0]!.message.content).toBeNull();
    expect(out.choices[0]!.message.tool_calls).toEqual([
      { id: 'call_fake_0', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Oslo"}' } },
    ]);
    const sent = upstream.calls.at(-1)!.body!;
    expect(sent.tools).toEqual(tools);
    expect(sent.tool_choice).toBe('auto');
    expect(sent.parallel_tool_calls).toBe(true);
  });

  it('streams tool calls as tool_calls deltas, with usage in the last chunk', async () => {
    upstream.toolCalls = [
      { name: 'get_weather', arguments: '{"city":"Bergen"}' },
      { name: 'get_time', arguments: '{}' },
    ];
    const stream = await oa.chat.completions.create({
      model: 'gpt-fake',
      messages: [{ role: 'user', content: 'weather and time?' }],
      tools,
      stream: true,
      stream_options: { include_usage: true },
    });
    const calls: Array<{ id?: string; name: string; arguments: string }> = [];
    let finish: string | null | undefined;
    let usage: OpenAI.CompletionUsage | null | undefined;
    let lastHadUsage = false;
    for await (const chunk of stream) {
      for (const d of chunk.choices[0]?.delta?.tool_calls ?? []) {
        const c = (calls[d.index] ??= { name: '', arguments: '' });
        if (d.id) c.id = d.id;
        c.name += d.function?.name ?? '';
        c.arguments += d.function?.arguments ?? '';
      }
      finish ??= chunk.choices[0]?.finish_reason;
      usage ??= chunk.usage;
      lastHadUsage = Boolean(chunk.usage);
    }
    expect(calls).toEqual([
      { id: 'call_fake_0', name: 'get_weather', arguments: '{"city":"Bergen"}' },
      { id: 'call_fake_1', name: 'get_time', arguments: '{}' },
    ]);
    expect(finish).toBe('tool_calls');
    expect(lastHadUsage).toBe(true);
    expect(usage).toMatchObject({ prompt_tokens: 10, completion_tokens: 5 });
    expect(upstream.calls.at(-1)!.body!.tools).toEqual(tools);
  });

  it('sends tool and developer messages, an assistant tool call with content null and text parts; passes the settings through; stores the conversation whole', async () => {
    upstream.toolCalls = undefined;
    const session = `v1-whole-${Date.now()}`;
    const out = await oa.chat.completions.create(
      {
        model: 'gpt-fake',
        messages: [
          { role: 'developer', content: 'answer in one word' },
          {
            role: 'user',
            content: [
              { type: 'text', text: 'weather ' },
              { type: 'text', text: 'in Oslo?' },
            ],
          },
          {
            role: 'assistant',
            content: null,
            tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Oslo"}' } }],
          },
          { role: 'tool', tool_call_id: 'call_1', content: 'sunny, 21 C' },
          { role: 'user', content: 'so?' },
        ],
        tools,
        response_format: { type: 'json_object' },
        stop: ['\n\n'],
        seed: 7,
        presence_penalty: 0.5,
        frequency_penalty: 0.25,
        user: 'end-user-1',
        store: false,
        metadata: { k: 'v' },
        logprobs: false,
      },
      { headers: { 'X-Session-ID': session } },
    );
    expect(out.choices[0]!.message.content).toBe('Echo: so?');
    const sent = upstream.calls.at(-1)!.body!;
    expect(sent.messages).toEqual([
      { role: 'system', content: 'answer in one word' },
      { role: 'user', content: 'weather in Oslo?' },
      {
        role: 'assistant',
        content: null,
        tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Oslo"}' } }],
      },
      { role: 'tool', content: 'sunny, 21 C', tool_call_id: 'call_1' },
      { role: 'user', content: 'so?' },
    ]);
    expect(sent).toMatchObject({
      response_format: { type: 'json_object' },
      stop: ['\n\n'],
      seed: 7,
      presence_penalty: 0.5,
      frequency_penalty: 0.25,
      user: 'end-user-1',
    });
    expect(sent).not.toHaveProperty('store');
    expect(sent).not.toHaveProperty('metadata');
    const history = await jsonOf(await fetch(`${v.url}/sessions/${session}/history`, { headers: { 'x-api-key': TEST_KEY } }));
    expect(history.items[0].prompt).toBe('so?');
    expect(history.items[0].messages).toHaveLength(5);
    expect(history.items[0].messages[2]).toMatchObject({
      role: 'assistant',
      content: '',
      tool_calls: [{ id: 'call_1', name: 'get_weather' }],
    });
    expect(history.items[0].messages[3]).toMatchObject({ role: 'tool', tool_call_id: 'call_1' });
  });

  it('answers 400 naming a field it cannot honour', async () => {
    for (const [extra, field] of [
      [{ logprobs: true }, 'logprobs'],
      [{ n: 2 }, 'n'],
      [{ tool_choice: { type: 'function', function: { name: 'nope' } }, tools }, 'tool_choice'],
    ] as const) {
      const res = await postJson(v.url, '/v1/chat/completions', { messages: [{ role: 'user', content: 'x' }], ...extra });
      expect(res.status).toBe(400);
      expect((await jsonOf(res)).error.message).toContain(field);
    }
  });

  it("lists the backend's models and answers for one", async () => {
    const list = await oa.models.list();
    expect(list.data.map((m) => m.id)).toEqual(['gpt-fake']);
    expect((await oa.models.retrieve('gpt-fake')).id).toBe('gpt-fake');
    await expect(oa.models.retrieve('no-such-model')).rejects.toBeInstanceOf(OpenAI.NotFoundError);
  });
});

describe('tools through /v1 to Ollama, and fields TGI cannot honour', () => {
  it("ollama: the client's tools reach /api/chat, the model's calls come back in OpenAI form (both modes)", async () => {
    fake.behave({ toolCalls: [{ name: 'get_weather', arguments: { city: 'Oslo' } }] });
    try {
      const tools: OpenAI.ChatCompletionTool[] = [
        { type: 'function', function: { name: 'get_weather', parameters: { type: 'object', properties: { city: { type: 'string' } } } } },
      ];
      const out = await client.chat.completions.create({
        model: 'llama3.2',
        messages: [{ role: 'user', content: 'weather?' }],
        tools,
        seed: 3,
        stop: 'END',
      });
      expect(out.choices[0]!.finish_reason).toBe('tool_calls');
      expect(out.choices[0]!.message.tool_calls?.[0]).toMatchObject({
        type: 'function',
        function: { name: 'get_weather', arguments: '{"city":"Oslo"}' },
      });
      const sent = fake.generations.at(-1)!.body!;
      expect(sent.tools).toEqual(tools);
      expect(sent.options).toMatchObject({ seed: 3, stop: ['END'] });

      const stream = await client.chat.completions.create({
        model: 'llama3.2',
        messages: [{ role: 'user', content: 'weather, streamed?' }],
        tools,
        stream: true,
      });
      const names: string[] = [];
      for await (const chunk of stream)
        for (const d of chunk.choices[0]?.delta?.tool_calls ?? []) if (d.function?.name) names.push(d.function.name);
      expect(names).toEqual(['get_weather']);
      expect(fake.generations.at(-1)!.body!.tools).toEqual(tools);

      const refused = await postJson(vega.url, '/v1/chat/completions', {
        messages: [{ role: 'user', content: 'x' }],
        tools,
        tool_choice: 'required',
      });
      expect(refused.status).toBe(400);
      expect((await jsonOf(refused)).error.message).toContain('tool_choice');
    } finally {
      fake.behave({});
    }
  });

  it('hf: tools are a 400 naming the field', async () => {
    const upstream = await FakeOpenAi.start();
    const v = await startVega({ env: { LLM_BACKEND: 'hf', LLM_BASE_URL: upstream.url } });
    try {
      const res = await postJson(v.url, '/v1/chat/completions', {
        messages: [{ role: 'user', content: 'x' }],
        tools: [{ type: 'function', function: { name: 'f' } }],
      });
      expect(res.status).toBe(400);
      expect((await jsonOf(res)).error.message).toContain('tools');
      expect(upstream.calls.filter((c) => c.path.startsWith('/generate'))).toHaveLength(0);
    } finally {
      await v.stop();
      v.cleanup();
      await upstream.close();
    }
  });
});
