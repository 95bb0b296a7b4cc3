import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { RedisGeneration, type RedisLossReason } from './redis-generation.js';

const redisUrl = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';

/**
 * RedisGeneration against a real Redis. A loss is what a service sees after Redis restarted with
 * nothing on disk: its generation key is gone (here: deleted, so the shared test Redis keeps
 * everyone else's keys).
 */
describe('RedisGeneration (integration, real Redis)', () => {
  const key = `t_${Date.now().toString(36)}_${randomBytes(4).toString('hex')}:generation`;
  const clients: Redis[] = [];
  const watches: RedisGeneration[] = [];
  const client = () => {
    const redis = new Redis(redisUrl, { maxRetriesPerRequest: 3 });
    clients.push(redis);
    return redis;
  };
  const watch = (redis: Redis, intervalMs = 60_000) => {
    const generation = new RedisGeneration(redis, { key, intervalMs });
    watches.push(generation);
    return generation;
  };

  afterAll(async () => {
    for (const generation of watches) generation.stop();
    await clients[0]?.del(key);
    for (const redis of clients) redis.disconnect();
  });

  it('runs its recoveries at boot on an empty Redis, after a loss, and after another process saw the loss first; again until they succeed', async () => {
    const first = watch(client());
    const seen: RedisLossReason[] = [];
    first.onLoss(async (reason) => {
      seen.push(reason);
    });
    expect(await first.start()).toBe(true); // no generation yet: Redis was empty
    await first.check();
    expect(seen).toEqual(['boot']);

    // A second process of the same deployment finds the generation: nothing to rebuild.
    const second = watch(client());
    const secondSeen: RedisLossReason[] = [];
    second.onLoss(async (reason) => {
      secondSeen.push(reason);
    });
    expect(await second.start()).toBe(false);
    await second.check();
    expect(secondSeen).toEqual([]);

    // Nothing changed: checks run no recovery.
    await first.check();
    expect(seen).toEqual(['boot']);

    // Redis lost its data: the first check after it runs the recovery and writes a new generation.
    await clients[0]!.del(key);
    await first.check();
    expect(seen).toEqual(['boot', 'loss']);
    expect(first.losses).toBe(1);
    const written = await clients[0]!.get(key);
    expect(written).not.toBeNull();
    // The second process sees a generation it does not know: another process saw the loss first; it recovers too.
    await second.check();
    expect(secondSeen).toEqual(['loss']);
    await second.check();
    expect(secondSeen).toEqual(['loss']);
    expect(await clients[0]!.get(key)).toBe(written);

    // A recovery that fails (PostgreSQL down, say) runs again at the next check, until it succeeds.
    let failures = 2;
    const third: RedisLossReason[] = [];
    second.onLoss(async (reason) => {
      third.push(reason);
      if (failures-- > 0) throw new Error('postgres is down');
    });
    await clients[0]!.del(key);
    await second.check();
    await second.check();
    await second.check();
    await second.check();
    expect(third).toEqual(['loss', 'loss', 'loss']);
    expect(secondSeen).toEqual(['loss', 'loss', 'loss', 'loss']); // listeners before the failing one run on each try (they are idempotent)
  });

  it('notices a loss by itself, on its interval, within about a second', async () => {
    const generation = watch(client(), 100);
    let lossAt = 0;
    generation.onLoss(async (reason) => {
      if (reason === 'loss') lossAt = Date.now();
    });
    await generation.start();
    const deletedAt = Date.now();
    await clients[0]!.del(key);
    const deadline = Date.now() + 5000;
    while (lossAt === 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
    expect(lossAt).toBeGreaterThan(0);
    expect(lossAt - deletedAt).toBeLessThan(1000);
  });
});
