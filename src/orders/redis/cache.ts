/**
 * The lookup cache: products, currency rates and zip codes snapshotted from Postgres into
 * Redis so that enrichment never joins Postgres.
 *
 * Versioned, so that a batch never mixes two snapshots and never sees half of one:
 * `publish` allocates a new version (INCR `<p>:cache:seq`), writes it into fresh hashes
 * `<p>:cache:<v>:products|currencies|zips` (pipelined, in chunks, each with a TTL), writes
 * `<p>:cache:<v>:meta` last, and only then points `<p>:cache:version` at it (a Lua script:
 * never moves the pointer back to an older version, and shortens the replaced versions'
 * TTL). `lookup` reads the pointer and HMGETs that version's hashes in one Lua script,
 * so every result comes whole from one version.
 *
 * Stale data evicts itself: a version not replaced within `ttlMs` expires, and lookups then
 * fail with TRIB_ERR_ORDERS_CACHE_EXPIRED rather than enrich from nothing.
 */
import { TributaryError } from '../../errors.js';
import { RedisScript, send, type RedisConnection } from '../../redis/client.js';
import type { Currency, LookupResult, Product, ReferenceData, ZipCode } from '../types.js';
import { CACHE_TABLES, orderKeys, type CacheTable, type OrderKeys } from './keys.js';
import type { RawReply } from '../../redis/commands.js';
import { checkInteger, chunks, toArray, toNumber } from './reply.js';

const SWAP = new RedisScript('orders-cache-swap');
const LOOKUP = new RedisScript('orders-cache-lookup');

export interface LookupCacheOptions {
  /** The connection (required). */
  client: RedisConnection;
  /** Key prefix; keys are `<prefix>:cache:...` (default `orders`). */
  prefix?: string;
  /**
   * TTL of a published version's keys, ms (default 86,400,000: 24 h). Re-publish more
   * often than this: an expired version makes lookups fail (TRIB_ERR_ORDERS_CACHE_EXPIRED).
   */
  ttlMs?: number;
  /**
   * TTL left to a version once replaced, ms (default 60,000). Lookups are atomic and never
   * need an old version; this only lets outside readers finish. Never lengthens a TTL.
   */
  retiredTtlMs?: number;
  /** Fields per HSET while publishing (default 1000). */
  chunkSize?: number;
  /** HSET commands per pipelined round trip while publishing (default 50). */
  pipelineDepth?: number;
}

const DEFAULTS = { ttlMs: 86_400_000, retiredTtlMs: 60_000, chunkSize: 1000, pipelineDepth: 50 };

export interface CacheSizes {
  products: number;
  currencies: number;
  zipCodes: number;
}

export interface PublishResult {
  /** The version written. */
  version: number;
  /** The version current after the publish: `version`, unless a newer one (published concurrently) already was. */
  current: number;
  /** The version it replaced (0 when it is the first, or when it did not become current). */
  replaced: number;
  /** False when a newer version was current already (ours was retired, not made current). */
  swapped: boolean;
  /** Distinct keys written per table. */
  sizes: CacheSizes;
  /** Wall time of the publish, ms. */
  durationMs: number;
}

export interface CacheInfo {
  /** The current version, or null when none was ever published. */
  version: number | null;
  /** When the current version was published (ms since epoch), or null. */
  publishedAt: number | null;
  /** Entries per table of the current version (HLEN), or null. */
  sizes: CacheSizes | null;
  /** ms until the current version expires (PTTL of its meta hash), or null. */
  ttlMs: number | null;
  /** True when a version is current but its keys have expired. */
  expired: boolean;
}

/** Checks the fields lookups depend on; throws TRIB_ERR_ORDERS_CACHE_INVALID naming the first bad entry. */
export function validateReferenceData(data: ReferenceData): void {
  const bad = (what: string): never => {
    throw new TributaryError('TRIB_ERR_ORDERS_CACHE_INVALID', [what]);
  };
  const text = (v: unknown) => typeof v === 'string' && v.length > 0;
  if (!data || !Array.isArray(data.products) || !Array.isArray(data.currencies) || !Array.isArray(data.zipCodes)) {
    bad('products, currencies and zipCodes must be arrays');
  }
  data.products.forEach((p, i) => {
    if (!text(p?.product_id)) bad(`products[${i}].product_id must be a non-empty string`);
    if (typeof p.unit_price !== 'number' || !Number.isFinite(p.unit_price) || p.unit_price < 0) bad(`products[${i}] (${p.product_id}).unit_price must be a finite number >= 0`);
  });
  data.currencies.forEach((c, i) => {
    if (!text(c?.code)) bad(`currencies[${i}].code must be a non-empty string`);
    if (typeof c.rate_to_usd !== 'number' || !Number.isFinite(c.rate_to_usd) || c.rate_to_usd <= 0) bad(`currencies[${i}] (${c.code}).rate_to_usd must be a finite number > 0`);
  });
  data.zipCodes.forEach((z, i) => {
    if (!text(z?.zip_code)) bad(`zipCodes[${i}].zip_code must be a non-empty string`);
  });
}

export class LookupCache {
  readonly keys: OrderKeys;
  private readonly client: RedisConnection;
  private readonly options: Required<Omit<LookupCacheOptions, 'client' | 'prefix'>>;
  /** The version the last lookup found current: the one the next lookup expects. */
  private lastVersion: number | undefined;

  constructor(options: LookupCacheOptions) {
    if (!options?.client) throw new RangeError('LookupCache client is required');
    this.client = options.client;
    this.keys = orderKeys(options.prefix);
    this.options = {
      ttlMs: checkInteger('LookupCache ttlMs', options.ttlMs ?? DEFAULTS.ttlMs, 1000),
      retiredTtlMs: checkInteger('LookupCache retiredTtlMs', options.retiredTtlMs ?? DEFAULTS.retiredTtlMs, 1),
      chunkSize: checkInteger('LookupCache chunkSize', options.chunkSize ?? DEFAULTS.chunkSize, 1, 100_000),
      pipelineDepth: checkInteger('LookupCache pipelineDepth', options.pipelineDepth ?? DEFAULTS.pipelineDepth, 1, 10_000),
    };
  }

  /**
   * Writes `data` as a new version and makes it current once complete (see the module
   * comment). Concurrent lookups see the old version until the swap, the new one after.
   */
  async publish(data: ReferenceData): Promise<PublishResult> {
    const started = performance.now();
    validateReferenceData(data);
    const tables: Record<CacheTable, Map<string, string>> = {
      products: new Map(data.products.map((p) => [p.product_id, JSON.stringify(p)])),
      currencies: new Map(data.currencies.map((c) => [c.code, JSON.stringify({ code: c.code, rate_to_usd: c.rate_to_usd })])),
      zips: new Map(data.zipCodes.map((z) => [z.zip_code, JSON.stringify(z)])),
    };
    const version = toNumber(await send(this.client, ['INCR', this.keys.cacheSeq]));
    const ttl = String(this.options.ttlMs);
    const commands: string[][] = [];
    for (const [table, entries] of Object.entries(tables) as [CacheTable, Map<string, string>][]) {
      const key = this.keys.cache(version, table);
      for (const chunk of chunks([...entries], this.options.chunkSize)) {
        commands.push(['HSET', key, ...chunk.flat()], ['PEXPIRE', key, ttl]);
      }
    }
    for (const wave of chunks(commands, this.options.pipelineDepth * 2)) {
      const multi = this.client.multi();
      for (const c of wave) multi.addCommand(c);
      await multi.execAsPipeline();
    }
    const sizes: CacheSizes = { products: tables.products.size, currencies: tables.currencies.size, zipCodes: tables.zips.size };
    const meta = this.keys.cacheMeta(version);
    const multi = this.client.multi();
    const fields = { version, published_at: Date.now(), products: sizes.products, currencies: sizes.currencies, zips: sizes.zipCodes };
    multi.addCommand(['HSET', meta, ...Object.entries(fields).flatMap(([f, v]) => [f, String(v)])]);
    multi.addCommand(['PEXPIRE', meta, ttl]);
    await multi.exec();
    const reply = await this.swap(version, meta);
    const status = toNumber(reply[0]);
    if (status < 0) {
      // The meta hash vanished between its write and the swap (a FLUSH, say): nothing was made current.
      throw new TributaryError('TRIB_ERR_ORDERS_CACHE_EXPIRED', [this.keys.prefix, version]);
    }
    const swapped = status === 1;
    const other = toNumber(reply[1]);
    return { version, current: swapped ? version : other, replaced: swapped ? other : 0, swapped, sizes, durationMs: performance.now() - started };
  }

  /**
   * Runs the swap script with every key it may touch in KEYS (a cluster routes by them):
   * the versions it retires are known from the current one, read first, and the script
   * refuses (-3) when that changed meanwhile; then it is read again.
   */
  private async swap(version: number, meta: string): Promise<RawReply[]> {
    let current = toNumber(await send(this.client, ['GET', this.keys.cacheVersion]));
    for (;;) {
      const keysOf = (v: number) => [...CACHE_TABLES.map((t) => this.keys.cache(v, t)), this.keys.cacheMeta(v)];
      const first = Math.max(1, current, version - 100);
      const retired: string[] = [];
      for (let v = first; v < version; v++) retired.push(...keysOf(v));
      const reply = toArray(
        await SWAP.run(
          this.client,
          [this.keys.cacheVersion, meta, ...keysOf(version), ...retired],
          [String(version), String(this.options.retiredTtlMs), String(current), String(first)],
        ),
      );
      if (toNumber(reply[0]) !== -3) return reply;
      current = toNumber(reply[1]);
    }
  }

  /**
   * Looks up one batch's keys in the current version, in one round trip (a Lua script):
   * all entries come from one complete version. A key the version lacks is absent from its
   * map. Throws TRIB_ERR_ORDERS_CACHE_EMPTY before the first publish and
   * TRIB_ERR_ORDERS_CACHE_EXPIRED when the current version has expired.
   */
  async lookup(productIds: Iterable<string>, currencies: Iterable<string>, zips: Iterable<string>): Promise<LookupResult> {
    const p = [...new Set(productIds)];
    const c = [...new Set(currencies)];
    const z = [...new Set(zips)];
    // The script reads the keys of the version it is told (all in KEYS: a cluster routes by
    // them); the one current at the last lookup, else read now. When another is current it
    // says which (-3), and is asked again for that one.
    let expected = this.lastVersion ?? toNumber(await send(this.client, ['GET', this.keys.cacheVersion]));
    let reply: RawReply[];
    for (;;) {
      const keys = [this.keys.cacheVersion, this.keys.cacheMeta(expected), ...CACHE_TABLES.map((t) => this.keys.cache(expected, t))];
      reply = toArray(await LOOKUP.run(this.client, keys, [String(expected), String(p.length), String(c.length), ...p, ...c, ...z]));
      if (toNumber(reply[0]) !== -3) break;
      expected = toNumber(reply[1]);
    }
    const version = toNumber(reply[0]);
    if (version > 0) this.lastVersion = version;
    if (version === -1) throw new TributaryError('TRIB_ERR_ORDERS_CACHE_EMPTY', [this.keys.prefix]);
    if (version === -2) throw new TributaryError('TRIB_ERR_ORDERS_CACHE_EXPIRED', [this.keys.prefix, toNumber(reply[1])]);
    return {
      version,
      products: toMap<Product>(p, reply[1]),
      currencies: toMap<Currency>(c, reply[2]),
      zipCodes: toMap<ZipCode>(z, reply[3]),
    };
  }

  /** The current version, when it was published, its sizes and remaining TTL (one round trip after the version read). */
  async info(): Promise<CacheInfo> {
    const current = await send(this.client, ['GET', this.keys.cacheVersion]);
    if (current === null) return { version: null, publishedAt: null, sizes: null, ttlMs: null, expired: false };
    const version = toNumber(current);
    const multi = this.client.multi();
    multi.addCommand(['HGET', this.keys.cacheMeta(version), 'published_at']);
    multi.addCommand(['PTTL', this.keys.cacheMeta(version)]);
    for (const table of ['products', 'currencies', 'zips'] as const) multi.addCommand(['HLEN', this.keys.cache(version, table)]);
    const [publishedAt, ttl, products, currencies, zips] = (await multi.execAsPipeline()) as unknown as (string | number | null)[];
    if (publishedAt === null || publishedAt === undefined) return { version, publishedAt: null, sizes: null, ttlMs: null, expired: true };
    return {
      version,
      publishedAt: toNumber(publishedAt),
      sizes: { products: toNumber(products), currencies: toNumber(currencies), zipCodes: toNumber(zips) },
      ttlMs: toNumber(ttl) >= 0 ? toNumber(ttl) : null,
      expired: false,
    };
  }
}

function toMap<T>(keys: readonly string[], raw: unknown): Map<string, T> {
  const values = toArray(raw as never);
  const out = new Map<string, T>();
  keys.forEach((key, i) => {
    const v = values[i];
    if (v !== null && v !== undefined) out.set(key, JSON.parse(String(v)) as T);
  });
  return out;
}
