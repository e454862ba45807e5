# overdue-worker: a multi-stage build. The first stage checks the sources compile; the runtime
# stage carries only production dependencies (tsx runs the TypeScript sources as they are).

FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
# patches/ holds fixes to dependencies that npm's postinstall (patch-package) applies.
COPY patches ./patches
RUN npm ci --no-audit --no-fund
COPY tsconfig.json ./
COPY src ./src
COPY jobs ./jobs
COPY drizzle ./drizzle
RUN npx tsc --noEmit

FROM node:20-bookworm-slim AS runtime
ENV NODE_ENV=production \
    HOST=0.0.0.0 \
    PORT=8080 \
    DATA_DIR=/var/lib/overdue-worker
WORKDIR /app
COPY package.json package-lock.json ./
COPY patches ./patches
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force
COPY --from=build /app/src ./src
COPY --from=build /app/jobs ./jobs
COPY --from=build /app/drizzle ./drizzle
RUN groupadd --system overdue && useradd --system --gid overdue --home /app overdue \
    && mkdir -p /var/lib/overdue-worker && chown overdue:overdue /var/lib/overdue-worker
USER overdue
EXPOSE 8080
# /healthz answers while the process is up; /readyz also checks PostgreSQL, Redis and schedulers.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
  CMD node -e "fetch('http://127.0.0.1:'+(process.env.PORT||8080)+'/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"
# Migrations are applied at start; SIGTERM drains in-flight jobs within SHUTDOWN_TIMEOUT.
CMD ["node", "src/cli/bin.mjs", "start"]
