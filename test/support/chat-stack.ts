import pino from 'pino';
import { ConversationLog } from '../../src/db/batch-writer';
import { ConversationRepository } from '../../src/db/conversations';
import type { Database } from '../../src/db/knex';
import { isUpstreamFault } from '../../src/errors';
import { ChatService } from '../../src/llm/chat-service';
import { OllamaProvider } from '../../src/llm/ollama';
import { BackendChain } from '../../src/llm/backends';
import { ChatPipeline, type PipelineStages, type ServedCompletion } from '../../src/llm/pipeline';
import { HttpPool } from '../../src/net/dispatcher';
import { StreamingMonitor } from '../../src/resilience/backpressure';
import { BreakerRegistry } from '../../src/resilience/breaker';
import { Coalescer } from '../../src/resilience/coalescer';
import { RateLimiter } from '../../src/resilience/rate-limit';
import type { StreamSlots } from '../../src/resilience/stream-slots';
import { ResponseCache } from '../../src/resilience/response-cache';
import { RetryStage } from '../../src/resilience/retry';
import { TimeoutStage } from '../../src/resilience/timeout';
import type { CircuitBreaker } from '../../src/resilience/breaker';
import { freshDatabase } from './db';

export interface ChatStack {
  readonly db: Database;
  readonly pool: HttpPool;
  readonly stages: PipelineStages;
  /** The one backend's circuit breaker (`llm:ollama`). */
  readonly breaker: CircuitBreaker;
  readonly pipeline: ChatPipeline;
  readonly repo: ConversationRepository;
  readonly conversationLog: ConversationLog;
  readonly chat: ChatService;
  close(): Promise<void>;
}

/**
 * The chat use case wired in-process as src/wiring.ts wires it (real stages, a real Ollama
 * provider over a real pool, a real conversation log on in-memory SQLite), against `baseUrl`.
 */
export async function chatStack(
  baseUrl: string,
  opts: { timeoutMs?: number; maxRetries?: number; cacheEntries?: number; streamSlots?: StreamSlots } = {},
): Promise<ChatStack> {
  const db = await freshDatabase();
  const pool = new HttpPool({ connectionsPerOrigin: 4 });
  const timeoutMs = opts.timeoutMs ?? 5000;
  const provider = new OllamaProvider({ baseUrl, pool, timeoutMs });
  const stages: PipelineStages = {
    cache: new ResponseCache<ServedCompletion>({ maxEntries: opts.cacheEntries ?? 100 }),
    coalescer: new Coalescer<ServedCompletion>(true),
    rateLimiter: new RateLimiter({ perKeyRps: 0, globalRps: 0 }),
    retry: new RetryStage({ maxRetries: opts.maxRetries ?? 0, baseDelayMs: 1 }),
    timeout: new TimeoutStage(timeoutMs),
    streaming: new StreamingMonitor(),
    ...(opts.streamSlots ? { streamSlots: opts.streamSlots } : {}),
  };
  const breaker = new BreakerRegistry({ isFailure: isUpstreamFault }).get('llm:ollama');
  const backends = new BackendChain([{ name: provider.name, role: 'primary', provider, model: undefined, breaker }]);
  const pipeline = new ChatPipeline(backends, stages);
  const repo = new ConversationRepository(db.knex);
  const conversationLog = new ConversationLog(repo);
  const chat = new ChatService({
    provider,
    pipeline,
    conversations: conversationLog,
    logger: pino({ level: 'silent' }),
    defaults: { model: 'llama3.2', temperature: 0.7, topP: 1, maxTokens: 256 },
  });
  return {
    db,
    pool,
    stages,
    breaker,
    pipeline,
    repo,
    conversationLog,
    chat,
    async close() {
      await pool.close();
      await db.knex.destroy();
    },
  };
}
