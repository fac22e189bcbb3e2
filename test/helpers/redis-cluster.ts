/**
 * A real Redis Cluster for tests: src/bench/cluster.ts (3 masters, and replicas when
 * asked, from the system's `redis-server`), the same code `tributary bench drain
 * --cluster` starts.
 *
 *   let cluster: RedisClusterHandle;
 *   beforeAll(async () => (cluster = await startRedisCluster()));
 *   afterAll(() => cluster?.stop());
 */
export { startRedisCluster, type RedisClusterHandle, type RedisClusterNode, type RedisClusterOptions } from '../../src/bench/cluster.js';
