import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { jsonOf, startVega, TEST_KEY, type VegaProcess } from '../support/vega-process';

let vega: VegaProcess;

beforeAll(async () => {
  vega = await startVega({ env: { AUTH_FAILURES_MAX: '5', AUTH_FAILURE_WINDOW_S: '60' } });
});

afterAll(async () => {
  await vega?.stop();
  vega?.cleanup();
});

const history = (key: string) => fetch(`${vega.url}/history`, { headers: { 'x-api-key': key } });

describe('repeated failed authentications', () => {
  it('answers 429 auth_throttled with Retry-After once an address has failed AUTH_FAILURES_MAX times, even for a right key', async () => {
    for (let i = 0; i < 5; i++) expect((await history(`wrong-key-guess-${String(i).padStart(8, '0')}`)).status).toBe(401);
    const guess = await history('wrong-key-guess-99999999');
    expect(guess.status).toBe(429);
    expect((await jsonOf(guess)).error.code).toBe('auth_throttled');
    expect(Number(guess.headers.get('retry-after'))).toBeGreaterThan(0);
    // A right key from the same address waits too: otherwise a guesser learns when it is right.
    expect((await history(TEST_KEY)).status).toBe(429);
    // Probes need no key and are not throttled.
    expect((await fetch(`${vega.url}/healthz`)).status).toBe(200);
  });
});
