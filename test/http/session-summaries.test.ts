import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FakeOllama } from '../support/fake-ollama';
import { eventually, jsonOf, postJson, startVega, type VegaProcess } from '../support/vega-process';

let fake: FakeOllama;
let vega: VegaProcess;

const SUMMARY_INSTRUCTION = /^You keep a running summary/;
const summaryCalls = () => fake.sentMessages.filter((m) => SUMMARY_INSTRUCTION.test(m[0]?.content ?? ''));
const chatCalls = () => fake.sentMessages.filter((m) => !SUMMARY_INSTRUCTION.test(m[0]?.content ?? ''));
const metricsText = async () => (await fetch(`${vega.url}/metrics`)).text();
const isSummary = (body: Record<string, unknown> | undefined) =>
  SUMMARY_INSTRUCTION.test(String((body?.messages as Array<{ content: string }> | undefined)?.[0]?.content ?? ''));
const chat = async (prompt: string, sessionId: string) => {
  const res = await postJson(vega.url, '/chat', { prompt, session_id: sessionId });
  expect(res.status).toBe(200);
  return jsonOf(res);
};

beforeAll(async () => {
  fake = await FakeOllama.start();
  vega = await startVega({
    env: {
      LLM_BASE_URL: fake.url,
      MODEL_NAME: 'llama3.2',
      LLM_TIMEOUT_S: '2',
      CONTEXT_SUMMARY: 'true',
      CONTEXT_MAX_TURNS: '2',
      CONTEXT_SUMMARY_MAX_CHARS: '120',
      RETRY_MAX_RETRIES: '0',
    },
  });
});

afterAll(async () => {
  await vega?.stop();
  vega?.cleanup();
  await fake?.close();
});

describe('background summaries (CONTEXT_SUMMARY=true)', () => {
  it('fold the turns leaving the window into a stored summary, sent ahead of the window on the next turn', async () => {
    await chat('My name is Zed', 'sum-1');
    await chat('I live in Oslo', 'sum-1');
    expect(summaryCalls()).toHaveLength(0); // two turns fit the window: nothing to fold
    await chat('I like tea', 'sum-1');
    // The first turn left the window: one background call folds it.
    const call = await eventually(() => summaryCalls()[0], 5000, 'a summary call');
    expect(call[1]!.content).toContain('User: My name is Zed\nAssistant: Echo: My name is Zed');
    expect(call[1]!.content).not.toContain('I like tea');
    // The fake echoes the last message, so the summary is "Echo: Turns to add: ...", cut to 120 characters.
    await eventually(async () => /vega_summary_outcome="ok"[^\n]* [1-9]/.test(await metricsText()), 5000, 'the summary stored');
    await chat('What do you know?', 'sum-1');
    const sent = chatCalls().at(-1)!;
    expect(sent[0]!.role).toBe('system');
    expect(sent[0]!.content).toMatch(/^Summary of the earlier conversation:\nEcho: Turns to add:/);
    expect(sent[0]!.content.length).toBeLessThanOrEqual('Summary of the earlier conversation:\n'.length + 120);
    expect(sent.slice(1).map((m) => m.content)).toEqual([
      'I live in Oslo',
      'Echo: I live in Oslo',
      'I like tea',
      'Echo: I like tea',
      'What do you know?',
    ]);
  });

  it('is harmless when the summary call fails: logged at warn, the chat goes on', async () => {
    await chat('a1', 'sum-2');
    await chat('a2', 'sum-2');
    const before = summaryCalls().length;
    const warnsBefore = vega.logs.filter((l) => l.msg === 'session summary failed').length;
    fake.behave({ failStatus: 500, failIf: isSummary }); // summary calls fail, chats do not
    await chat('a3', 'sum-2');
    await eventually(() => summaryCalls().length > before, 5000, 'a summary call');
    const warn = await eventually(() => vega.logs.filter((l) => l.msg === 'session summary failed')[warnsBefore], 5000, 'the warning');
    expect(warn.level).toBe('warn');
    expect(JSON.stringify(warn)).not.toContain('sum-2');
    fake.behave({});
    const next = await chat('a4', 'sum-2');
    expect(next.response).toBe('Echo: a4');
    expect(await metricsText()).toMatch(/vega_context_summary_calls_total\{[^}]*vega_summary_outcome="failed"[^}]*\} [1-9]/);
  });
});
