import { CommuneError, ErrorCode } from '@commune/protocol';

/**
 * DCP's remote data (input sets of URLs, RemoteDataSet, RemoteDataPattern, a work function or
 * arguments given as URLs, fetched by the worker) is not part of Commune yet. Without these
 * checks a URL would travel as its JSON text (the work function would get the address instead
 * of the data behind it); a program that relies on remote data is told so before anything is
 * deployed.
 */
const notYet = 'remote data (DCP fetches URLs given as input-set elements, arguments or the work function, and RemoteDataSet / RemoteDataPattern, on the worker) is not supported by Commune yet; pass the values themselves';

function refuse(what: string): never {
  throw new CommuneError(ErrorCode.EINVAL, `${what}: ${notYet}`);
}

/** dcp-client's compute.RemoteDataSet(...urls): refused (see above). */
export class RemoteDataSet {
  constructor() {
    refuse('new RemoteDataSet()');
  }
}

/** dcp-client's compute.RemoteDataPattern(pattern, sliceCount): refused (see above). */
export class RemoteDataPattern {
  constructor() {
    refuse('new RemoteDataPattern()');
  }
}

/** Refuses the first URL among `values` (top-level elements): `what` names the array (an input set, arguments). */
export function refuseUrls(what: string, values: readonly unknown[]): void {
  const index = values.findIndex((value) => value instanceof URL);
  if (index >= 0) refuse(`${what} element ${index} is a URL (${(values[index] as URL).href})`);
}

/** Refuses a URL given where a single value goes (the input set, the work function). */
export function refuseUrl(what: string, value: unknown): void {
  if (value instanceof URL) refuse(`${what} is a URL (${value.href})`);
}
