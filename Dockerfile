# syntax=docker/dockerfile:1
# One image for the control plane's processes; docker-compose.yml picks the entry point:
#   node dist/api/main.js            API + control worker (PATCHNANNY_ROLE=api|worker splits them)
#   node dist/gate/main.js           the agent gate
#   node dist/agent-worker/main.js   a (demo) agent; real hosts install the release tarball instead
# Health: node dist/runtime/healthcheck.js http://127.0.0.1:<port>/healthz (no curl in the image).
# No secrets are baked in: every credential comes from the environment at run time. Patch script
# signatures (scripts/patch/*.sig, made offline by `npm run sign:scripts`) are copied when present
# in the build context; otherwise mount signed scripts and point PATCHNANNY_SCRIPTS_DIR at them.

# Pinned: the Node.js release the test suite runs on (Debian 12, as the machines it is tested on).
FROM node:20.20.2-bookworm-slim AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY . .
RUN npm run build

FROM node:20.20.2-bookworm-slim AS runtime
ENV NODE_ENV=production
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force
# Compiled JavaScript only (no sources, tests, benchmark or dev tools), and the workflow bundle
# `npm run build` makes (the control worker loads it instead of bundling at start).
COPY --from=build /src/dist/activities ./dist/activities
COPY --from=build /src/dist/agent-worker ./dist/agent-worker
COPY --from=build /src/dist/api ./dist/api
COPY --from=build /src/dist/cli ./dist/cli
COPY --from=build /src/dist/contract ./dist/contract
COPY --from=build /src/dist/control-worker ./dist/control-worker
COPY --from=build /src/dist/db ./dist/db
COPY --from=build /src/dist/gate ./dist/gate
COPY --from=build /src/dist/runtime ./dist/runtime
COPY --from=build /src/dist/workflows ./dist/workflows
COPY --from=build /src/dist/workflow-bundle.js ./dist/workflow-bundle.js
# The patch scripts the API loads at start (PATCHNANNY_SCRIPTS_DIR defaults to /app/scripts/patch).
COPY scripts/patch ./scripts/patch
# A user of its own with no login and no home; numeric so runAsNonRoot-style checks can see it.
RUN groupadd --system --gid 10001 patchnanny \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin patchnanny
USER 10001:10001
EXPOSE 8080 7280 7281
CMD ["node", "dist/api/main.js"]
