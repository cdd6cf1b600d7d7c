import type { Attributes } from '@opentelemetry/api';

/** Under the test runner, every LabelSets lookup is checked (see below). */
const VERIFY = process.env.VITEST !== undefined;

/** A label-set key's part for an error type: '' for none, never equal to a key part without one. */
export function errorKey(type: string | undefined): string {
  return type === undefined ? '' : `error:${type}`;
}

/**
 * Attribute sets for the metric recordings made on every request, built once and frozen (or, for
 * a group of sets recorded together, a frozen record of frozen sets).
 *
 * The metrics SDK finds the series a recording belongs to by hashing its attributes: the keys
 * sorted, then JSON-encoded with their values. That is a sort, four arrays and a string per
 * recording, about a kilobyte of garbage, and a chat makes a dozen recordings.
 * {@link memoizeFrozenAttributeHashes} lets the SDK remember the hash of a frozen set, so a set
 * handed out here is hashed once per process; each set is then a lookup.
 *
 * The key names the set (its label values, joined); every value in a key must come from a bounded
 * set, as every metric label must, and the key must name every value the set holds. Under the
 * test runner (VITEST set, which the Vega processes tests start inherit) every lookup builds the
 * set again and throws if it differs from the kept one: a key that leaves out a value fails the
 * whole suite, not only a test that happens to read that label. Past `max` distinct keys a set is
 * still built and frozen, but not kept.
 */
export class LabelSets<A extends object> {
  readonly #sets = new Map<string, Readonly<A>>();
  readonly #max: number;

  constructor(max = 1_000) {
    this.#max = max;
  }

  /** The one frozen set for `key`, made by `build` the first time. */
  get(key: string, build: () => A): Readonly<A> {
    let set = this.#sets.get(key);
    if (set === undefined) {
      set = Object.freeze(build());
      if (this.#sets.size < this.#max) this.#sets.set(key, set);
    } else if (VERIFY && !sameValues(set, build())) {
      throw new Error(`LabelSets: key ${JSON.stringify(key)} names two different label sets`);
    }
    return set;
  }

  get size(): number {
    return this.#sets.size;
  }
}

/** Plain objects (a label set, or a record of them) with the same keys and values. */
function sameValues(a: object, b: object): boolean {
  const ka = Object.keys(a);
  if (ka.length !== Object.keys(b).length) return false;
  return ka.every((k) => {
    const va = (a as Record<string, unknown>)[k];
    const vb = (b as Record<string, unknown>)[k];
    return typeof va === 'object' && va !== null && typeof vb === 'object' && vb !== null ? sameValues(va, vb) : Object.is(va, vb);
  });
}

type Hash = ((attributes: Attributes) => string) & { readonly memoizesFrozen?: true };

/**
 * Gives the metrics SDK's attribute hash a memo for frozen attribute objects (a WeakMap, so a
 * set no one holds any more is forgotten). An object that is not frozen is hashed as before, so
 * an attribute object someone changes between recordings can never be counted under its old
 * values; so is a frozen one holding an array (freezing is shallow: the array could change).
 * Runs before the SDK makes its first series map (the maps take the function when they are
 * made). Returns whether the memo is in place: false if the SDK's internals have moved, in which
 * case everything works as before, only slower (a test fails first).
 */
export function memoizeFrozenAttributeHashes(): boolean {
  let utils: { hashAttributes?: Hash };
  try {
    // An internal module of the SDK's (no typed entry point); its version is pinned by the lockfile.
    utils = require('@opentelemetry/sdk-metrics/build/src/utils') as { hashAttributes?: Hash };
  } catch {
    return false;
  }
  const original = utils.hashAttributes;
  if (typeof original !== 'function') return false;
  if (original.memoizesFrozen) return true;
  const memo = new WeakMap<Attributes, string>();
  const memoized = (attributes: Attributes): string => {
    if (typeof attributes !== 'object' || attributes === null || !Object.isFrozen(attributes)) return original(attributes);
    let hash = memo.get(attributes);
    if (hash === undefined) {
      hash = original(attributes);
      if (Object.values(attributes).every((v) => typeof v !== 'object' || v === null)) memo.set(attributes, hash);
    }
    return hash;
  };
  utils.hashAttributes = Object.assign(memoized, { memoizesFrozen: true as const });
  return true;
}
