# Flowmesh node image. One image for every role: the environment picks the role
# (SERVICES=api,flows,cluster for a gateway, SERVICES=flow-shard for a shard node,
# unset for the embedded single-process default). See docker-compose.yml.

# ---- build: full dependencies, compile TypeScript to dist/ ----
FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json moleculer.config.ts ./
COPY services ./services
COPY mixins ./mixins
COPY src ./src
COPY bin ./bin
COPY bench ./bench
RUN npm run build

# ---- runtime: production dependencies and the compiled code only ----
FROM node:20-bookworm-slim AS runtime
ENV NODE_ENV=production
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force
COPY --from=build /app/dist ./dist
# The dashboard (GET /): static files, served as they are.
COPY public ./public

# Defaults for a container; every one can be overridden (docker run -e / compose).
# HOST must be 0.0.0.0 in a container: the code's default (127.0.0.1) is unreachable
# through a published port. So a gateway from this image needs API_TOKENS_FILE (or
# AUTH=none) to start (README "Security"). SERVICEDIR lets SERVICES name services by short name.
ENV SERVICEDIR=dist/services \
    HOST=0.0.0.0 \
    PORT=3000

# Where nodes keep their partitions (DATA_DIR; ./data, i.e. /app/data, by default):
# writable by the unprivileged user, and a named volume takes this ownership.
RUN mkdir -p /app/data /data && chown node:node /app/data /data
USER node
EXPOSE 3000

# Liveness of the HTTP gateway (GET /health). Nodes without the api service (shard
# nodes) serve no HTTP: disable this check for them (docker-compose.yml does).
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.PORT||3000)+'/health').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]

# Exec form: node receives SIGTERM directly and hands its partitions off before
# exiting (mixins/graceful-leave.middleware.ts). No build at start: dist/ is baked in.
STOPSIGNAL SIGTERM
CMD ["node", "node_modules/moleculer/bin/moleculer-runner.js", "--config", "dist/moleculer.config.js"]
