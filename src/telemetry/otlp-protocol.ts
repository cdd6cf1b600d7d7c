/** The OTLP encodings Vega sends over HTTP. */
export type OtlpProtocol = 'http/protobuf' | 'http/json';

/**
 * The encoding of one signal's OTLP export: OTEL_EXPORTER_OTLP_{TRACES,METRICS}_PROTOCOL, else
 * OTEL_EXPORTER_OTLP_PROTOCOL, else `http/protobuf` (OpenTelemetry's default). Protobuf is also
 * the cheaper one (bench/otlp-encode.js, bench/analysis.md). A value Vega does not speak (`grpc`)
 * falls back to protobuf over HTTP, with a warning to say so: the endpoint must then be the
 * collector's HTTP port (4318), not its gRPC one.
 */
export function otlpProtocol(
  signal: 'TRACES' | 'METRICS',
  env: NodeJS.ProcessEnv = process.env,
): { protocol: OtlpProtocol; warning?: string } {
  const asked = (env[`OTEL_EXPORTER_OTLP_${signal}_PROTOCOL`] || env.OTEL_EXPORTER_OTLP_PROTOCOL || '').trim().toLowerCase();
  if (asked === '' || asked === 'http/protobuf') return { protocol: 'http/protobuf' };
  if (asked === 'http/json') return { protocol: 'http/json' };
  return {
    protocol: 'http/protobuf',
    warning:
      `OTLP protocol '${asked.slice(0, 40)}' for ${signal.toLowerCase()} is not supported (http/protobuf, http/json): ` +
      'sending http/protobuf, which needs the endpoint to be an OTLP/HTTP one (a collector listens on 4318)',
  };
}
