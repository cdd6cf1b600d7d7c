#!/usr/bin/env node
'use strict';
// Writes the Grafana dashboards (dashboards/*.json) from the panel lists below: one place for
// every query, which the stack test also runs against a real Prometheus scraping Vega.
// `--check` exits 1 when the committed files differ from what this script writes.
const { readFileSync, writeFileSync } = require('node:fs');
const { join } = require('node:path');

const PROM = { type: 'prometheus', uid: 'vega-prometheus' };
const R = '$__rate_interval';
const q = (expr, legend = '') => ({ expr, legend });

/** Dashboards: uid, title, panels [title, unit, queries, kind]. */
const DASHBOARDS = [
  {
    uid: 'vega-overview',
    title: 'Vega / Overview (RED)',
    panels: [
      [
        'Requests per second by route',
        'reqps',
        [q(`sum by (http_route) (rate(http_server_request_duration_count[${R}]))`, '{{http_route}}')],
      ],
      [
        '5xx per second by route',
        'reqps',
        [q(`sum by (http_route) (rate(http_server_request_duration_count{http_response_status_code=~"5.."}[${R}]))`, '{{http_route}}')],
      ],
      [
        'p95 duration by route',
        's',
        [q(`histogram_quantile(0.95, sum by (le, http_route) (rate(http_server_request_duration_bucket[${R}])))`, '{{http_route}}')],
      ],
      [
        'Requests per second by instance',
        'reqps',
        [q(`sum by (instance) (rate(http_server_request_duration_count{instance=~"$instance"}[${R}]))`, '{{instance}}')],
      ],
      [
        '5xx per second by instance',
        'reqps',
        [
          q(
            `sum by (instance) (rate(http_server_request_duration_count{instance=~"$instance", http_response_status_code=~"5.."}[${R}]))`,
            '{{instance}}',
          ),
        ],
      ],
      [
        'Redis reachable by instance (1 = shared limits and cache)',
        'short',
        [q('max by (instance) (vega_redis_up{instance=~"$instance"})', '{{instance}}')],
      ],
      [
        'Redis command p95 by instance',
        's',
        [
          q(
            `histogram_quantile(0.95, sum by (le, instance) (rate(db_client_operation_duration_bucket{db_system_name="redis", instance=~"$instance"}[${R}])))`,
            '{{instance}}',
          ),
        ],
      ],
      [
        'Errors by code',
        'reqps',
        [
          q(
            `sum by (vega_error_code, http_response_status_code) (rate(vega_http_server_errors_total[${R}]))`,
            '{{http_response_status_code}} {{vega_error_code}}',
          ),
        ],
      ],
      ['Requests in flight', 'short', [q('sum by (instance) (vega_http_server_inflight)', '{{instance}}')]],
      ['Chat outcomes', 'reqps', [q(`sum by (vega_chat_outcome) (rate(vega_chat_requests_total[${R}]))`, '{{vega_chat_outcome}}')]],
      [
        'Chat success rate',
        'percentunit',
        [
          q(
            `sum(rate(http_server_request_duration_count{http_route=~"/chat|/v1/chat/completions", http_response_status_code!~"5.."}[${R}])) / sum(rate(http_server_request_duration_count{http_route=~"/chat|/v1/chat/completions"}[${R}]))`,
            'success',
          ),
        ],
        'stat',
      ],
    ],
  },
  {
    uid: 'vega-llm',
    title: 'Vega / LLM',
    panels: [
      [
        'LLM call duration p50 / p95 by backend',
        's',
        [
          q(
            `histogram_quantile(0.5, sum by (le, gen_ai_provider_name) (rate(gen_ai_client_operation_duration_bucket[${R}])))`,
            'p50 {{gen_ai_provider_name}}',
          ),
          q(
            `histogram_quantile(0.95, sum by (le, gen_ai_provider_name) (rate(gen_ai_client_operation_duration_bucket[${R}])))`,
            'p95 {{gen_ai_provider_name}}',
          ),
        ],
      ],
      [
        'Time to first chunk p95',
        's',
        [
          q(
            `histogram_quantile(0.95, sum by (le, gen_ai_provider_name) (rate(gen_ai_client_operation_time_to_first_chunk_bucket[${R}])))`,
            '{{gen_ai_provider_name}}',
          ),
        ],
      ],
      [
        'Tokens per second',
        'short',
        [q(`sum by (gen_ai_token_type) (rate(gen_ai_client_token_usage_sum[${R}]))`, '{{gen_ai_token_type}}')],
      ],
      [
        'LLM call errors by type',
        'reqps',
        [q(`sum by (error_type) (rate(gen_ai_client_operation_duration_count{error_type!=""}[${R}]))`, '{{error_type}}')],
      ],
      [
        'Response cache hit rate',
        'percentunit',
        [
          q(
            `sum(rate(vega_response_cache_lookups_total{vega_cache_result="hit"}[${R}])) / sum(rate(vega_response_cache_lookups_total[${R}]))`,
            'hit rate',
          ),
        ],
      ],
      ['Coalescing', 'reqps', [q(`sum by (role) (rate(vega_coalescing_requests_total[${R}]))`, '{{role}}')]],
      [
        'Circuit breakers (state)',
        'short',
        [q('max by (vega_breaker_name, state) (vega_circuit_breaker_state) == 1', '{{vega_breaker_name}}: {{state}}')],
        'table',
      ],
      [
        'LLM attempts by backend and outcome',
        'reqps',
        [q(`sum by (vega_llm_backend, outcome) (rate(vega_llm_attempts_total[${R}]))`, '{{vega_llm_backend}} {{outcome}}')],
      ],
      [
        'LLM fallbacks by backend left and reason',
        'reqps',
        [
          q(
            `sum by (vega_llm_backend, reason, vega_llm_fallback_to) (rate(vega_llm_fallbacks_total[${R}]))`,
            '{{vega_llm_backend}} -> {{vega_llm_fallback_to}} ({{reason}})',
          ),
        ],
      ],
      [
        'Breaker calls by outcome',
        'reqps',
        [q(`sum by (vega_breaker_name, outcome) (rate(vega_circuit_breaker_calls_total[${R}]))`, '{{vega_breaker_name}} {{outcome}}')],
      ],
      ['Retries', 'short', [q(`sum by (event) (increase(vega_retry_events_total[${R}]))`, '{{event}}')]],
      ['Rate-limit decisions', 'reqps', [q(`sum by (decision) (rate(vega_rate_limit_decisions_total[${R}]))`, '{{decision}}')]],
      ['Upstream timeouts', 'short', [q(`sum(increase(vega_upstream_timeouts_total[${R}]))`, 'timeouts')]],
      ['Streams by buffer state', 'short', [q('sum by (state) (vega_stream_active)', '{{state}}')]],
      ['Stream chunks', 'short', [q(`sum by (direction) (rate(vega_stream_chunks_total[${R}]))`, '{{direction}}')]],
      [
        'Context sent per chat (session turns and characters)',
        'short',
        [
          q(`histogram_quantile(0.5, sum by (le) (rate(vega_context_chars_bucket[${R}])))`, 'chars p50'),
          q(`histogram_quantile(0.95, sum by (le) (rate(vega_context_chars_bucket[${R}])))`, 'chars p95'),
          q(`histogram_quantile(0.95, sum by (le) (rate(vega_context_turns_bucket[${R}])))`, 'turns p95'),
        ],
      ],
    ],
  },
  {
    uid: 'vega-database',
    title: 'Vega / Database',
    panels: [
      [
        'Query duration p95 by table and operation',
        's',
        [
          q(
            `histogram_quantile(0.95, sum by (le, db_collection_name, db_operation_name) (rate(db_client_operation_duration_bucket[${R}])))`,
            '{{db_operation_name}} {{db_collection_name}}',
          ),
        ],
      ],
      [
        'Queries per second',
        'ops',
        [
          q(
            `sum by (db_collection_name, db_operation_name) (rate(db_client_operation_duration_count[${R}]))`,
            '{{db_operation_name}} {{db_collection_name}}',
          ),
        ],
      ],
      [
        'Slow and failed queries',
        'short',
        [q(`sum(increase(vega_db_slow_queries_total[${R}]))`, 'slow'), q(`sum(increase(vega_db_failed_queries_total[${R}]))`, 'failed')],
      ],
      [
        'Pool connections',
        'short',
        [
          q('sum by (db_client_connection_state) (db_client_connections_usage)', '{{db_client_connection_state}}'),
          q('sum(db_client_connection_max)', 'max'),
          q('sum(db_client_connection_pending_requests)', 'pending'),
        ],
      ],
      [
        'Rows per transaction (batch writer)',
        'short',
        [
          q(
            `sum(rate(vega_db_batch_size_sum{outcome="ok"}[${R}])) / sum(rate(vega_db_batch_size_count{outcome="ok"}[${R}]))`,
            'rows per commit',
          ),
        ],
      ],
      ['Commit duration p95', 's', [q(`histogram_quantile(0.95, sum by (le) (rate(vega_db_batch_duration_bucket[${R}])))`, 'p95')]],
      ['Batch writer queue', 'short', [q('sum(vega_db_batch_queue_size)', 'queued'), q('sum(vega_db_batch_queue_max)', 'max')]],
      [
        'WAL checkpoint duration p95 (SQLite, background)',
        's',
        [q(`histogram_quantile(0.95, sum by (le) (rate(vega_db_checkpoint_duration_bucket[${R}])))`, 'p95')],
      ],
      [
        'WAL checkpoints (SQLite, background)',
        'ops',
        [q(`sum by (outcome) (rate(vega_db_checkpoint_duration_count[${R}]))`, '{{outcome}}')],
      ],
      ['Batch writer events', 'short', [q(`sum by (event) (increase(vega_db_batch_events_total[${R}]))`, '{{event}}')]],
      [
        'Conversations stored',
        'ops',
        [q(`sum by (vega_conversation_status) (rate(vega_conversations_logged_total[${R}]))`, '{{vega_conversation_status}}')],
      ],
    ],
  },
  {
    uid: 'vega-runtime',
    title: 'Vega / Runtime',
    panels: [
      [
        'Event-loop delay p50 / p99',
        's',
        [
          q('max by (instance) (nodejs_eventloop_delay_p50)', 'p50 {{instance}}'),
          q('max by (instance) (nodejs_eventloop_delay_p99)', 'p99 {{instance}}'),
        ],
      ],
      ['Event-loop utilization', 'percentunit', [q('max by (instance) (nodejs_eventloop_utilization)', '{{instance}}')]],
      ['Stalls', 'short', [q(`sum by (instance) (increase(vega_eventloop_stalls_total[${R}]))`, '{{instance}}')]],
      ['Event-loop health', 'short', [q('max by (instance, state) (vega_eventloop_health) == 1', '{{instance}} {{state}}')], 'table'],
      [
        'Heap used and RSS',
        'bytes',
        [
          q('sum by (instance) (v8js_memory_heap_used)', 'heap {{instance}}'),
          q('sum by (instance) (vega_process_memory_rss)', 'rss {{instance}}'),
        ],
      ],
      ['GC time per second', 's', [q(`sum by (v8js_gc_type) (rate(v8js_gc_duration_sum[${R}]))`, '{{v8js_gc_type}}')]],
      [
        'File descriptors',
        'short',
        [
          q('sum by (instance) (vega_process_open_fds)', 'open {{instance}}'),
          q('sum by (instance) (vega_process_fd_limit)', 'limit {{instance}}'),
        ],
      ],
      [
        'Outbound connections (sockets) by origin',
        'short',
        [q('sum by (server_address, server_port, state) (vega_http_client_connections)', '{{server_address}}:{{server_port}} {{state}}')],
      ],
      [
        'Potential leaks and tracked objects',
        'short',
        [
          q('sum by (vega_object_type) (vega_memory_potential_leaks)', 'leaks {{vega_object_type}}'),
          q('sum by (vega_object_type) (vega_memory_tracked_objects)', 'tracked {{vega_object_type}}'),
        ],
      ],
      [
        'CPU and memory',
        'percentunit',
        [
          q('max by (instance) (vega_process_cpu_utilization)', 'cpu {{instance}}'),
          q('max by (instance) (vega_system_memory_utilization)', 'memory {{instance}}'),
        ],
      ],
      [
        'Spans dropped (span export queue full)',
        'short',
        [q(`sum by (instance) (increase(vega_traces_spans_dropped_total[${R}]))`, '{{instance}}')],
      ],
    ],
  },
  {
    uid: 'vega-integrations',
    title: 'Vega / Integrations',
    panels: [
      [
        'Integration health',
        'short',
        [q('max by (vega_integration_name, state) (vega_integration_status) == 1', '{{vega_integration_name}}: {{state}}')],
        'table',
      ],
      ['Health-check latency', 's', [q('max by (vega_integration_name) (vega_integration_check_duration)', '{{vega_integration_name}}')]],
      [
        'Integration breakers',
        'short',
        [
          q(
            'max by (vega_breaker_name, state) (vega_circuit_breaker_state{vega_breaker_name=~"integration:.*"}) == 1',
            '{{vega_breaker_name}}: {{state}}',
          ),
        ],
        'table',
      ],
      [
        'Outbound errors by origin and type',
        'short',
        [
          q(
            `sum by (server_address, server_port, error_type) (increase(vega_http_client_errors_total[${R}]))`,
            '{{server_address}}:{{server_port}} {{error_type}}',
          ),
        ],
      ],
      [
        'Outbound request duration p95 by origin',
        's',
        [
          q(
            `histogram_quantile(0.95, sum by (le, server_address, server_port) (rate(http_client_request_duration_bucket[${R}])))`,
            '{{server_address}}:{{server_port}}',
          ),
        ],
      ],
      [
        'Tool calls by tool and outcome',
        'short',
        [
          q(
            `sum by (gen_ai_tool_name, vega_tool_outcome) (increase(vega_tool_calls_total[${R}]))`,
            '{{gen_ai_tool_name}}: {{vega_tool_outcome}}',
          ),
        ],
      ],
      [
        'Tool call duration p95 by tool',
        's',
        [q(`histogram_quantile(0.95, sum by (le, gen_ai_tool_name) (rate(vega_tool_duration_bucket[${R}])))`, '{{gen_ai_tool_name}}')],
      ],
    ],
  },
];

function panel(id, [title, unit, queries, kind = 'timeseries'], i) {
  return {
    id,
    type: kind,
    title,
    datasource: PROM,
    gridPos: { h: 8, w: 12, x: (i % 2) * 12, y: Math.floor(i / 2) * 8 },
    fieldConfig: { defaults: { unit }, overrides: [] },
    options: kind === 'timeseries' ? { legend: { displayMode: 'list', placement: 'bottom' }, tooltip: { mode: 'multi' } } : {},
    targets: queries.map((t, n) => ({
      refId: String.fromCharCode(65 + n),
      datasource: PROM,
      expr: t.expr,
      legendFormat: t.legend,
      ...(kind === 'table' ? { instant: true, format: 'table' } : {}),
    })),
  };
}

function dashboard(d) {
  const panels = d.panels.map((p, i) => panel(i + 1, p, i));
  // Every dashboard can be narrowed to some instances; the per-instance panels use it.
  const templating = {
    list: [
      {
        type: 'query',
        name: 'instance',
        label: 'Instance',
        datasource: PROM,
        query: 'label_values(up{job="vega"}, instance)',
        definition: 'label_values(up{job="vega"}, instance)',
        refresh: 2,
        multi: true,
        includeAll: true,
        allValue: '.*',
        current: { selected: true, text: ['All'], value: ['$__all'] },
      },
    ],
  };
  if (d.uid === 'vega-overview') {
    // A correlation id (or trace id) typed here becomes links to Jaeger's search and trace views.
    templating.list.push({ type: 'textbox', name: 'correlation_id', label: 'Correlation / trace id', query: '' });
    panels.push({
      id: panels.length + 1,
      type: 'text',
      title: 'Find a request in Jaeger',
      gridPos: { h: 5, w: 24, x: 0, y: Math.ceil(panels.length / 2) * 8 },
      options: {
        mode: 'markdown',
        content:
          'Type a correlation id in the box above, then:\n\n' +
          '* [Search Jaeger by tag correlation.id](http://localhost:16686/search?service=vega&tags=%7B%22correlation.id%22%3A%22${correlation_id}%22%7D)\n' +
          '* [Open it as a trace id](http://localhost:16686/trace/${correlation_id}) (when the client sent none, the correlation id is the trace id)',
      },
    });
  }
  return {
    uid: d.uid,
    title: d.title,
    tags: ['vega'],
    timezone: 'browser',
    schemaVersion: 39,
    version: 1,
    editable: true,
    time: { from: 'now-1h', to: 'now' },
    refresh: '30s',
    templating,
    annotations: { list: [] },
    links: [
      { title: 'Jaeger', type: 'link', url: 'http://localhost:16686/search?service=vega', targetBlank: true },
      { title: 'Vega dashboards', type: 'dashboards', tags: ['vega'] },
    ],
    panels,
  };
}

/** Every query of every dashboard, for the stack test: [dashboard, panel, expr]. */
function allQueries() {
  return DASHBOARDS.flatMap((d) => d.panels.flatMap(([title, , queries]) => queries.map((t) => [d.uid, title, t.expr])));
}

module.exports = { allQueries, DASHBOARDS };

if (require.main === module) {
  let stale = false;
  for (const d of DASHBOARDS) {
    const file = join(__dirname, '..', 'dashboards', `${d.uid.replace(/^vega-/, '')}.json`);
    const text = `${JSON.stringify(dashboard(d), null, 2)}\n`;
    if (process.argv.includes('--check')) {
      let current = '';
      try {
        current = readFileSync(file, 'utf8');
      } catch {
        /* missing */
      }
      if (current !== text) {
        stale = true;
        process.stderr.write(`${file} is stale: run node scripts/gen-dashboards.js\n`);
      }
    } else {
      writeFileSync(file, text);
    }
  }
  process.exit(stale ? 1 : 0);
}
