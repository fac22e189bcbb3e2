/**
 * `kill -9` of an engine process at any moment loses nothing and duplicates nothing
 * (DESIGN.md, "Guarantees we promise"). Real Redis and Postgres; the engine runs as
 * `node dist/cli/main.js start` children (run `npm run build` first), killed by PID.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { sleep } from '../../src/core/backoff.js';
import { Producer } from '../../src/producer/producer.js';
import {
  eventRows,
  freezeHolding,
  killChildren,
  pendingOfProcess,
  pendingSummary,
  produceInBackground,
  startEngine,
  type EngineProcess,
  expectExactlyOnce,
} from '../helpers/child.js';
import { createTestEnv, waitFor } from '../helpers/env.js';

/** Short reclaim settings so a dead consumer's entries come back within seconds. */
const CHILD_SETTINGS = {
  BATCH_SIZE: '500',
  BATCH_TIMEOUT_MS: '500',
  CLAIM_IDLE_MS: '4000',
  CLAIM_INTERVAL_MS: '1000',
};

const randomDelay = (lo: number, hi: number) => lo + Math.floor(Math.random() * (hi - lo + 1));

/** Sum of the "reclaimed N idle entries" lines an engine logged. */
function reclaimedInLog(engine: EngineProcess): number {
  let n = 0;
  for (const m of engine.output.matchAll(/reclaimed (\d+) idle entries/g)) n += Number(m[1]);
  return n;
}

describe('crash: SIGKILL of engine processes', () => {
  afterEach(async () => {
    await killChildren();
  });

  it('SIGKILL at random moments loses nothing and duplicates nothing', async () => {
    const TOTAL = 50_000;
    const env = await createTestEnv('crash');
    const producer = new Producer({ redisUrl: env.config.redisUrl, streamKey: env.config.streamKey });
    try {
      // Produced while the engine is being killed and restarted: ~10 s of flow at 5k/s, which
      // the engine keeps up with, so every kill lands while entries are arriving.
      let engine = await startEngine(env, CHILD_SETTINGS, 'run-1');
      const produced = produceInBackground(producer, TOTAL, { prefix: env.name, batch: 500, rate: 5_000 });
      const kills: Array<{ run: number; afterMs: number; produced: number; rowsBefore: number; pendingBefore: number; pendingAfter: number }> = [];
      for (let run = 1; run <= 8 && (run <= 4 || produced.done < TOTAL); run++) {
        const afterMs = randomDelay(300, 1500);
        await sleep(afterMs);
        // Aim at a moment when the engine holds unacknowledged work (preferably a whole batch):
        // freeze it there (SIGSTOP) so what it holds can be counted exactly, then kill it.
        const pendingBefore = await freezeHolding(engine, async () => (await pendingSummary(env)).total, {
          atLeast: 100,
          attempts: 15,
          settle: () => produced.done >= TOTAL,
        });
        const rowsBefore = await eventRows(env);
        const exit = await engine.killHard();
        expect(exit.signal).toBe('SIGKILL');
        const pendingAfter = (await pendingSummary(env)).total;
        kills.push({ run, afterMs, produced: produced.done, rowsBefore, pendingBefore, pendingAfter });
        // Same CONSUMER_NAME: the new process first drains what its predecessor left pending.
        engine = await startEngine(env, CHILD_SETTINGS, `run-${run + 1}`);
      }
      console.info('crash: kills', JSON.stringify(kills));
      await produced.finished;

      // The kills were mid-flow: work was still arriving and some was read but unacknowledged.
      expect(kills.length).toBeGreaterThanOrEqual(4);
      expect(kills[0]!.rowsBefore).toBeLessThan(TOTAL);
      expect(kills.filter((k) => k.pendingBefore > 0).length, 'kills that left entries pending').toBeGreaterThanOrEqual(4);

      await waitFor(
        async () => (await eventRows(env)) >= TOTAL && (await pendingSummary(env)).total === 0,
        45_000,
        `${TOTAL} rows and nothing pending`,
      );
      // Let a straggler (a duplicate write, a late reclaim) show itself before auditing.
      await sleep(1500);
      await expectExactlyOnce(env, produced.ids);

      engine.kill('SIGTERM');
      const exit = await engine.waitExit(10_000);
      expect(exit, `final engine did not stop:\n${engine.output}`).toBeDefined();
      expect(exit!.code).toBe(0);
      expect(engine.output).not.toMatch(/unexpected:/);
      await expectExactlyOnce(env, produced.ids);
    } finally {
      await producer.close().catch(() => {});
      await env.cleanup();
    }
  }, 80_000);

  it('a SIGKILLed consumer that never comes back has its pending entries reclaimed by the survivor', async () => {
    const TOTAL = 30_000;
    const env = await createTestEnv('crash_two');
    const producer = new Producer({ redisUrl: env.config.redisUrl, streamKey: env.config.streamKey });
    const nameA = `${env.name}_a`;
    const nameB = `${env.name}_b`;
    try {
      const [a, b] = await Promise.all([
        startEngine(env, { ...CHILD_SETTINGS, CONSUMER_NAME: nameA }, 'A'),
        startEngine(env, { ...CHILD_SETTINGS, CONSUMER_NAME: nameB }, 'B'),
      ]);
      // ~5 s of flow shared by both processes.
      const produced = produceInBackground(producer, TOTAL, { prefix: env.name, batch: 500, rate: 6_000 });
      await sleep(randomDelay(300, 1200));
      // Kill A at a moment when it holds unacknowledged work: freeze it (SIGSTOP) where it is,
      // count what it holds, and SIGKILL it.
      const holding = await freezeHolding(a, async () => pendingOfProcess(await pendingSummary(env), nameA), { atLeast: 100 });
      const rowsBefore = await eventRows(env);
      const exitA = await a.killHard();
      const killedAt = Date.now();
      expect(exitA.signal).toBe('SIGKILL');
      // What the dead process left pending (B may claim it only after CLAIM_IDLE_MS).
      const orphaned = pendingOfProcess(await pendingSummary(env), nameA);
      console.info(`crash_two: A killed holding ${holding} (${orphaned} left pending), ${rowsBefore} rows, ${produced.done} produced`);
      // A died holding work: without XAUTOCLAIM by B these entries would stay pending forever.
      expect(orphaned).toBeGreaterThan(0);
      expect(rowsBefore).toBeLessThan(TOTAL);

      await produced.finished;
      await waitFor(
        async () => (await eventRows(env)) >= TOTAL && (await pendingSummary(env)).total === 0,
        30_000,
        `${TOTAL} rows and nothing pending`,
      );
      const recoveredMs = Date.now() - killedAt;
      console.info(`crash_two: everything written and acknowledged ${recoveredMs} ms after the kill`);
      expect(a.alive).toBe(false);
      // B reclaimed (at least) everything A had left pending.
      expect(reclaimedInLog(b)).toBeGreaterThanOrEqual(orphaned);
      expect(pendingOfProcess(await pendingSummary(env), nameA)).toBe(0);

      await sleep(1500);
      await expectExactlyOnce(env, produced.ids);

      b.kill('SIGTERM');
      const exitB = await b.waitExit(10_000);
      expect(exitB, `survivor did not stop:\n${b.output}`).toBeDefined();
      expect(exitB!.code).toBe(0);
      expect(b.output).not.toMatch(/unexpected:/);
      await expectExactlyOnce(env, produced.ids);
    } finally {
      await producer.close().catch(() => {});
      await env.cleanup();
    }
  }, 60_000);
});
