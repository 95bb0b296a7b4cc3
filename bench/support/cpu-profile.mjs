// Preloaded into a server by bench/connections.mjs with BENCH_CPU_PROFILE=1 (`node --import
// ./bench/support/cpu-profile.mjs ...`): SIGTTIN starts V8's CPU profiler, SIGTTOU stops it and
// writes the profile to $BENCH_CPU_PROFILE_DIR/<n>.cpuprofile. Signals, because the scheduler dies
// by its own signal handler (NestJS shutdown hooks), so --cpu-prof, which writes at exit, never does.
import { Session } from 'node:inspector';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

const dir = process.env.BENCH_CPU_PROFILE_DIR;
const session = new Session();
session.connect();
let count = 0;
const post = (method, params = {}) => new Promise((resolve, reject) => session.post(method, params, (error, result) => (error ? reject(error) : resolve(result))));
process.on('SIGTTIN', () => {
  void post('Profiler.enable').then(() => post('Profiler.setSamplingInterval', { interval: 500 })).then(() => post('Profiler.start'));
});
process.on('SIGTTOU', () => {
  void post('Profiler.stop').then(({ profile }) => writeFileSync(join(dir, `${++count}.cpuprofile`), JSON.stringify(profile)));
});
