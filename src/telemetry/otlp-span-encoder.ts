import type { Attributes, AttributeValue, HrTime } from '@opentelemetry/api';
import type { ReadableSpan } from '@opentelemetry/sdk-trace-base';

/**
 * Encodes finished spans as an OTLP `ExportTraceServiceRequest` in protobuf: the bytes
 * OpenTelemetry's own serializer (ProtobufTraceSerializer in @opentelemetry/otlp-transformer)
 * makes of the same spans, field for field and byte for byte (the unit tests compare the two on
 * spans of every shape), in about a quarter of its time in Vega's process.
 *
 * The SDK's serializer walks every span twice (once to size the request, once to write it), walks
 * each string three times, and allocates a byte array per trace and span id; in Vega, under load,
 * it took 10-12 us a span, some 45 us a chat, where this encoder takes about 3 (bench/analysis.md).
 * It writes in one pass into a buffer it keeps between requests, copies an attribute key's encoding
 * from a cache (keys are a few dozen names, written millions of times), writes ids straight from
 * their hex, and sends only a string of 64 characters or more, or one that is not ASCII, through
 * Node's UTF-8 encoder.
 *
 * Message and field numbers are those of opentelemetry/proto trace/v1/trace.proto,
 * common/v1/common.proto and resource/v1/resource.proto. A length-delimited field's length is
 * written before its content is known: room for it is reserved (one byte for small messages, more
 * for spans and the lists that hold them) and the content moved on in the rare case it needs more.
 */
export class OtlpSpanEncoder {
  #buf: Buffer;
  #pos = 0;
  /** Each attribute key's `KeyValue.key` field (tag, length, UTF-8 bytes), for keys seen so far. */
  readonly #keys = new Map<string, Buffer>();

  /** `initialBytes`: the buffer's first size; it grows to the largest request and stays that size. */
  constructor(initialBytes = 1 << 16) {
    this.#buf = Buffer.allocUnsafe(Math.max(16, initialBytes));
  }

  /** One ExportTraceServiceRequest holding `spans`, grouped by resource and scope as the SDK groups them. */
  encode(spans: readonly ReadableSpan[]): Uint8Array {
    this.#pos = 0;
    for (const [resource, scopes] of group(spans)) {
      const rs = this.#open(0x0a, 3); // ExportTraceServiceRequest.resource_spans = 1
      const r = this.#open(0x0a, 2); // ResourceSpans.resource = 1
      this.#attributes(resource.attributes, 0x0a); // Resource.attributes = 1
      this.#room(2);
      this.#byte(0x10); // Resource.dropped_attributes_count = 2
      this.#byte(0);
      this.#close(r, 2);
      for (const [scope, list] of scopes) {
        const ss = this.#open(0x12, 3); // ResourceSpans.scope_spans = 2
        const sc = this.#open(0x0a, 1); // ScopeSpans.scope = 1
        this.#stringField(0x0a, scope.name); // InstrumentationScope.name = 1
        if (scope.version) {
          this.#stringField(0x12, scope.version); // InstrumentationScope.version = 2
        }
        const scoped = scope as { attributes?: Attributes; droppedAttributesCount?: number };
        if (scoped.attributes) this.#attributes(scoped.attributes, 0x1a); // InstrumentationScope.attributes = 3
        if (scoped.droppedAttributesCount) {
          this.#uintField(0x20, scoped.droppedAttributesCount); // InstrumentationScope.dropped_attributes_count = 4
        }
        this.#close(sc, 1);
        for (const span of list) {
          const s = this.#open(0x12, 2); // ScopeSpans.spans = 2
          this.#span(span);
          this.#close(s, 2);
        }
        if (scope.schemaUrl) {
          this.#stringField(0x1a, scope.schemaUrl); // ScopeSpans.schema_url = 3
        }
        this.#close(ss, 3);
      }
      if (resource.schemaUrl) {
        this.#stringField(0x1a, resource.schemaUrl); // ResourceSpans.schema_url = 3
      }
      this.#close(rs, 3);
    }
    // A copy: the buffer is reused, and the request may be retried after the next one is encoded.
    return new Uint8Array(this.#buf.subarray(0, this.#pos));
  }

  /** Span (trace.proto), every field the SDK's serializer writes, in its order. */
  #span(span: ReadableSpan): void {
    const ctx = span.spanContext();
    this.#idField(0x0a, ctx.traceId, 16); // trace_id = 1
    this.#idField(0x12, ctx.spanId, 8); // span_id = 2
    const traceState = ctx.traceState?.serialize();
    if (traceState) {
      this.#stringField(0x1a, traceState); // trace_state = 3
    }
    const parent = span.parentSpanContext;
    if (parent?.spanId) {
      this.#idField(0x22, parent.spanId, 8); // parent_span_id = 4
    }
    this.#stringField(0x2a, span.name); // name = 5
    // kind = 6: the API's kinds are the proto's minus one (the proto has an UNSPECIFIED 0).
    const kind = span.kind == null ? 0 : span.kind + 1;
    this.#room(24);
    if (kind !== 0) {
      this.#byte(0x30);
      this.#varint(kind);
    }
    this.#byte(0x39); // start_time_unix_nano = 7 (fixed64)
    this.#time(span.startTime);
    this.#byte(0x41); // end_time_unix_nano = 8 (fixed64)
    this.#time(span.endTime);
    this.#attributes(span.attributes, 0x4a); // attributes = 9
    this.#uintField(0x50, span.droppedAttributesCount); // dropped_attributes_count = 10
    for (const event of span.events) {
      const e = this.#open(0x5a, 1); // events = 11
      this.#room(10);
      this.#byte(0x09); // Event.time_unix_nano = 1 (fixed64)
      this.#time(event.time);
      this.#byte(0x12); // Event.name = 2
      this.#string(event.name);
      if (event.attributes) this.#attributes(event.attributes, 0x1a); // Event.attributes = 3
      this.#uintField(0x20, event.droppedAttributesCount ?? 0); // Event.dropped_attributes_count = 4
      this.#close(e, 1);
    }
    this.#uintField(0x60, span.droppedEventsCount); // dropped_events_count = 12
    for (const link of span.links) {
      const l = this.#open(0x6a, 1); // links = 13
      this.#idField(0x0a, link.context.traceId, 16); // Link.trace_id = 1
      this.#idField(0x12, link.context.spanId, 8); // Link.span_id = 2
      const linkState = link.context.traceState?.serialize();
      if (linkState) {
        this.#stringField(0x1a, linkState); // Link.trace_state = 3
      }
      if (link.attributes) this.#attributes(link.attributes, 0x22); // Link.attributes = 4
      this.#uintField(0x28, link.droppedAttributesCount ?? 0); // Link.dropped_attributes_count = 5
      this.#room(5);
      this.#byte(0x35); // Link.flags = 6 (fixed32)
      this.#fixed32(spanFlags(link.context.traceFlags, link.context.isRemote));
      this.#close(l, 1);
    }
    this.#uintField(0x70, span.droppedLinksCount); // dropped_links_count = 14
    const st = this.#open(0x7a, 1); // status = 15
    if (span.status.message) {
      this.#stringField(0x12, span.status.message); // Status.message = 2
    }
    this.#uintField(0x18, span.status.code); // Status.code = 3
    this.#close(st, 1);
    this.#room(6);
    this.#byte(0x85); // flags = 16 (fixed32): tag 133, two bytes
    this.#byte(0x01);
    this.#fixed32(spanFlags(ctx.traceFlags, parent?.isRemote));
  }

  /** A varint field of up to 32 bits (a count, an enum), its tag a single byte. */
  #uintField(tag: number, v: number): void {
    this.#room(6);
    this.#byte(tag);
    this.#varint(v);
  }

  /** A string field, its tag a single byte. */
  #stringField(tag: number, s: string): void {
    this.#room(1);
    this.#byte(tag);
    this.#string(s);
  }

  /** Repeated KeyValue under the field whose tag byte is `tag`. */
  #attributes(attributes: Attributes, tag: number): void {
    for (const key in attributes) {
      if (!Object.prototype.hasOwnProperty.call(attributes, key)) continue;
      this.#keyValue(tag, key, attributes[key]);
    }
  }

  #keyValue(tag: number, key: string, value: AttributeValue | undefined): void {
    const kv = this.#open(tag, 1);
    this.#key(key);
    const v = this.#open(0x12, 1); // KeyValue.value = 2 (AnyValue)
    this.#anyValue(value);
    this.#close(v, 1);
    this.#close(kv, 1);
  }

  /** `KeyValue.key = 1`, from the cache. */
  #key(key: string): void {
    let bytes = this.#keys.get(key);
    if (bytes === undefined) {
      const length = Buffer.byteLength(key);
      bytes = Buffer.allocUnsafe(1 + varintSize(length) + length);
      bytes[0] = 0x0a;
      const at = writeVarint(bytes, 1, length);
      bytes.write(key, at, length, 'utf8');
      // Keys are names from code; a bound all the same, should some caller make them from data.
      if (this.#keys.size < 4096) this.#keys.set(key, bytes);
    }
    this.#room(bytes.length);
    bytes.copy(this.#buf, this.#pos);
    this.#pos += bytes.length;
  }

  /** AnyValue (common.proto) of an attribute value; a value of no type it has (undefined, null) is an empty AnyValue. */
  #anyValue(value: unknown): void {
    this.#room(10);
    if (typeof value === 'string') {
      this.#byte(0x0a); // string_value = 1
      this.#string(value);
    } else if (typeof value === 'boolean') {
      this.#byte(0x10); // bool_value = 2
      this.#byte(value ? 1 : 0);
    } else if (typeof value === 'number') {
      // int_value for an integer in int64's range (as the SDK decides), else double_value.
      if (Number.isInteger(value) && value >= -(2 ** 63) && value < 2 ** 63) {
        this.#byte(0x18); // int_value = 3
        this.#varint64(value);
      } else {
        this.#byte(0x21); // double_value = 4 (fixed64)
        this.#buf.writeDoubleLE(value, this.#pos);
        this.#pos += 8;
      }
    } else if (value instanceof Uint8Array) {
      this.#byte(0x3a); // bytes_value = 7
      this.#room(5 + value.length);
      this.#varint(value.length);
      this.#buf.set(value, this.#pos);
      this.#pos += value.length;
    } else if (Array.isArray(value)) {
      const a = this.#open(0x2a, 1); // array_value = 5 (ArrayValue)
      for (const item of value) {
        const i = this.#open(0x0a, 1); // ArrayValue.values = 1
        this.#anyValue(item);
        this.#close(i, 1);
      }
      this.#close(a, 1);
    } else if (typeof value === 'object' && value !== null) {
      const list = this.#open(0x32, 1); // kvlist_value = 6 (KeyValueList)
      const record = value as Record<string, unknown>;
      for (const key in record) {
        if (!Object.prototype.hasOwnProperty.call(record, key)) continue;
        this.#keyValue(0x0a, key, record[key] as AttributeValue); // KeyValueList.values = 1
      }
      this.#close(list, 1);
    }
  }

  /** A string field's length and UTF-8 bytes (its tag already written). */
  #string(s: string): void {
    const n = s.length;
    if (n < 64) {
      // ASCII in one pass: the length is the count of characters, which fits one byte.
      this.#room(1 + n);
      const buf = this.#buf;
      const lengthAt = this.#pos;
      let pos = lengthAt + 1;
      for (let i = 0; i < n; i++) {
        const c = s.charCodeAt(i);
        if (c > 0x7f) return this.#utf8(s);
        buf[pos++] = c;
      }
      buf[lengthAt] = n;
      this.#pos = pos;
      return;
    }
    this.#utf8(s);
  }

  #utf8(s: string): void {
    const length = Buffer.byteLength(s, 'utf8');
    this.#room(5 + length);
    this.#varint(length);
    this.#pos += this.#buf.write(s, this.#pos, length, 'utf8');
  }

  /** A trace or span id field: its bytes from the hex. A malformed id still takes its full length (zeros past what parses). */
  #idField(tag: number, hex: string, bytes: number): void {
    this.#room(2 + bytes);
    this.#byte(tag);
    this.#byte(bytes);
    const written = this.#buf.write(hex, this.#pos, bytes, 'hex');
    if (written < bytes) this.#buf.fill(0, this.#pos + written, this.#pos + bytes);
    this.#pos += bytes;
  }

  /** HrTime as fixed64 nanoseconds, exact past 2^53 (seconds split in 16-bit halves, as the SDK does). */
  #time(t: HrTime): void {
    const seconds = t[0];
    const nanos = t[1];
    const fromLow = (seconds & 0xffff) * 1e9; // < 2^53
    const fromHigh = ((seconds / 0x10000) >>> 0) * 1e9; // < 2^53, to be shifted left 16 bits
    const lowSum = (fromLow >>> 0) + (((fromHigh & 0xffff) * 0x10000) >>> 0) + nanos;
    const high = (Math.floor(fromLow / 0x100000000) + ((fromHigh / 0x10000) >>> 0) + Math.floor(lowSum / 0x100000000)) >>> 0;
    this.#buf.writeUInt32LE(lowSum >>> 0, this.#pos);
    this.#buf.writeUInt32LE(high, this.#pos + 4);
    this.#pos += 8;
  }

  #fixed32(v: number): void {
    this.#buf.writeUInt32LE(v >>> 0, this.#pos);
    this.#pos += 4;
  }

  #byte(b: number): void {
    this.#buf[this.#pos++] = b;
  }

  /** A varint of up to 32 bits (lengths, counts, enums). */
  #varint(v: number): void {
    this.#pos = writeVarint(this.#buf, this.#pos, v >>> 0);
  }

  /** An int64 varint: a negative number in two's complement, ten bytes. */
  #varint64(v: number): void {
    if (v >= 0 && v <= 0xffffffff) return this.#varint(v);
    let low: number;
    let high: number;
    if (v >= 0) {
      low = v >>> 0;
      high = Math.floor(v / 0x100000000) >>> 0;
    } else {
      const abs = -v;
      low = ~(abs >>> 0) >>> 0;
      high = ~(Math.floor(abs / 0x100000000) >>> 0) >>> 0;
      low = (low + 1) >>> 0;
      if (low === 0) high = (high + 1) >>> 0;
    }
    this.#room(10);
    const buf = this.#buf;
    while (high > 0 || low > 0x7f) {
      buf[this.#pos++] = (low & 0x7f) | 0x80;
      low = ((low >>> 7) | (high << 25)) >>> 0;
      high >>>= 7;
    }
    buf[this.#pos++] = low;
  }

  /**
   * Starts a length-delimited field: its tag (one byte) and `reserve` bytes for its length, which
   * {@link close} writes. Returns where the content starts.
   */
  #open(tag: number, reserve: number): number {
    this.#room(1 + reserve);
    this.#buf[this.#pos] = tag;
    this.#pos += 1 + reserve;
    return this.#pos;
  }

  /** Writes the length of the content since `start` in the bytes reserved before it, moving the content if it needs more. */
  #close(start: number, reserve: number): void {
    const length = this.#pos - start;
    const size = varintSize(length);
    if (size !== reserve) {
      this.#room(size - reserve);
      this.#buf.copyWithin(start + size - reserve, start, this.#pos);
      this.#pos += size - reserve;
    }
    // Padded to the reserved width would also parse, but the SDK writes the shortest form.
    writeVarint(this.#buf, start - reserve, length);
  }

  /** Makes room for `n` more bytes. */
  #room(n: number): void {
    if (this.#pos + n <= this.#buf.length) return;
    let size = this.#buf.length * 2;
    while (size < this.#pos + n) size *= 2;
    const next = Buffer.allocUnsafe(size);
    this.#buf.copy(next, 0, 0, this.#pos);
    this.#buf = next;
  }
}

/** Spans by resource, then by instrumentation scope, each in first-seen order (identity, as the SDK's serializer groups). */
function group(spans: readonly ReadableSpan[]): Map<ReadableSpan['resource'], Map<ReadableSpan['instrumentationScope'], ReadableSpan[]>> {
  const out = new Map<ReadableSpan['resource'], Map<ReadableSpan['instrumentationScope'], ReadableSpan[]>>();
  for (const span of spans) {
    let scopes = out.get(span.resource);
    if (!scopes) out.set(span.resource, (scopes = new Map()));
    let list = scopes.get(span.instrumentationScope);
    if (!list) scopes.set(span.instrumentationScope, (list = []));
    list.push(span);
  }
  return out;
}

/** Span.flags / Link.flags: the W3C trace flags, and whether the parent (or linked) context is remote. */
function spanFlags(traceFlags: number, isRemote: boolean | undefined): number {
  return (traceFlags & 0xff) | 0x100 | (isRemote ? 0x200 : 0);
}

function varintSize(v: number): number {
  return v < 0x80 ? 1 : v < 0x4000 ? 2 : v < 0x200000 ? 3 : v < 0x10000000 ? 4 : 5;
}

function writeVarint(buf: Uint8Array, pos: number, v: number): number {
  while (v > 0x7f) {
    buf[pos++] = (v & 0x7f) | 0x80;
    v >>>= 7;
  }
  buf[pos++] = v;
  return pos;
}
