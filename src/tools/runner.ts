import { performance } from 'node:perf_hooks';
import { SpanKind, SpanStatusCode } from '@opentelemetry/api';
import { z } from 'zod';
import { VegaError } from '../errors';
import { createCounter, createHistogram, INSTRUMENTS } from '../telemetry/instruments';
import type { Logger } from '../telemetry/logger';
import { withChildSpan } from '../telemetry/spans';
import type { Tool } from './catalogue';

/** A call the model asked for (the chat layer's ToolCall, structurally). */
export interface RequestedCall {
  readonly id: string;
  readonly name: string;
  readonly arguments: string;
}

/** How a call ended. Every outcome but `ok` is an error result the model reads. */
export type ToolOutcome = 'ok' | 'invalid_arguments' | 'unknown_tool' | 'disabled' | 'failed';

/** One call's result: what goes back to the model, and what is stored and shown. */
export interface ToolResult {
  readonly id: string;
  readonly name: string;
  /** The arguments as the model wrote them, cut to MAX_STORED_ARGUMENT_CHARS. */
  readonly arguments: string;
  readonly outcome: ToolOutcome;
  /** The `tool` message's content: the result as JSON, or `{"error": ...}`, cut to the result bound. */
  readonly content: string;
  readonly durationMs: number;
}

/** A tool in OpenAI's form, as sent to the backend. */
export interface OfferedTool {
  readonly type: 'function';
  readonly function: { readonly name: string; readonly description: string; readonly parameters: Record<string, unknown> };
}

export interface ToolRunnerOptions {
  readonly tools: readonly Tool[];
  /** `auto`, `none`, or the names to offer. */
  readonly selection: () => 'auto' | 'none' | readonly string[];
  readonly resultMaxChars: () => number;
  readonly logger: Logger;
}

const MAX_STORED_ARGUMENT_CHARS = 1000;

/**
 * Runs the tools a model asks for: validates the arguments (zod), calls the integration (under
 * its own breaker and timeout), and turns every failure into an error result the model reads. It
 * never throws for a call: bad arguments, an unknown tool, a disabled or failing integration all
 * become results. Each call is an `execute_tool <name>` span and is counted by tool and outcome.
 */
export class ToolRunner {
  readonly #byName: Map<string, Tool>;
  readonly #opts: ToolRunnerOptions;
  readonly #calls = createCounter(INSTRUMENTS.toolCalls);
  readonly #duration = createHistogram(INSTRUMENTS.toolDuration);
  readonly #schemas = new Map<string, Record<string, unknown>>();

  constructor(opts: ToolRunnerOptions) {
    this.#opts = opts;
    this.#byName = new Map(opts.tools.map((t) => [t.name, t]));
    for (const t of opts.tools) {
      const schema = z.toJSONSchema(t.args, { io: 'input' }) as Record<string, unknown>;
      delete schema.$schema;
      this.#schemas.set(t.name, schema);
    }
  }

  /**
   * The tools to offer now: with `auto` every configured read-only tool, with a list exactly the
   * named ones that are configured, with `none` nothing.
   */
  offered(): OfferedTool[] {
    const sel = this.#opts.selection();
    if (sel === 'none') return [];
    const picked =
      sel === 'auto'
        ? this.#opts.tools.filter((t) => !t.acts && t.integration.enabled)
        : this.#opts.tools.filter((t) => sel.includes(t.name) && t.integration.enabled);
    return picked.map((t) => ({
      type: 'function',
      function: { name: t.name, description: t.description, parameters: this.#schemas.get(t.name) ?? {} },
    }));
  }

  /** Runs one round's calls in parallel; results come back in the calls' order. */
  runAll(
    calls: readonly RequestedCall[],
    offered: ReadonlyArray<{ readonly function: { readonly name: string } }>,
    signal: AbortSignal,
  ): Promise<ToolResult[]> {
    const names = new Set(offered.map((t) => t.function.name));
    return Promise.all(calls.map((c) => this.run(c, names, signal)));
  }

  /** Runs one call. Never rejects. */
  run(call: RequestedCall, offered: ReadonlySet<string>, signal: AbortSignal): Promise<ToolResult> {
    const tool = offered.has(call.name) ? this.#byName.get(call.name) : undefined;
    const label = this.#byName.get(call.name)?.name ?? 'unknown';
    return withChildSpan(
      `execute_tool ${label}`,
      {
        kind: SpanKind.INTERNAL,
        attributes: () => ({
          'gen_ai.operation.name': 'execute_tool',
          'gen_ai.tool.name': call.name.slice(0, 64),
          'gen_ai.tool.call.id': call.id.slice(0, 200),
          'gen_ai.tool.type': 'function',
        }),
      },
      async (span) => {
        const started = performance.now();
        const { outcome, value } = await this.#execute(tool, call, offered, signal);
        const durationMs = performance.now() - started;
        const attrs = { 'gen_ai.tool.name': label, 'vega.tool.outcome': outcome };
        this.#calls.add(1, attrs);
        this.#duration.record(durationMs / 1000, attrs);
        span.setAttribute('vega.tool.outcome', outcome);
        if (outcome !== 'ok') {
          span.setAttribute('error.type', outcome);
          span.setStatus({ code: SpanStatusCode.ERROR });
        }
        span.end();
        return {
          id: call.id,
          name: call.name.slice(0, 64),
          arguments: cut(call.arguments, MAX_STORED_ARGUMENT_CHARS),
          outcome,
          content: cut(JSON.stringify(outcome === 'ok' ? (value ?? null) : { error: value }), this.#opts.resultMaxChars()),
          durationMs,
        };
      },
    );
  }

  async #execute(
    tool: Tool | undefined,
    call: RequestedCall,
    offered: ReadonlySet<string>,
    signal: AbortSignal,
  ): Promise<{ outcome: ToolOutcome; value: unknown }> {
    if (!tool && this.#byName.has(call.name)) {
      return { outcome: 'disabled', value: `${call.name}: not available on this server (not configured, or not enabled by TOOLS)` };
    }
    if (!tool) {
      return {
        outcome: 'unknown_tool',
        value: `unknown tool '${call.name.slice(0, 64)}'; the tools are: ${[...offered].join(', ') || 'none'}`,
      };
    }
    let raw: unknown;
    try {
      raw = call.arguments.trim() === '' ? {} : JSON.parse(call.arguments);
    } catch {
      return { outcome: 'invalid_arguments', value: `${tool.name}: the arguments are not JSON` };
    }
    const parsed = tool.args.safeParse(raw);
    if (!parsed.success) {
      const why = parsed.error.issues
        .slice(0, 3)
        .map((i) => `${i.path.join('.') || 'arguments'}: ${i.message}`)
        .join('; ');
      return { outcome: 'invalid_arguments', value: `${tool.name}: invalid arguments (${why})` };
    }
    if (!tool.integration.enabled) {
      return { outcome: 'disabled', value: `${tool.name}: the ${tool.integration.name} integration is not configured` };
    }
    try {
      return { outcome: 'ok', value: await tool.run(parsed.data, signal) };
    } catch (err) {
      const code = err instanceof VegaError ? err.code : 'error';
      this.#opts.logger.warn({ tool: tool.name, error_code: code }, 'tool call failed');
      const message = err instanceof VegaError && err.expose ? err.message : `${tool.name}: the call failed`;
      return { outcome: 'failed', value: message };
    }
  }
}

function cut(s: string, max: number): string {
  return s.length > max ? `${s.slice(0, max)}...[cut]` : s;
}
