/**
 * The `accepted` event's payload: the job handle itself, as dcp-client emits it (its examples
 * destructure `({ id })`, and a listener may read any property or call any method of the handle),
 * plus `job`, the spec's "original object that was delivered to the scheduler for deployment".
 * A Proxy rather than a copy, so the handle's properties are read live and its methods run on
 * the handle (its private fields are not reachable through any other `this`).
 */
export function acceptedEventOf<Handle extends object, Deployed>(handle: Handle, job: Deployed): Handle & { readonly job: Deployed } {
  return new Proxy(handle, {
    get(target, property) {
      if (property === 'job') return job;
      const value: unknown = Reflect.get(target, property, target);
      return typeof value === 'function' && property !== 'constructor' ? value.bind(target) : value;
    },
    has: (target, property) => property === 'job' || Reflect.has(target, property),
    ownKeys: (target) => [...Reflect.ownKeys(target).filter((key) => key !== 'job'), 'job'],
    getOwnPropertyDescriptor: (target, property) =>
      property === 'job' ? { value: job, writable: false, enumerable: true, configurable: true } : Reflect.getOwnPropertyDescriptor(target, property),
    // Writes go to the handle, as they would on dcp-client's (the event is the handle there).
    set: (target, property, value) => property !== 'job' && Reflect.set(target, property, value, target),
  }) as Handle & { readonly job: Deployed };
}
