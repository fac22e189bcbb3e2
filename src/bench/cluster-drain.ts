/**
 * The drain on a Redis Cluster beside a single Redis (`tributary bench drain --cluster`):
 * the same N events, PARTITIONS=P, drained once on the configured Redis and once on a
 * throwaway 3-master cluster started on this machine (src/bench/cluster.ts), each by a
 * `tributary start` child. Besides the drain figures, each Redis server's CPU over the
 * drain (INFO cpu of every master, read on its own), per event: on one machine the
 * masters share its cores with the engine and Postgres, so the cluster shows where the
 * Redis work goes, not more cores.
 */
import type { TributaryConfig } from '../config/schema.js';
import { registerRedisCluster } from '../redis/cluster.js';
import { startRedisCluster } from './cluster.js';
import { runDrain, type DrainRun } from './drain.js';

export interface ClusterDrainRun {
  /** `single` (the configured Redis) or `cluster` (3 masters). */
  redis: 'single' | 'cluster';
  masters: number;
  settings: DrainRun['settings'];
  figures: DrainRun['figures'];
  /** Each Redis server's CPU over the drain. */
  nodes: NonNullable<DrainRun['masters']>;
}

export interface ClusterDrainFigures {
  count: number;
  partitions: number;
  runs: ClusterDrainRun[];
}

export interface ClusterDrainOptions {
  config: TributaryConfig;
  count: number;
  partitions: number;
  /** Masters of the throwaway cluster (default 3). */
  masters?: number;
  timeoutMs?: number;
  /** Skip the single-Redis run (the cluster only). */
  clusterOnly?: boolean;
  onProgress?: (message: string) => void;
}

export async function runClusterDrain(options: ClusterDrainOptions): Promise<ClusterDrainFigures> {
  const progress = options.onProgress ?? (() => {});
  const overrides = { partitions: options.partitions } as Partial<TributaryConfig>;
  const runs: ClusterDrainRun[] = [];
  if (!options.clusterOnly) {
    progress(`single Redis (${options.config.redisUrl.replace(/\/\/[^@/]*@/, '//')}), PARTITIONS=${options.partitions}`);
    const single = await runDrain({ config: options.config, count: options.count, overrides, timeoutMs: options.timeoutMs, masters: [options.config.redisUrl], onProgress: progress });
    runs.push({ redis: 'single', masters: 1, settings: single.settings, figures: single.figures, nodes: single.masters ?? [] });
  }
  const masters = options.masters ?? 3;
  progress(`starting a throwaway ${masters}-master Redis Cluster`);
  const cluster = await startRedisCluster({ masters });
  try {
    registerRedisCluster(cluster.url);
    progress(`cluster at ${cluster.nodesList}, PARTITIONS=${options.partitions}`);
    const run = await runDrain({
      config: { ...options.config, redisUrl: cluster.url, redisClusterNodes: undefined },
      count: options.count,
      overrides,
      timeoutMs: options.timeoutMs,
      masters: cluster.nodes.map((n) => n.url),
      onProgress: progress,
    });
    runs.push({ redis: 'cluster', masters, settings: run.settings, figures: run.figures, nodes: run.masters ?? [] });
  } finally {
    await cluster.stop();
  }
  return { count: options.count, partitions: options.partitions, runs };
}
