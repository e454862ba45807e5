# overdue-worker: a multi-stage build. The first stage checks the sources compile and bundles them
# with esbuild (`npm run build`: dist/main.js, the daemon; dist/cli.js, the command); the runtime
# stage carries the bundle, the migrations and the production dependencies, and runs plain node
# (no tsx, no TypeScript at run time).

FROM node:24-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
# patches/ holds fixes to dependencies that npm's postinstall (patch-package) applies.
COPY patches ./patches
RUN npm ci --no-audit --no-fund
COPY tsconfig.json ./
COPY src ./src
COPY jobs ./jobs
COPY drizzle ./drizzle
COPY esbuild.config.mjs ./
RUN npx tsc --noEmit && npm run build

FROM node:24-bookworm-slim AS runtime
ENV NODE_ENV=production \
    HOST=0.0.0.0 \
    PORT=8080 \
    DATA_DIR=/var/lib/overdue-worker
WORKDIR /app
COPY package.json package-lock.json ./
COPY patches ./patches
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force
# dist/*.js find the migrations one level up, in /app/drizzle.
COPY --from=build /app/dist ./dist
COPY --from=build /app/drizzle ./drizzle
# `overdue-worker <command>` (migrate, scan, evaluate, simulate) for `docker exec`.
RUN ln -s /app/dist/cli.js /usr/local/bin/overdue-worker \
    && groupadd --system overdue && useradd --system --gid overdue --home /app overdue \
    && mkdir -p /var/lib/overdue-worker && chown overdue:overdue /var/lib/overdue-worker
USER overdue
EXPOSE 8080
# /healthz answers while the process is up; /readyz also checks PostgreSQL, Redis and schedulers.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
  CMD node -e "fetch('http://127.0.0.1:'+(process.env.PORT||8080)+'/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"
# Migrations are applied at start; SIGTERM drains in-flight jobs within SHUTDOWN_TIMEOUT.
# An explicit old-space limit makes V8 grow the heap by a smaller factor (measured: peak RSS of a
# start-up burst 260 -> 175 MB, same CPU); 512 MB is about ten times the live heap.
CMD ["node", "--max-old-space-size=512", "dist/main.js"]
