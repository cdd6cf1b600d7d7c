/**
 * Decodes an OTLP/HTTP protobuf `ExportTraceServiceRequest` into the shape of its OTLP/JSON
 * form (hex ids, times as decimal strings, `{key, value: {stringValue | intValue | ...}}`
 * attributes), so that a test receiver reads both encodings the same way. Only the fields the
 * tests read are kept; every other field is skipped by its wire type. Field numbers are those of
 * opentelemetry/proto/trace/v1/trace.proto and common/v1/common.proto.
 */

type Json = Record<string, unknown>;

/** A protobuf field: its number and its value (a varint as bigint, fixed64 as bytes, else bytes). */
interface Field {
  readonly no: number;
  readonly wire: number;
  readonly varint?: bigint;
  readonly bytes?: Buffer;
}

function* fields(buf: Buffer): Generator<Field> {
  let pos = 0;
  const varint = (): bigint => {
    let result = 0n;
    let shift = 0n;
    for (;;) {
      if (pos >= buf.length) throw new Error('protobuf: truncated varint');
      const b = buf[pos++]!;
      result |= BigInt(b & 0x7f) << shift;
      if ((b & 0x80) === 0) return result;
      shift += 7n;
    }
  };
  const take = (n: number): Buffer => {
    if (pos + n > buf.length) throw new Error('protobuf: truncated field');
    const out = buf.subarray(pos, pos + n);
    pos += n;
    return out;
  };
  while (pos < buf.length) {
    const key = Number(varint());
    const no = key >>> 3;
    const wire = key & 7;
    if (wire === 0) yield { no, wire, varint: varint() };
    else if (wire === 1) yield { no, wire, bytes: take(8) };
    else if (wire === 2) yield { no, wire, bytes: take(Number(varint())) };
    else if (wire === 5) yield { no, wire, bytes: take(4) };
    else throw new Error(`protobuf: wire type ${wire} not expected`);
  }
}

const str = (f: Field): string => f.bytes!.toString('utf8');
const fixed64 = (f: Field): string => f.bytes!.readBigUInt64LE(0).toString();

function anyValue(buf: Buffer): Json {
  for (const f of fields(buf)) {
    if (f.no === 1) return { stringValue: str(f) };
    if (f.no === 2) return { boolValue: f.varint !== 0n };
    if (f.no === 3) return { intValue: Number(BigInt.asIntN(64, f.varint!)) };
    if (f.no === 4) return { doubleValue: f.bytes!.readDoubleLE(0) };
    if (f.no === 5) return { arrayValue: { values: [...fields(f.bytes!)].filter((v) => v.no === 1).map((v) => anyValue(v.bytes!)) } };
    if (f.no === 6) return { kvlistValue: { values: [...fields(f.bytes!)].filter((v) => v.no === 1).map((v) => keyValue(v.bytes!)) } };
    if (f.no === 7) return { bytesValue: f.bytes!.toString('base64') };
  }
  return {};
}

function keyValue(buf: Buffer): Json {
  const kv: Json = { key: '', value: {} };
  for (const f of fields(buf)) {
    if (f.no === 1) kv.key = str(f);
    else if (f.no === 2) kv.value = anyValue(f.bytes!);
  }
  return kv;
}

function event(buf: Buffer): Json {
  const e: Json = { attributes: [] };
  for (const f of fields(buf)) {
    if (f.no === 1) e.timeUnixNano = fixed64(f);
    else if (f.no === 2) e.name = str(f);
    else if (f.no === 3) (e.attributes as Json[]).push(keyValue(f.bytes!));
  }
  return e;
}

function span(buf: Buffer): Json {
  const s: Json = { attributes: [], events: [], parentSpanId: '' };
  for (const f of fields(buf)) {
    if (f.no === 1) s.traceId = f.bytes!.toString('hex');
    else if (f.no === 2) s.spanId = f.bytes!.toString('hex');
    else if (f.no === 4) s.parentSpanId = f.bytes!.toString('hex');
    else if (f.no === 5) s.name = str(f);
    else if (f.no === 6) s.kind = Number(f.varint);
    else if (f.no === 7) s.startTimeUnixNano = fixed64(f);
    else if (f.no === 8) s.endTimeUnixNano = fixed64(f);
    else if (f.no === 9) (s.attributes as Json[]).push(keyValue(f.bytes!));
    else if (f.no === 11) (s.events as Json[]).push(event(f.bytes!));
  }
  return s;
}

function scopeSpans(buf: Buffer): Json {
  const ss: Json = { scope: {}, spans: [] };
  for (const f of fields(buf)) {
    if (f.no === 1) for (const g of fields(f.bytes!)) if (g.no === 1) ss.scope = { name: str(g) };
    if (f.no === 2) (ss.spans as Json[]).push(span(f.bytes!));
  }
  return ss;
}

/** An `ExportTraceServiceRequest` in protobuf, as its OTLP/JSON form. */
export function decodeTraceRequest(buf: Buffer): { resourceSpans: Json[] } {
  const resourceSpans: Json[] = [];
  for (const f of fields(buf)) {
    if (f.no !== 1) continue;
    const scopes: Json[] = [];
    const resource: Json = { attributes: [] };
    for (const g of fields(f.bytes!)) {
      if (g.no === 1) for (const h of fields(g.bytes!)) if (h.no === 1) (resource.attributes as Json[]).push(keyValue(h.bytes!));
      if (g.no === 2) scopes.push(scopeSpans(g.bytes!));
    }
    resourceSpans.push({ resource, scopeSpans: scopes });
  }
  return { resourceSpans };
}
