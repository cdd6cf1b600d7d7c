# Vega's image: built by docker-compose.yml for the service and for the simulated backend.
# Node 24 LTS, the runtime Vega is tested and benchmarked on (Node 20.18+ still works: package.json engines).
FROM node:24-bookworm-slim
WORKDIR /app
# sqlite3 compiles its addon when no prebuilt binary can be fetched.
RUN apt-get update && apt-get install -y --no-install-recommends python3 make g++ && rm -rf /var/lib/apt/lists/*
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY . .
RUN npm run build && npm prune --omit=dev
ENV HOST=0.0.0.0 PORT=8000 DATABASE_URL=sqlite:/data/vega.db NODE_ENV=production
EXPOSE 8000
# --expose-gc: POST /admin/performance/memory/gc collects on demand. The semi-space flags keep V8's
# young generation at 2 x 16 MB from the start (Node 24 grows it to 2 x 64 MB on a large machine,
# and each of its collections then stopped the event loop for 3-15 ms under load; grown from its
# smallest size, a process could also settle into promoting most of each collection's survivors);
# docs/runbook.md says more.
CMD ["node", "--expose-gc", "--max-semi-space-size=16", "--min-semi-space-size=16", "bin/vega", "server"]
