import type { LookupFunction } from 'node:net';
import { Agent, buildConnector, type Dispatcher } from 'undici';
import { errorType } from '../errors';

/** Options of {@link createHttpPool}. */
export interface HttpPoolOptions {
  /** Most connections per origin. Default 32. */
  readonly connectionsPerOrigin?: number;
  /** How long an idle keep-alive socket is kept. Default 30 000 ms. */
  readonly keepAliveTimeoutMs?: number;
  /** TCP connect timeout. Default 10 000 ms. */
  readonly connectTimeoutMs?: number;
}

/** Per-origin state, read from undici's PoolStats plus our own counters. */
export interface OriginStats {
  readonly origin: string;
  readonly requests: number;
  readonly errors: Readonly<Record<string, number>>;
  readonly connections_created: number;
  readonly connections_open: number;
  readonly connections_idle: number;
  readonly requests_running: number;
  readonly requests_queued: number;
  /** Share of requests that went out on an already-open connection. */
  readonly reuse_rate: number;
}

/** Plain-JSON state of the pool, as `GET /admin/performance/connection-pool` returns it. */
export interface HttpPoolSnapshot {
  /** How many dispatchers this process made. The design says one; more is a defect. */
  readonly dispatchers_created: number;
  readonly requests: number;
  readonly errors: number;
  readonly connections_open: number;
  readonly origins: readonly OriginStats[];
  /** Idle sockets are closed after this long (undici's keep-alive cleanup). */
  readonly options: { connections_per_origin: number; keep_alive_timeout_ms: number; connect_timeout_ms: number };
}

interface Counters {
  requests: number;
  connectionsCreated: number;
  errors: Map<string, number>;
}

let dispatchersCreated = 0;

/** What undici reports per origin: a Pool's stats or a single Client's. */
interface LiveStats {
  connected: number | boolean;
  free?: number;
  running: number;
  queued?: number;
  pending: number;
}

function normalise(s: LiveStats): { connected: number; free: number; running: number; queued: number } {
  if (typeof s.connected === 'boolean') {
    const connected = s.connected ? 1 : 0;
    return { connected, free: connected && s.running === 0 ? 1 : 0, running: s.running, queued: s.pending };
  }
  return { connected: s.connected, free: s.free ?? 0, running: s.running, queued: s.queued ?? s.pending };
}

/**
 * The one pooled HTTP client for all outbound traffic (LLM backends, integrations). An undici Agent
 * keeps a keep-alive pool per origin; an interceptor counts requests and errors by origin, and a
 * wrapped connector counts new connections, so the reuse rate is measured rather than guessed.
 */
export class HttpPool {
  /** The dispatcher to pass to undici calls. */
  readonly dispatcher: Dispatcher;
  readonly #agent: Agent;
  /** Agents made by {@link withLookup}, closed with the pool. */
  readonly #extra: Agent[] = [];
  readonly #byOrigin = new Map<string, Counters>();
  readonly #options: HttpPoolSnapshot['options'];

  constructor(opts: HttpPoolOptions = {}) {
    const connections = opts.connectionsPerOrigin ?? 32;
    if (!Number.isInteger(connections) || connections < 1) {
      throw new RangeError(`HttpPool: connectionsPerOrigin must be a positive integer, got ${connections}`);
    }
    this.#options = {
      connections_per_origin: connections,
      keep_alive_timeout_ms: opts.keepAliveTimeoutMs ?? 30_000,
      connect_timeout_ms: opts.connectTimeoutMs ?? 10_000,
    };
    this.#agent = this.#buildAgent();
    this.dispatcher = this.#counted(this.#agent);
    dispatchersCreated++;
  }

  /**
   * A dispatcher of this pool whose connections resolve hostnames with `lookup` (web fetch's SSRF
   * guard: the address is vetted by the very lookup the socket connects with, for http and https
   * alike, so a DNS answer cannot change between the check and the connect). It shares the pool's
   * counters and is closed with the pool; it is part of the one pool, not a second client.
   */
  withLookup(lookup: LookupFunction): Dispatcher {
    const agent = this.#buildAgent(lookup);
    this.#extra.push(agent);
    return this.#counted(agent);
  }

  #buildAgent(lookup?: LookupFunction): Agent {
    const connect = buildConnector({
      timeout: this.#options.connect_timeout_ms,
      ...(lookup ? { lookup } : {}),
    } as buildConnector.BuildOptions);
    return new Agent({
      connections: this.#options.connections_per_origin,
      keepAliveTimeout: this.#options.keep_alive_timeout_ms,
      connect: (options, callback) => {
        const origin = `${options.protocol}//${options.hostname}${options.port ? `:${options.port}` : ''}`;
        return connect(options, (err, socket) => {
          if (!err) this.#counters(origin).connectionsCreated++;
          callback(err, socket as never);
        });
      },
    });
  }

  #counted(agent: Agent): Dispatcher {
    return agent.compose((dispatch) => (options, handler) => {
      const counters = this.#counters(String(options.origin ?? ''));
      counters.requests++;
      return dispatch(options, {
        onRequestStart: (controller, context) => handler.onRequestStart?.(controller, context),
        onRequestUpgrade: (controller, status, headers, socket) => handler.onRequestUpgrade?.(controller, status, headers, socket),
        onResponseStart: (controller, status, headers, message) => handler.onResponseStart?.(controller, status, headers, message),
        onResponseData: (controller, chunk) => handler.onResponseData?.(controller, chunk),
        onResponseEnd: (controller, trailers) => handler.onResponseEnd?.(controller, trailers),
        onResponseError: (controller, err) => {
          const type = errorType(err);
          counters.errors.set(type, (counters.errors.get(type) ?? 0) + 1);
          handler.onResponseError?.(controller, err);
        },
      });
    });
  }

  #counters(origin: string): Counters {
    let c = this.#byOrigin.get(origin);
    if (!c) {
      c = { requests: 0, connectionsCreated: 0, errors: new Map() };
      this.#byOrigin.set(origin, c);
    }
    return c;
  }

  snapshot(): HttpPoolSnapshot {
    // Per origin undici keeps a Pool, or a single Client when connections is 1: a PoolStats
    // counts connections, a ClientStats says `connected: true` and has no `free`.
    const live = Object.fromEntries(
      Object.entries(Object.assign({}, ...this.#extra.map((x) => x.stats), this.#agent.stats) as Record<string, LiveStats>).map(
        ([origin, st]) => [origin, normalise(st)],
      ),
    );
    const origins: OriginStats[] = [];
    let requests = 0;
    let errors = 0;
    let open = 0;
    for (const [origin, c] of this.#byOrigin) {
      const s = live[origin];
      const originErrors = Object.fromEntries(c.errors);
      const errorCount = [...c.errors.values()].reduce((a, b) => a + b, 0);
      requests += c.requests;
      errors += errorCount;
      open += s?.connected ?? 0;
      origins.push({
        origin,
        requests: c.requests,
        errors: originErrors,
        connections_created: c.connectionsCreated,
        connections_open: s?.connected ?? 0,
        connections_idle: s?.free ?? 0,
        requests_running: s?.running ?? 0,
        requests_queued: s?.queued ?? 0,
        reuse_rate: c.requests === 0 ? 0 : Math.max(0, (c.requests - c.connectionsCreated) / c.requests),
      });
    }
    return { dispatchers_created: dispatchersCreated, requests, errors, connections_open: open, origins, options: this.#options };
  }

  /** Waits for in-flight requests, then closes every socket. */
  async close(): Promise<void> {
    await Promise.all([this.#agent.close(), ...this.#extra.map((a) => a.close())]);
  }
}
