# One image for both daemons and the CLI: `node bin/trainyard.js scheduler | agent | runs ...`.
FROM node:20-bookworm

# The agent builds each run's environment with `python3 -m venv`, which on Debian needs python3-venv.
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
# Dependencies first, so editing the source does not reinstall them.
COPY package.json package-lock.json ./
RUN npm ci
COPY . .
# The build needs the dev dependencies (typescript, the proto generator); running does not.
RUN npm run build && npm prune --omit=dev

# Agent state (run folders, cached venvs), outside the image and owned by the unprivileged user.
RUN mkdir -p /var/lib/trainyard/work /var/lib/trainyard/venvs && chown -R node:node /var/lib/trainyard
ENV TRAINYARD_WORK_DIR=/var/lib/trainyard/work \
    TRAINYARD_VENV_DIR=/var/lib/trainyard/venvs
USER node

ENTRYPOINT ["node", "bin/trainyard.js"]
CMD ["--help"]
