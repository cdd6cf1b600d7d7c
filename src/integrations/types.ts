/** What one health check found. */
export type IntegrationStatus = 'healthy' | 'degraded' | 'unhealthy' | 'disabled';

export interface IntegrationHealth {
  readonly name: string;
  readonly status: IntegrationStatus;
  readonly latency_ms: number | null;
  readonly error: string | null;
  readonly detail?: Record<string, unknown>;
  readonly breaker?: string;
}

/** An integration: disabled unless configured, with a health check that never blocks the loop. */
export interface Integration {
  readonly name: string;
  readonly enabled: boolean;
  /** Resolves with details when healthy; throws when not. `degraded` is reported by resolving with {degraded: reason}. */
  check(signal: AbortSignal): Promise<Record<string, unknown> & { degraded?: string }>;
  /** The integration's breaker state, if it has one. */
  breakerState?(): string;
}
