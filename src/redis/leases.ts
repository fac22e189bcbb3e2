/**
 * Partition leases (PARTITIONS > 1): which process reads which partition, in Redis.
 *
 * A lease is one key per partition and group (partitionLeaseKey), `<token>/<owner>` with
 * a PX expiry, renewed by its owner. The token comes from the partition's fencing counter
 * (partitionFenceKey), raised at every lease taken: the newest owner always holds the
 * largest token, and every command an owner sends about its partition (read, ack, claim,
 * dead letter: the partition-*.lua scripts) first checks the lease is still exactly its
 * own, in the same script, so a fenced-out owner can neither read nor acknowledge.
 * Lease, counter and partition share the partition's hash tag: each script touches one
 * slot, as a Redis Cluster requires.
 *
 * Membership: every process beats into one sorted set (partitionMembersKey) by the Redis
 * clock; a member silent for a lease's life is gone. Each process computes the same
 * assignment from the live members (assignPartitions) and takes or gives up its share.
 */
import { RedisScript, type RedisConnection } from './client.js';
import { leaseValue, parseLease, partitionFenceKey, partitionLeaseKey, partitionMembersKey } from './partitions.js';

const ACQUIRE = new RedisScript('partition-lease-acquire');
const RENEW = new RedisScript('partition-lease-renew');
const RELEASE = new RedisScript('partition-lease-release');
const MEMBERS = new RedisScript('partition-members');

/** A lease this process holds. */
export interface Lease {
  partition: number;
  token: number;
  /** As stored, `<token>/<owner>`: what the fenced scripts compare. */
  value: string;
}

export type AcquireResult = { acquired: true; lease: Lease } | { acquired: false; holder: { token: number; owner: string } | undefined };

export interface PartitionLeasesOptions {
  streamKey: string;
  group: string;
  partitions: number;
  /** This process's id (its consumer name): unique among the live processes. */
  owner: string;
  /** A lease's life, ms: renewed well before (see PartitionedStreamSource). */
  leaseMs: number;
}

/** The lease and membership commands of one process on one partitioned stream and group. */
export class PartitionLeases {
  constructor(
    private readonly redis: RedisConnection,
    readonly options: PartitionLeasesOptions,
  ) {}

  leaseKey(i: number): string {
    const o = this.options;
    return partitionLeaseKey(o.streamKey, o.group, i, o.partitions);
  }

  /** Takes partition `i`'s lease when it is free (or expired, or a previous run's of this same owner), with a new token. */
  async acquire(i: number): Promise<AcquireResult> {
    const o = this.options;
    const reply = (await ACQUIRE.run(this.redis, [this.leaseKey(i), partitionFenceKey(o.streamKey, o.group, i, o.partitions)], [o.owner, String(o.leaseMs)])) as [number, string | number];
    if (Number(reply[0]) === 1) {
      const token = Number(reply[1]);
      return { acquired: true, lease: { partition: i, token, value: leaseValue(token, o.owner) } };
    }
    return { acquired: false, holder: parseLease(String(reply[1])) };
  }

  /** Extends the lease by a lease's life; false when it is no longer ours (expired, or another owner's). */
  async renew(lease: Lease): Promise<boolean> {
    return Number(await RENEW.run(this.redis, [this.leaseKey(lease.partition)], [lease.value, String(this.options.leaseMs)])) === 1;
  }

  /** Gives the lease up; false when it was no longer ours (nothing is touched then). */
  async release(lease: Lease): Promise<boolean> {
    return Number(await RELEASE.run(this.redis, [this.leaseKey(lease.partition)], [lease.value])) === 1;
  }

  /** The holder of partition `i`'s lease now, if any. */
  async holder(i: number): Promise<{ token: number; owner: string } | undefined> {
    const v = await this.redis.sendCommand(['GET', this.leaseKey(i)]);
    return typeof v === 'string' ? parseLease(v) : undefined;
  }

  /** Records this process's heartbeat (or its leaving) and returns the live members, sorted. */
  async heartbeat(leave = false): Promise<string[]> {
    const o = this.options;
    const reply = await MEMBERS.run(this.redis, [partitionMembersKey(o.streamKey, o.group)], [o.owner, String(o.leaseMs), leave ? '1' : '0']);
    return (Array.isArray(reply) ? reply : []).map(String);
  }
}
