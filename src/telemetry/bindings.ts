import type { ConfigCacheSnapshot } from '../config/cache';
import type { ConversationLogSnapshot } from '../db/conversations';
import type { HttpPoolSnapshot } from '../net/dispatcher';
import { INSTRUMENTS, observe, originAttributes } from './instruments';

/** Anything that hands out a plain-JSON snapshot of its state. */
export interface Snapshotting<T> {
  snapshot(): T;
}

/**
 * Turns mechanisms' snapshots into observable instruments, read at collection time. The admin
 * routes return the same snapshots, so `/metrics` and the JSON can never disagree.
 */
export function bindInstruments(sources: {
  readonly pool: Snapshotting<HttpPoolSnapshot>;
  readonly configCache: Snapshotting<ConfigCacheSnapshot>;
  readonly conversations: Snapshotting<ConversationLogSnapshot>;
  readonly inflight: { readonly inflight: number };
}): void {
  observe(INSTRUMENTS.httpClientDispatchers, (record) => record(sources.pool.snapshot().dispatchers_created));
  observe(INSTRUMENTS.httpClientRequests, (record) => {
    for (const o of sources.pool.snapshot().origins) record(o.requests, originAttributes(o.origin));
  });
  observe(INSTRUMENTS.httpClientErrors, (record) => {
    for (const o of sources.pool.snapshot().origins) {
      for (const [type, n] of Object.entries(o.errors)) record(n, { ...originAttributes(o.origin), 'error.type': type });
    }
  });
  observe(INSTRUMENTS.httpClientConnections, (record) => {
    for (const o of sources.pool.snapshot().origins) {
      record(o.connections_open, { ...originAttributes(o.origin), state: 'open' });
      record(o.connections_idle, { ...originAttributes(o.origin), state: 'idle' });
    }
  });
  observe(INSTRUMENTS.httpClientConnectionsCreated, (record) => {
    for (const o of sources.pool.snapshot().origins) record(o.connections_created, originAttributes(o.origin));
  });
  observe(INSTRUMENTS.httpClientQueued, (record) => {
    for (const o of sources.pool.snapshot().origins) record(o.requests_queued, originAttributes(o.origin));
  });
  observe(INSTRUMENTS.configCacheLookups, (record) => {
    const s = sources.configCache.snapshot();
    record(s.hits, { 'vega.cache.result': 'hit' });
    record(s.misses, { 'vega.cache.result': 'miss' });
  });
  observe(INSTRUMENTS.configCacheReloadFailures, (record) => record(sources.configCache.snapshot().reload_failures));
  observe(INSTRUMENTS.configCacheAge, (record) => record(sources.configCache.snapshot().age_s));
  observe(INSTRUMENTS.conversationsLogged, (record) => {
    const s = sources.conversations.snapshot();
    record(s.logged_ok, { 'vega.conversation.status': 'ok' });
    record(s.logged_failed, { 'vega.conversation.status': 'failed' });
  });
  observe(INSTRUMENTS.conversationLogFailures, (record) => record(sources.conversations.snapshot().log_failures));
  observe(INSTRUMENTS.inflightRequests, (record) => record(sources.inflight.inflight));
}
