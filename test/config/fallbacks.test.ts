import { describe, expect, it } from 'vitest';
import { parseFallbacks } from '../../src/config/fallbacks';
import { validateConfig } from '../../src/config/validate';
import { runVega } from '../support/vega-process';

const BASE = { API_KEY: 'a-long-enough-api-key-123' };

describe('LLM_FALLBACKS', () => {
  it("parses kind=url[#model] items in order, with each one's key from LLM_FALLBACK_N_API_KEY", () => {
    const r = validateConfig({
      ...BASE,
      LLM_FALLBACKS: ' openai=http://10.0.0.5:8000/v1#llama3.1 , ollama=http://gpu2:11434/ ',
      LLM_FALLBACK_1_API_KEY: 'sk-first-key-0123456789',
    });
    expect(r.errors).toEqual([]);
    expect(r.config?.llm.fallbacks).toEqual([
      { backend: 'openai', baseUrl: 'http://10.0.0.5:8000/v1', model: 'llama3.1', apiKey: 'sk-first-key-0123456789' },
      { backend: 'ollama', baseUrl: 'http://gpu2:11434', model: undefined, apiKey: undefined },
    ]);
  });

  it('has none by default', () => {
    expect(validateConfig(BASE).config?.llm.fallbacks).toEqual([]);
    expect(parseFallbacks('')).toEqual({ fallbacks: [], errors: [] });
  });

  it('names each bad item: an unknown kind, no URL, a non-HTTP URL, a bad model, an empty item', () => {
    const { errors } = parseFallbacks('gpt4all=http://a:1,openai,hf=ftp://x/,ollama=http://b:2#bad model,,ollama=http://ok:3');
    expect(errors).toEqual([
      expect.stringMatching(/^item 1 "gpt4all=http:\/\/a:1": kind must be one of ollama, openai, hf/),
      expect.stringMatching(/^item 2 "openai": expected kind=url/),
      expect.stringMatching(/^item 3 "hf=ftp:\/\/x\/": the URL must be http/),
      expect.stringMatching(/^item 4 .*: the model after #/),
      expect.stringMatching(/^item 5 "": expected kind=url/),
    ]);
  });

  it('refuses a key for a fallback that does not exist, naming the variable', () => {
    const r = validateConfig({ ...BASE, LLM_FALLBACKS: 'ollama=http://b:2', LLM_FALLBACK_2_API_KEY: 'sk-x' });
    expect(r.valid).toBe(false);
    expect(r.errors).toEqual([{ variable: 'LLM_FALLBACK_2_API_KEY', message: 'names no fallback: LLM_FALLBACKS has 1 item(s)' }]);
  });

  it("never shows a fallback's key or URL password in the report", () => {
    const r = validateConfig({
      ...BASE,
      LLM_FALLBACKS: 'openai=https://user:hunter2pass@api.example/v1#m',
      LLM_FALLBACK_1_API_KEY: 'sk-very-secret-fallback',
    });
    expect(r.valid).toBe(true);
    const text = JSON.stringify(r.effective);
    expect(text).not.toContain('sk-very-secret-fallback');
    expect(text).not.toContain('hunter2pass');
    expect(r.effective).toMatchObject({ LLM_FALLBACK_1_API_KEY: '***', LLM_FALLBACKS: 'openai=https://***@api.example/v1#m' });
    const bad = validateConfig({ ...BASE, LLM_FALLBACKS: 'nope=https://user:hunter2pass@api.example/v1' });
    expect(JSON.stringify(bad)).not.toContain('hunter2pass');
  });

  it('makes `vega server` exit 2 naming LLM_FALLBACKS and the bad item', async () => {
    const r = await runVega({ ...BASE, LLM_FALLBACKS: 'ollama=http://ok:1,openai=not-a-url' });
    expect(r.code, r.output).toBe(2);
    expect(r.output).toContain('LLM_FALLBACKS');
    expect(r.output).toContain('item 2 "openai=not-a-url"');
  }, 30_000);
});
