import { describe, expect, it } from 'vitest';
import { isTributaryError } from '../../src/errors.js';
import type { RedisConnection } from '../../src/redis/client.js';
import {
  Backpressure,
  DedupWindow,
  escapeGlob,
  keepFirstUnseen,
  liveBuckets,
  LookupCache,
  OrderQueue,
  orderKeys,
  parsePromotedSignal,
  RevenueWindow,
  sumMemberCents,
  toCents,
  validateReferenceData,
  ViewRefresher,
  type RefreshOutcome,
} from '../../src/orders/redis/index.js';
import { checkWorkerName } from '../../src/orders/redis/keys.js';

const client = {} as RedisConnection; // constructors never touch it

function codeOfSync(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    if (isTributaryError(err)) return `${err.code}: ${err.message}`;
    throw err;
  }
  return 'returned';
}

describe('orderKeys', () => {
  it('builds every key from the prefix', () => {
    const k = orderKeys();
    expect([k.queue, k.depth, k.workers, k.processing('w-1'), k.dedup(5_666_666), k.cacheSeq, k.cacheVersion]).toEqual([
      'orders:queue',
      'orders:depth',
      'orders:workers',
      'orders:processing:w-1',
      'orders:dedup:5666666',
      'orders:cache:seq',
      'orders:cache:version',
    ]);
    expect([k.cache(3, 'products'), k.cache(3, 'currencies'), k.cache(3, 'zips'), k.cacheMeta(3), k.window, k.signals]).toEqual([
      'orders:cache:3:products',
      'orders:cache:3:currencies',
      'orders:cache:3:zips',
      'orders:cache:3:meta',
      'orders:window',
      'orders:signals',
    ]);
    expect(k.processingPrefix + 'w-1').toBe(k.processing('w-1'));
    expect(k.cacheVersionPrefix + '3:products').toBe(k.cache(3, 'products'));
  });

  it('escapes glob characters of the prefix in SCAN patterns', () => {
    expect(escapeGlob('a*b?[c]\\d')).toBe('a\\*b\\?\\[c\\]\\\\d');
    expect(orderKeys('{t*1}').processingPattern).toBe('{t\\*1}:processing:*');
    expect(orderKeys('{orders}').queue).toBe('{orders}:queue');
    expect(() => orderKeys('')).toThrow(/prefix/);
  });

  it('checks worker names', () => {
    expect(checkWorkerName('host-1:worker:3')).toBe('host-1:worker:3');
    expect(() => checkWorkerName('')).toThrow(/worker name/);
    expect(() => checkWorkerName('a\nb')).toThrow(/worker name/);
  });
});

describe('dedup window arithmetic', () => {
  it('reads every bucket that can hold an id marked less than a window ago', () => {
    // window 60 s, buckets of 10 s, now = 1000 s + 5 s into bucket 100
    expect(liveBuckets(1_005_000, 60, 10)).toEqual([94, 95, 96, 97, 98, 99, 100]);
    // exactly on a boundary
    expect(liveBuckets(1_000_000, 60, 10)).toEqual([94, 95, 96, 97, 98, 99, 100]);
    expect(liveBuckets(1_000_000, 3600, 300)).toHaveLength(13);
    expect(liveBuckets(1_000_000, 1, 1)).toEqual([999, 1000]);
  });

  it('keeps the first of each id, unless seen', () => {
    expect(keepFirstUnseen(['a', 'b', 'a', 'c', 'b', 'd'], new Set(['c']))).toEqual([true, true, false, false, false, true]);
    expect(keepFirstUnseen([], new Set())).toEqual([]);
  });
});

describe('revenue members', () => {
  it('rounds USD to cents despite binary fractions, and sums members', () => {
    expect(toCents(10.005)).toBe(1001);
    expect(toCents(0.1 + 0.2)).toBe(30);
    expect(toCents(19.99)).toBe(1999);
    expect(sumMemberCents(['o-1:1001', 'with:colons:250', 'junk:x', 'o-2:0'])).toBe(1251);
  });
});

describe('signal parsing', () => {
  it('accepts a promoted signal and rejects anything else with TRIB_ERR_ORDERS_SIGNAL_INVALID', () => {
    const ok = { type: 'promoted', batchId: 'b', promoted: 3, duplicates: 0, rejected: 1, at: 5 };
    expect(parsePromotedSignal(JSON.stringify(ok))).toEqual(ok);
    expect(parsePromotedSignal(JSON.stringify({ ...ok, worker: 'w', extra: 1 }))).toEqual({ ...ok, worker: 'w' });
    expect(codeOfSync(() => parsePromotedSignal('{', 'p:signals'))).toBe('TRIB_ERR_ORDERS_SIGNAL_INVALID: ignored a malformed message on p:signals: not JSON: {');
    expect(codeOfSync(() => parsePromotedSignal('null'))).toMatch(/type is not "promoted"/);
    expect(codeOfSync(() => parsePromotedSignal(JSON.stringify({ ...ok, promoted: -1 })))).toMatch(/missing or mistyped/);
    expect(codeOfSync(() => parsePromotedSignal(JSON.stringify({ ...ok, batchId: 7 })))).toMatch(/missing or mistyped/);
  });
});

describe('reference data validation', () => {
  const good = {
    products: [{ product_id: 'P1', sku: 's', name: 'n', category: 'c', unit_price: 0 }],
    currencies: [{ code: 'USD', rate_to_usd: 1 }],
    zipCodes: [{ zip_code: '10001', city: 'c', region: 'r', shipping_zone: 'z' }],
  };

  it('accepts good data and names the first bad entry', () => {
    expect(() => validateReferenceData(good)).not.toThrow();
    expect(() => validateReferenceData({ products: [], currencies: [], zipCodes: [] })).not.toThrow();
    expect(codeOfSync(() => validateReferenceData({ ...good, products: [{ ...good.products[0]!, product_id: '' }] }))).toMatch(
      /^TRIB_ERR_ORDERS_CACHE_INVALID: .*products\[0\]\.product_id/,
    );
    expect(codeOfSync(() => validateReferenceData({ ...good, products: [{ ...good.products[0]!, unit_price: -1 }] }))).toMatch(/unit_price/);
    expect(codeOfSync(() => validateReferenceData({ ...good, currencies: [{ code: 'EUR', rate_to_usd: Infinity }] }))).toMatch(/currencies\[0\] \(EUR\)/);
    expect(codeOfSync(() => validateReferenceData({ ...good, zipCodes: [{ ...good.zipCodes[0]!, zip_code: '' }] }))).toMatch(/zipCodes\[0\]/);
    expect(codeOfSync(() => validateReferenceData({ products: good.products } as never))).toMatch(/must be arrays/);
  });
});

describe('options are checked in constructors, naming the option', () => {
  it('rejects bad values', () => {
    expect(() => new OrderQueue({} as never)).toThrow(/OrderQueue client/);
    expect(() => new DedupWindow({ client, bucketSeconds: 0 })).toThrow(/bucketSeconds/);
    expect(() => new LookupCache({ client, retiredTtlMs: 0 })).toThrow(/retiredTtlMs/);
    expect(() => new LookupCache({ client, chunkSize: 0 })).toThrow(/chunkSize/);
    expect(() => new RevenueWindow({ client, windowMs: 0 })).toThrow(/windowMs/);
    expect(() => new RevenueWindow({ client, maxScan: 1.5 })).toThrow(/maxScan/);
    expect(() => new Backpressure(new OrderQueue({ client }), { pollMs: 0 })).toThrow(/pollMs/);
    expect(() => new ViewRefresher({} as never)).toThrow(/refresh/);
  });

  it('applies the documented defaults', () => {
    const dedup = new DedupWindow({ client });
    expect([dedup.windowSeconds, dedup.bucketSeconds, dedup.keys.prefix]).toEqual([3600, 300, 'orders']);
    expect(new RevenueWindow({ client }).windowMs).toBe(900_000);
  });
});

/** A refresh function whose runs the test finishes by hand. */
function manualRefresh() {
  const runs: Array<{ resolve: (v: number) => void; reject: (e: Error) => void }> = [];
  const refresh = () =>
    new Promise<number>((resolve, reject) => {
      runs.push({ resolve, reject });
    });
  return { runs, refresh };
}

const tick = () => new Promise((r) => setImmediate(r));

describe('ViewRefresher coalescing', () => {
  it('runs at most one refresh and queues at most one; requests during a run join the queued one', async () => {
    const { runs, refresh } = manualRefresh();
    const refresher = new ViewRefresher({ refresh });
    const events: string[] = [];
    refresher.on('refreshed', (o) => events.push(`refreshed:${o.result}:${o.requests}`));

    const first = refresher.request();
    expect(runs).toHaveLength(1);
    expect(refresher.isRunning).toBe(true);
    const second = refresher.request();
    const third = refresher.request();
    const fourth = refresher.request();
    expect(runs).toHaveLength(1); // still one running
    expect(refresher.isQueued).toBe(true);
    expect(second).toBe(third); // coalesced into the same queued refresh
    expect(third).toBe(fourth);

    runs[0]!.resolve(1);
    expect((await first).status).toBe('refreshed');
    expect(runs).toHaveLength(2); // the queued one started as the first finished
    expect(refresher.isQueued).toBe(false);
    runs[1]!.resolve(2);
    const outcome = await second;
    expect(outcome).toMatchObject({ status: 'refreshed', result: 2, requests: 3 });
    expect(outcome.durationMs).toBeGreaterThanOrEqual(0);
    expect(events).toEqual(['refreshed:1:1', 'refreshed:2:3']);
    expect(refresher.stats()).toMatchObject({ requests: 4, refreshes: 2, coalesced: 2, failures: 0, running: false, queued: false });

    // Idle again: a new request starts at once.
    const fifth = refresher.request();
    expect(runs).toHaveLength(3);
    runs[2]!.resolve(3);
    expect((await fifth).result).toBe(3);
  });

  it('records and emits a failure without retrying; the next request refreshes again', async () => {
    let calls = 0;
    const refresher = new ViewRefresher<number>({
      refresh: async () => {
        calls++;
        if (calls === 1) throw new Error('view locked');
        if (calls === 2) throw 'not an error object';
        return calls;
      },
    });
    const failed: RefreshOutcome<number>[] = [];
    refresher.on('failed', (o) => failed.push(o));
    const o1 = await refresher.request();
    expect(o1).toMatchObject({ status: 'failed', requests: 1 });
    expect(o1.error?.message).toBe('view locked');
    await tick();
    expect(calls).toBe(1);
    expect((await refresher.request()).error?.message).toBe('not an error object');
    expect(await refresher.request()).toMatchObject({ status: 'refreshed', result: 3 });
    expect(failed).toHaveLength(2);
    expect(refresher.stats()).toMatchObject({ refreshes: 3, failures: 2 });
    expect(refresher.stats().last?.status).toBe('refreshed');
  });

  it('a refresh that throws synchronously is a failure too', async () => {
    const refresher = new ViewRefresher({
      refresh: () => {
        throw new Error('sync');
      },
    });
    expect((await refresher.request()).error?.message).toBe('sync');
    expect(refresher.isRunning).toBe(false);
  });

  it('a listener that throws becomes an error event, not a broken refresher', async () => {
    const refresher = new ViewRefresher({ refresh: async () => 1 });
    const errors: Error[] = [];
    refresher.on('error', (e) => errors.push(e));
    refresher.on('refreshed', () => {
      throw new Error('listener bug');
    });
    expect((await refresher.request()).status).toBe('refreshed');
    expect(errors.map((e) => e.message)).toEqual(['listener bug']);
    expect((await refresher.request()).status).toBe('refreshed');
  });

  it('close cancels the queued refresh, waits for the running one, and cancels later requests', async () => {
    const { runs, refresh } = manualRefresh();
    const refresher = new ViewRefresher({ refresh });
    const running = refresher.request();
    const queued = refresher.request();
    let closed = false;
    const closing = refresher.close().then(() => (closed = true));
    expect(await queued).toMatchObject({ status: 'cancelled', requests: 1, startedAt: null });
    await tick();
    expect(closed).toBe(false); // still waiting for the running refresh
    runs[0]!.resolve(7);
    await closing;
    expect((await running).result).toBe(7);
    expect(runs).toHaveLength(1); // the queued one never ran
    expect((await refresher.request()).status).toBe('cancelled');
    await refresher.close();
  });
});
