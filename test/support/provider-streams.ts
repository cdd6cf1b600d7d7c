import type { LlmProvider, ProviderRequest, StreamEvent } from '../../src/llm/types';
import type { ScriptedServer } from './scripted-server';

/** A resolved request for a provider test. */
export const providerRequest = (signal = new AbortController().signal): ProviderRequest => ({
  model: 'm',
  prompt: 'hi',
  messages: [{ role: 'user', content: 'hi' }],
  temperature: 0.5,
  topP: 0.9,
  maxTokens: 8,
  signal,
});

/** Has `server` answer with `chunks` as `type` (cut at the end when `cut`), and collects the provider's events. */
export async function streamedFrom(
  server: ScriptedServer,
  provider: LlmProvider,
  chunks: string[],
  type: string,
  cut = false,
): Promise<StreamEvent[]> {
  server.script = { headers: { 'content-type': type }, chunks, cut };
  const out: StreamEvent[] = [];
  for await (const ev of await provider.chatStream(providerRequest())) out.push(ev);
  return out;
}

/** NDJSON lines of `objs`. */
export const ndjson = (...objs: object[]) => objs.map((o) => `${JSON.stringify(o)}\n`);
/** SSE events whose data is each of `data` (objects as JSON). */
export const sse = (...data: Array<object | string>) => data.map((d) => `data: ${typeof d === 'string' ? d : JSON.stringify(d)}\n\n`);
