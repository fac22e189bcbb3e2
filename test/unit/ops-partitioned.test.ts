import { describe, expect, it } from 'vitest';
import { resolveConfig } from '../../src/config/index.js';
import { isTributaryError } from '../../src/errors.js';
import { parsePartitionOption, partitionScopes } from '../../src/ops/partitioned.js';

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    return isTributaryError(err) ? `${err.code}: ${err.message}` : `uncoded: ${String(err)}`;
  }
  return undefined;
}

describe('operating a partitioned stream (pure parts)', () => {
  it('--partition: absent, or an integer 0..N-1; anything else is coded and says the range', () => {
    expect(parsePartitionOption(undefined, 4)).toBeUndefined();
    expect(parsePartitionOption('0', 4)).toBe(0);
    expect(parsePartitionOption(' 3 ', 4)).toBe(3);
    expect(parsePartitionOption('0', 1)).toBe(0);
    for (const bad of ['4', '-1', '1.5', 'x', '', '1e1']) {
      expect(codeOf(() => parsePartitionOption(bad, 4))).toMatch(/^TRIB_ERR_CONFIG_INVALID: .*--partition.*0 to 3.*PARTITIONS=4/);
    }
    expect(codeOf(() => parsePartitionOption('1', 1))).toMatch(/0 to 0/);
  });

  it('scopes: each partition as a stream of its own (key, dead-letter stream), or the plain stream as configured', () => {
    const config = resolveConfig({ envFile: false, overrides: { streamKey: 'ev', dlqStream: 'ev:dead', partitions: 3 } });
    expect(partitionScopes(config).map((s) => [s.partition, s.config.streamKey, s.config.dlqStream, s.config.partitions])).toEqual([
      [0, 'ev:p0', '{ev:p0}:dead', 1],
      [1, 'ev:p1', '{ev:p1}:dead', 1],
      [2, 'ev:p2', '{ev:p2}:dead', 1],
    ]);
    expect(partitionScopes(config, 1).map((s) => s.config.streamKey)).toEqual(['ev:p1']);
    const plain = resolveConfig({ envFile: false, overrides: { streamKey: 'ev', dlqStream: 'ev:dead' } });
    expect(partitionScopes(plain)).toEqual([{ partition: 0, config: plain }]);
  });
});

describe('cluster configuration of a partitioned stream', () => {
  it('DLQ_STREAM is not checked against the stream\'s slot when PARTITIONS > 1 (each partition has its own dead-letter stream)', async () => {
    const { clusterConfig, registerRedisCluster } = await import('../../src/redis/cluster.js');
    const url = 'redis://127.0.0.1:1/15';
    registerRedisCluster(url);
    const base = { redisUrl: url, streamKey: 'ev', dlqStream: 'elsewhere:dead', ordersPrefix: 'orders' };
    expect(clusterConfig({ ...base, partitions: 4 }).dlqStream).toBe('elsewhere:dead');
    expect(codeOf(() => clusterConfig({ ...base, partitions: 1 }))).toMatch(/^TRIB_ERR_CONFIG_INVALID: .*DLQ_STREAM/);
  });
});
