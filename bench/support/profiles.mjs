// Reads a V8 .cpuprofile (bench/support/cpu-profile.mjs) and says where the time went: self time by
// package or part of the project, and the functions with the most self time.
import { readFileSync } from 'node:fs';

/** node_modules/<package> (pnpm's store included), apps/<name>, libs/<name>, node: internals, or V8's own entries. */
function partOf(url, functionName) {
  if (!url) return `(${functionName || 'native'})`.replace(/^\(\((.*)\)\)$/, '($1)');
  const module = /node_modules\/(?!\.pnpm)((?:@[^/]+\/)?[^/]+)/.exec(url.split('node_modules/.pnpm/').pop().replace(/^[^/]+\//, ''));
  if (module) return module[1];
  const project = /\/(apps|libs)\/([^/]+)\//.exec(url);
  if (project) return `${project[1]}/${project[2]}`;
  if (url.startsWith('node:')) return 'node: internals';
  return url;
}

export function summarizeProfile(path, top = 15) {
  const profile = JSON.parse(readFileSync(path, 'utf8'));
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const self = new Map();
  // Sample i took timeDeltas[i + 1] (the time until the next sample); the last one is dropped.
  for (let i = 0; i < profile.samples.length - 1; i++) self.set(profile.samples[i], (self.get(profile.samples[i]) ?? 0) + profile.timeDeltas[i + 1]);
  const parts = new Map();
  const functions = new Map();
  let total = 0;
  for (const [id, micros] of self) {
    const { callFrame } = byId.get(id);
    const part = partOf(callFrame.url, callFrame.functionName);
    parts.set(part, (parts.get(part) ?? 0) + micros);
    const name = `${callFrame.functionName || '(anonymous)'} ${callFrame.url ? `${callFrame.url.split('/').slice(-2).join('/')}:${callFrame.lineNumber + 1}` : ''}`.trim();
    functions.set(name, (functions.get(name) ?? 0) + micros);
    total += micros;
  }
  const sorted = (map) => [...map].sort((a, b) => b[1] - a[1]);
  return { totalMs: total / 1000, parts: sorted(parts), functions: sorted(functions).slice(0, top) };
}
