import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import os from 'node:os';
import type { PgPool } from '../postgres/pool.js';
import { send, type RedisConnection } from '../redis/client.js';
import type { CpuFigures, MachineFacts } from './result.js';

/**
 * Facts about the machine and servers a bench ran on, and best-effort CPU
 * accounting from /proc (Linux). Anything that cannot be read is null, never an error.
 */
export async function collectMachine(redis: RedisConnection, pool: PgPool): Promise<MachineFacts> {
  const info = String(await send(redis, ['INFO', 'server']));
  const pg = (await pool.query<{ server_version: string }>('SHOW server_version')).rows[0]?.server_version;
  return hostMachine({ redis: /redis_version:(\S+)/.exec(info)?.[1], postgres: pg });
}

/** The host's facts, for a bench that talks to no server (the servers' versions as given, else undefined). */
export function hostMachine(servers: { redis?: string | undefined; postgres?: string | undefined } = {}): MachineFacts {
  return {
    cores: os.cpus().length,
    cpu: os.cpus()[0]?.model,
    memoryGiB: Math.round(os.totalmem() / 2 ** 30),
    node: process.version,
    redis: servers.redis,
    postgres: servers.postgres,
    os: `${os.platform()} ${os.release()}`,
    loadAvg1: Number(os.loadavg()[0]!.toFixed(2)),
  };
}

let clockTicks: number | undefined;
function ticksPerSecond(): number {
  if (clockTicks === undefined) {
    try {
      clockTicks = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      clockTicks = 100;
    }
  }
  return clockTicks;
}

/** utime + stime of a /proc/<pid>/stat line, in clock ticks (the command name may hold spaces). */
export function statCpuTicks(statLine: string): number | null {
  const rest = statLine.slice(statLine.lastIndexOf(')') + 2).split(' ');
  // rest[0] is field 3 (state): utime and stime are fields 14 and 15.
  const utime = Number(rest[11]);
  const stime = Number(rest[12]);
  return Number.isFinite(utime) && Number.isFinite(stime) ? utime + stime : null;
}

/** CPU seconds (user + system) a process has used so far. */
export function processCpuSecs(pid: number): number | null {
  try {
    const ticks = statCpuTicks(readFileSync(`/proc/${pid}/stat`, 'utf8'));
    return ticks === null ? null : ticks / ticksPerSecond();
  } catch {
    return null;
  }
}

/** Peak resident set size (VmHWM) of a live process, in KiB. */
export function peakRssKb(pid: number): number | null {
  try {
    const m = /VmHWM:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

/** CPU seconds used so far by each process named `postgres` on this host (server and backends), by PID. */
export function postgresCpuByPid(): Map<number, number> | null {
  let entries: string[];
  try {
    entries = readdirSync('/proc').filter((e) => /^\d+$/.test(e));
  } catch {
    return null;
  }
  const byPid = new Map<number, number>();
  for (const pid of entries) {
    try {
      const line = readFileSync(`/proc/${pid}/stat`, 'utf8');
      if (!line.includes('(postgres)')) continue;
      byPid.set(Number(pid), (statCpuTicks(line) ?? 0) / ticksPerSecond());
    } catch {
      // gone meanwhile
    }
  }
  return byPid.size > 0 ? byPid : null;
}

/** CPU seconds used so far by every process named `postgres` on this host (their sum; see postgresCpuDelta). */
export function postgresCpuSecs(): number | null {
  const byPid = postgresCpuByPid();
  if (byPid === null) return null;
  let secs = 0;
  for (const v of byPid.values()) secs += v;
  return secs;
}

/**
 * CPU the postgres processes spent between two readings: per PID, what it used since
 * the first reading (all of it, for one started since). A backend that exited in
 * between takes its share with it, so this can undercount, never go negative.
 */
export function postgresCpuDelta(before: Map<number, number> | null, after: Map<number, number> | null): number | null {
  if (before === null || after === null) return null;
  let secs = 0;
  for (const [pid, now] of after) secs += Math.max(0, now - (before.get(pid) ?? 0));
  return Number(secs.toFixed(2));
}

/** Redis server CPU seconds so far (INFO cpu: used_cpu_user + used_cpu_sys). */
export async function redisCpuSecs(redis: RedisConnection): Promise<number | null> {
  try {
    const info = String(await send(redis, ['INFO', 'cpu']));
    const user = /used_cpu_user:([\d.]+)/.exec(info)?.[1];
    const sys = /used_cpu_sys:([\d.]+)/.exec(info)?.[1];
    return user === undefined || sys === undefined ? null : Number(user) + Number(sys);
  } catch {
    return null;
  }
}

/** Busy and total jiffies of all cores since boot (/proc/stat). */
export function hostCpuTimes(): { busy: number; total: number } | null {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n')[0]!;
    const v = line.trim().split(/\s+/).slice(1).map(Number);
    const total = v.reduce((a, b) => a + b, 0);
    const idle = (v[3] ?? 0) + (v[4] ?? 0); // idle + iowait
    return { busy: total - idle, total };
  } catch {
    return null;
  }
}

const diff = (a: number | null, b: number | null) => (a === null || b === null ? null : Number((b - a).toFixed(2)));

/**
 * CPU spent during one stage: `start()` before, `stop(enginePid)` after (while the
 * engine process still lives). The engine's figure is its whole life so far.
 */
export class CpuMeter {
  private constructor(
    private readonly redis: RedisConnection,
    private readonly redisAt: number | null,
    private readonly postgresAt: Map<number, number> | null,
    private readonly hostAt: { busy: number; total: number } | null,
  ) {}

  static async start(redis: RedisConnection): Promise<CpuMeter> {
    return new CpuMeter(redis, await redisCpuSecs(redis), postgresCpuByPid(), hostCpuTimes());
  }

  async stop(enginePid?: number): Promise<CpuFigures> {
    const engine = enginePid === undefined ? null : processCpuSecs(enginePid);
    const host = hostCpuTimes();
    const hostBusyPct =
      this.hostAt && host && host.total > this.hostAt.total
        ? Number(((100 * (host.busy - this.hostAt.busy)) / (host.total - this.hostAt.total)).toFixed(1))
        : null;
    return {
      engineSecs: engine === null ? null : Number(engine.toFixed(2)),
      redisSecs: diff(this.redisAt, await redisCpuSecs(this.redis)),
      postgresSecs: postgresCpuDelta(this.postgresAt, postgresCpuByPid()),
      hostBusyPct,
    };
  }
}
