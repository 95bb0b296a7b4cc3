#!/usr/bin/env node
import { startScheduler } from './scheduler-app.js';

startScheduler()
  .then(({ url, env }) => {
    process.stdout.write(JSON.stringify({ level: 30, msg: `scheduler listening on ${url} (port ${env.PORT})` }) + '\n');
  })
  .catch((error: unknown) => {
    process.stderr.write(`scheduler failed to start: ${(error as Error).stack ?? String(error)}\n`);
    process.exit(1);
  });
