import type { RawReply } from '../redis/commands.js';
import { encodeCommand, RespError, type RespPipe } from '../redis/pipe.js';
import { partitionStreamKeys } from '../redis/partitions.js';
import { parseXinfoGroups } from '../redis/xinfo.js';

/** A stream the ingest API writes, and the consumer groups whose lag holds it back. */
export interface IngestStream {
  stream: string;
  /** Groups that drain it; the most lagging one decides. None: the stream's length decides. */
  groups: readonly string[];
  /** PARTITIONS of this stream (default 1): events go to `<stream>:p<i>` by partitionKey. */
  partitions?: number;
  /** PARTITION_KEY: `event_id` (default) or a top-level payload field. */
  partitionKey?: string;
}

/** How far behind the slowest group of a stream is. */
export interface Backlog {
  /** Entries not yet delivered to the group (see BacklogWatcher). */
  lag: number;
  /** The group it was measured for (null: no group given, the stream length). */
  group: string | null;
}

/**
 * The backlog that gates ingest (INGEST_MAX_LAG), measured at most once per `everyMs`
 * per stream (requests in between share the last answer, or the probe in progress), so
 * a flood of requests does not become a flood of XINFO calls.
 *
 * What is measured, precisely: XINFO GROUPS' `lag` of each group — entries added to the
 * stream and not yet delivered to the group (read by none of its consumers). Entries
 * delivered and not yet acknowledged (pending) are not counted: they are bounded by the
 * engine's MAX_IN_FLIGHT. Where Redis cannot tell the lag (null: entries deleted with
 * XDEL inside the group's unread range), or the group does not exist yet, the stream's
 * length (XLEN) stands in for it: an upper bound. The largest value over the groups wins.
 */
export class BacklogWatcher {
  private readonly cache = new Map<string, { at: number; value: Backlog }>();
  private readonly running = new Map<string, Promise<Backlog>>();

  constructor(
    private readonly pipe: RespPipe,
    private readonly everyMs = 250,
  ) {}

  /** Probes run so far (for tests and metrics). */
  probes = 0;

  backlog(target: IngestStream): Promise<Backlog> {
    const cached = this.cache.get(target.stream);
    if (cached && performance.now() - cached.at < this.everyMs) return Promise.resolve(cached.value);
    let running = this.running.get(target.stream);
    if (!running) {
      running = this.measure(target)
        .then((value) => {
          this.cache.set(target.stream, { at: performance.now(), value });
          return value;
        })
        .finally(() => this.running.delete(target.stream));
      this.running.set(target.stream, running);
    }
    return running;
  }

  /** A partitioned stream (partitions > 1): each group's lag summed over the partitions. */
  private async measure(target: IngestStream): Promise<Backlog> {
    this.probes++;
    const keys = partitionStreamKeys(target.stream, target.partitions ?? 1);
    const replies = await this.pipe.pipeline(keys.map((k) => encodeCommand(['XINFO', 'GROUPS', k]) + encodeCommand(['XLEN', k])).join(''), keys.length * 2);
    const lags = new Map<string, number>(target.groups.map((g) => [g, 0]));
    let total = 0;
    for (let i = 0; i < keys.length; i++) {
      const [groupsReply, lengthReply] = [replies[i * 2], replies[i * 2 + 1]];
      if (lengthReply instanceof RespError) throw lengthReply;
      const length = Number(lengthReply ?? 0);
      total += length;
      // A stream that does not exist yet: XINFO answers "ERR no such key"; nothing is behind.
      const groups = groupsReply instanceof RespError ? [] : parseXinfoGroups(groupsReply as RawReply);
      for (const name of target.groups) lags.set(name, lags.get(name)! + (groups.find((g) => g.name === name)?.lag ?? length));
    }
    if (target.groups.length === 0) return { lag: total, group: null };
    let worst: Backlog = { lag: -1, group: null };
    for (const [name, lag] of lags) if (lag > worst.lag) worst = { lag, group: name };
    return worst;
  }
}
