import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { jsonOf, postJson, startVega, TEST_KEY, type VegaProcess } from '../support/vega-process';

const CLIENT_KEY = 'client-key-0123456789abcdef';
const ADMIN_KEY = 'admin-key-0123456789abcdef';
let vega: VegaProcess;

beforeAll(async () => {
  vega = await startVega({ env: { API_KEYS: CLIENT_KEY, ADMIN_API_KEYS: ADMIN_KEY } });
});

afterAll(async () => {
  await vega?.stop();
  vega?.cleanup();
});

const get = (path: string, key: string) => fetch(`${vega.url}${path}`, { headers: { 'x-api-key': key } });

describe('requireApiKey with client and admin keys', () => {
  it('answers 403 forbidden to a client key on /admin/*, however the path is spelled', async () => {
    for (const path of ['/admin/routes', '/ADMIN/routes', '/%61dmin/routes', '/admin/performance/cache/clear']) {
      const res = path.endsWith('clear') ? await postJson(vega.url, path, {}, { 'x-api-key': CLIENT_KEY }) : await get(path, CLIENT_KEY);
      expect(res.status, path).toBe(403);
      const body = await jsonOf(res);
      expect(body.error.code).toBe('forbidden');
      expect(body.error.message).toMatch(/admin key/);
    }
  });

  it('lets API_KEY and ADMIN_API_KEYS use /admin/*, over X-API-Key and Bearer', async () => {
    expect((await get('/admin/routes', TEST_KEY)).status).toBe(200);
    expect((await get('/admin/routes', ADMIN_KEY)).status).toBe(200);
    const bearer = await fetch(`${vega.url}/admin/routes`, { headers: { authorization: `Bearer ${ADMIN_KEY}` } });
    expect(bearer.status).toBe(200);
  });

  it('lets a client key (and an admin key) use the client routes', async () => {
    for (const key of [CLIENT_KEY, ADMIN_KEY]) {
      const res = await get('/history', key);
      expect(res.status).toBe(200);
    }
  });

  it('redacts ADMIN_API_KEYS in the config report', async () => {
    const report = await jsonOf(await get('/admin/config/validate', TEST_KEY));
    expect(report.effective.ADMIN_API_KEYS).toBe('***');
    expect(JSON.stringify(report)).not.toContain(ADMIN_KEY);
    expect(vega.output()).not.toContain(ADMIN_KEY);
  });

  it('names both key forms when no key is sent', async () => {
    const res = await fetch(`${vega.url}/v1/models`);
    expect(res.status).toBe(401);
    expect((await jsonOf(res)).error.message).toMatch(/Authorization: Bearer/);
  });
});
