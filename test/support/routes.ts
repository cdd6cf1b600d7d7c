import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT } from './vega-process';

/** Every route registered in src/http (the routes folder and app.ts, on `router` or `adminRouter`), read from the source: [method, path]. */
export function registeredRoutes(): Array<[string, string]> {
  const files: string[] = [];
  const walk = (dir: string) => {
    for (const f of readdirSync(dir)) {
      const p = join(dir, f);
      if (statSync(p).isDirectory()) walk(p);
      else if (p.endsWith('.ts')) files.push(p);
    }
  };
  walk(join(ROOT, 'src', 'http', 'routes'));
  files.push(join(ROOT, 'src', 'http', 'app.ts'));
  const routes: Array<[string, string]> = [];
  for (const f of files) {
    for (const m of readFileSync(f, 'utf8').matchAll(/[rR]outer\.(get|post|put|delete|patch)\('([^']+)'/g))
      routes.push([m[1]!.toUpperCase(), m[2]!]);
  }
  return routes;
}
