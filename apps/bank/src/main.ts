#!/usr/bin/env node
import { startBank } from './bank-app.js';

startBank()
  .then(({ url, env }) => {
    process.stdout.write(JSON.stringify({ level: 30, service: 'bank', msg: `bank listening on ${url} (port ${env.PORT})` }) + '\n');
  })
  .catch((error: unknown) => {
    process.stderr.write(`bank failed to start: ${(error as Error).stack ?? String(error)}\n`);
    process.exit(1);
  });
