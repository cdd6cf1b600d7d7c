import { describe, expect, it } from 'vitest';
import {
  ClientClosed,
  isUpstreamFault,
  ModelNotFound,
  UpstreamMisconfigured,
  UpstreamRejected,
  UpstreamStreamInterrupted,
  UpstreamUnavailable,
} from '../../src/errors';
import { BackendChain, type LlmBackend } from '../../src/llm/backends';
import { statusError } from '../../src/llm/upstream-errors';
import type { LlmProvider, ProviderRequest } from '../../src/llm/types';
import { CircuitBreaker } from '../../src/resilience/breaker';

/** A provider whose calls are never made: the chain's attempts here are plain functions. */
const provider = (name: 'ollama' | 'openai'): LlmProvider => ({
  name,
  origin: 'http://127.0.0.1:9',
  chat: () => Promise.reject(new Error('not used')),
  chatStream: () => Promise.reject(new Error('not used')),
  listModels: async () => [],
});

function backend(name: string, opts: { model?: string; threshold?: number } = {}): LlmBackend {
  return {
    name,
    role: name.includes('fallback') ? 'fallback' : 'primary',
    provider: provider(name.startsWith('openai') ? 'openai' : 'ollama'),
    model: opts.model,
    breaker: new CircuitBreaker(`llm:${name}`, { failureThreshold: opts.threshold ?? 5, isFailure: isUpstreamFault, openBaseMs: 60_000 }),
  };
}

const request = (signal = new AbortController().signal): ProviderRequest => ({
  model: 'llama3.2',
  prompt: 'hi',
  messages: [{ role: 'user', content: 'hi' }],
  temperature: 0.7,
  topP: 0.9,
  maxTokens: 16,
  signal,
});

/** An attempt that answers from a table of backend name -> error to throw (or nothing: answer). */
function scripted(errors: Record<string, Error | undefined>, seen: string[]) {
  return async (b: LlmBackend, req: ProviderRequest, last: boolean) => {
    seen.push(`${b.name}:${req.model}:${last ? 'last' : 'more'}`);
    const err = errors[b.name];
    if (err) throw err;
    return { value: `from ${b.name}` };
  };
}

describe('BackendChain', () => {
  it("uses the primary while it answers, asking it for the request's model", async () => {
    const chain = new BackendChain([backend('ollama'), backend('openai-fallback1', { model: 'gpt-fake' })]);
    const seen: string[] = [];
    const out = await chain.run(request(), scripted({}, seen));
    expect(out).toMatchObject({ value: 'from ollama', backend: { name: 'ollama' } });
    expect(seen).toEqual(['ollama:llama3.2:more']);
  });

  it('moves to the next backend, with its own model, when the primary fails in a way that counts against it', async () => {
    const chain = new BackendChain([backend('ollama'), backend('openai-fallback1', { model: 'gpt-fake' })]);
    for (const err of [
      new UpstreamUnavailable('refused'),
      statusError(503, '', undefined, 'm'),
      statusError(401, 'key sk-123 is wrong', undefined, 'm'),
    ]) {
      const seen: string[] = [];
      const out = await chain.run(request(), scripted({ ollama: err }, seen));
      expect(out.backend.name).toBe('openai-fallback1');
      expect(seen).toEqual(['ollama:llama3.2:more', 'openai-fallback1:gpt-fake:last']);
    }
    expect(chain.primary.breaker.snapshot().failures).toBe(3);
  });

  it('skips a backend whose breaker is open without calling it', async () => {
    const chain = new BackendChain([backend('ollama', { threshold: 1 }), backend('openai-fallback1')]);
    await chain.run(request(), scripted({ ollama: new UpstreamUnavailable('refused') }, []));
    expect(chain.primary.breaker.state).toBe('open');
    const seen: string[] = [];
    const out = await chain.run(request(), scripted({}, seen));
    expect(out.backend.name).toBe('openai-fallback1');
    expect(seen).toEqual(['openai-fallback1:llama3.2:last']);
    expect(chain.primary.breaker.snapshot().rejected).toBe(1);
  });

  it("never falls back on the request's own fault or a client that left", async () => {
    const chain = new BackendChain([backend('ollama'), backend('openai-fallback1')]);
    for (const err of [
      statusError(400, '{"error":"bad option"}', undefined, 'm'),
      statusError(422, '', undefined, 'm'),
      statusError(413, '', undefined, 'm'),
      new ModelNotFound('x'),
      new ClientClosed(),
    ]) {
      const seen: string[] = [];
      await expect(chain.run(request(), scripted({ ollama: err }, seen))).rejects.toBe(err);
      expect(seen).toEqual(['ollama:llama3.2:more']);
    }
    expect(chain.primary.breaker.snapshot()).toMatchObject({ failures: 0, ignored: 5 });
  });

  it('rejects with the last real failure when every backend failed, and with circuit_open only when every one was skipped', async () => {
    const chain = new BackendChain([backend('ollama', { threshold: 1 }), backend('openai-fallback1', { threshold: 1 })]);
    const last = new UpstreamStreamInterrupted();
    await expect(chain.run(request(), scripted({ ollama: new UpstreamUnavailable('x'), 'openai-fallback1': last }, []))).rejects.toBe(last);
    await expect(chain.run(request(), scripted({}, []))).rejects.toMatchObject({
      code: 'circuit_open',
      message: expect.stringContaining('llm:ollama'),
    });
  });

  it('does not try the next backend once the client has left', async () => {
    const chain = new BackendChain([backend('ollama'), backend('openai-fallback1')]);
    const controller = new AbortController();
    const seen: string[] = [];
    const attempt = async (b: LlmBackend) => {
      seen.push(b.name);
      controller.abort();
      throw new UpstreamUnavailable('refused');
    };
    await expect(chain.run(request(controller.signal), attempt)).rejects.toBeDefined();
    expect(seen).toEqual(['ollama']);
  });

  it("keeps a backend's breaker call open until a handed-back stream finishes, and counts a later break against that backend only", async () => {
    const chain = new BackendChain([backend('ollama', { threshold: 1 }), backend('openai-fallback1')]);
    let fail!: (err: Error) => void;
    const finished = new Promise<void>((_, rej) => {
      fail = rej;
    });
    const out = await chain.run(request(), async () => ({ value: 'stream', finished }));
    expect(out.backend.name).toBe('ollama');
    expect(chain.primary.breaker.state).toBe('closed');
    fail(new UpstreamStreamInterrupted());
    await new Promise((r) => setImmediate(r));
    expect(chain.primary.breaker.state).toBe('open');
    expect(chain.backends[1]!.breaker.snapshot().successes).toBe(0);
  });

  it('refuses an empty list and duplicate names', () => {
    expect(() => new BackendChain([])).toThrow(RangeError);
    expect(() => new BackendChain([backend('ollama'), backend('ollama')])).toThrow(RangeError);
  });
});

describe('backend statuses', () => {
  it('passes 400/404/413/422 back as the same 4xx with the reason; 401/403 are a 502 that never shows the body', () => {
    const e400 = statusError(400, '{"error":"invalid temperature"}', undefined, 'm');
    expect(e400).toBeInstanceOf(UpstreamRejected);
    expect(e400).toMatchObject({ status: 400, code: 'upstream_rejected', message: expect.stringContaining('invalid temperature') });
    expect(statusError(413, '', undefined, 'm').status).toBe(413);
    expect(statusError(422, '', undefined, 'm').status).toBe(422);
    expect(statusError(404, 'no such route', undefined, 'm').status).toBe(404);
    for (const s of [401, 403]) {
      const e = statusError(s, '{"error":"Incorrect API key provided: sk-abc123"}', undefined, 'm');
      expect(e).toBeInstanceOf(UpstreamMisconfigured);
      expect(e.status).toBe(502);
      expect(e.message).not.toContain('sk-abc123');
      expect(isUpstreamFault(e)).toBe(true);
    }
    expect(isUpstreamFault(e400)).toBe(false);
  });
});
