# The Node server on PostgreSQL (DATABASE_URL), as a non-root container. See compose.yaml.

# Production dependencies only; none of them needs an install script. Our fixes to them (scripts/patches) go on after.
FROM node:20-bookworm-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
COPY scripts/patches ./scripts/patches
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund && npx patch-package --patch-dir scripts/patches --error-on-fail

# TypeScript to JavaScript (dist/), with the dev dependencies that takes.
FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build

FROM node:20-bookworm-slim
ENV NODE_ENV=production HOST=0.0.0.0 PORT=3000
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
# Migrations are read at start-up from db/migrations, next to dist/ (MIGRATE_ON_START).
COPY db/migrations ./db/migrations
COPY package.json ./
# The official image's unprivileged user; the app writes nothing to disk in production.
USER node
EXPOSE 3000
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD ["node", "-e", "fetch(`http://127.0.0.1:${process.env.PORT}/health/ready`).then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
# The heap caps and one WebAssembly compile task of `npm start` (see package.json and the README on memory).
CMD ["node", "--max-old-space-size=1024", "--max-semi-space-size=8", "--wasm-num-compilation-tasks=1", "dist/entry/node.js"]
