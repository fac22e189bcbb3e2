/**
 * Summarises a V8 CPU profile (`node --cpu-prof`, a .cpuprofile file) into the
 * functions with the most self time. Pure.
 */

export interface CpuProfile {
  nodes: Array<{ id: number; callFrame: { functionName: string; url: string; lineNumber: number }; children?: number[] }>;
  samples?: number[];
  timeDeltas?: number[];
  startTime: number;
  endTime: number;
}

export interface ProfileEntry {
  /** `name (file:line)`, with the file relative to node_modules or dist where possible. */
  name: string;
  selfMs: number;
  selfPct: number;
}

export interface ProfileSummary {
  totalMs: number;
  /** Samples in no JavaScript: `(idle)`, `(program)`, `(garbage collector)` are kept as named. */
  top: ProfileEntry[];
  /** Self time grouped by where the code lives: tributary (dist/src), each node_modules package, node internals, V8 states. */
  byArea: ProfileEntry[];
}

function shortUrl(url: string): string {
  if (!url) return '';
  const nm = url.lastIndexOf('node_modules/');
  if (nm >= 0) return url.slice(nm + 'node_modules/'.length);
  const d = url.search(/\/(dist|src)\//);
  if (d >= 0) return url.slice(d + 1);
  return url.replace(/^file:\/\//, '');
}

/** Where a function's code lives. */
export function areaOf(url: string, functionName: string): string {
  if (!url) return functionName.startsWith('(') ? functionName : '(native)';
  if (url.startsWith('node:')) return 'node internals';
  const nm = url.lastIndexOf('node_modules/');
  if (nm >= 0) {
    const rest = url.slice(nm + 'node_modules/'.length).split('/');
    return rest[0]!.startsWith('@') ? `${rest[0]}/${rest[1]}` : rest[0]!;
  }
  if (/\/(dist|src)\//.test(url)) return 'tributary';
  return 'other';
}

export function summarizeCpuProfile(profile: CpuProfile, topN = 15): ProfileSummary {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const selfUs = new Map<number, number>();
  const samples = profile.samples ?? [];
  const deltas = profile.timeDeltas ?? [];
  for (let i = 0; i < samples.length; i++) selfUs.set(samples[i]!, (selfUs.get(samples[i]!) ?? 0) + Math.max(0, deltas[i] ?? 0));
  const totalUs = Math.max(1, [...selfUs.values()].reduce((a, b) => a + b, 0));
  const byName = new Map<string, number>();
  const byArea = new Map<string, number>();
  for (const [id, us] of selfUs) {
    const f = byId.get(id)?.callFrame;
    if (!f) continue;
    const fn = f.functionName || '(anonymous)';
    const where = shortUrl(f.url);
    const name = where ? `${fn} (${where}:${f.lineNumber + 1})` : fn;
    byName.set(name, (byName.get(name) ?? 0) + us);
    const area = areaOf(f.url, fn);
    byArea.set(area, (byArea.get(area) ?? 0) + us);
  }
  const entries = (m: Map<string, number>, n: number) =>
    [...m]
      .sort((a, b) => b[1] - a[1])
      .slice(0, n)
      .map(([name, us]) => ({ name, selfMs: Math.round(us / 100) / 10, selfPct: Math.round((1000 * us) / totalUs) / 10 }));
  return { totalMs: Math.round(totalUs / 1000), top: entries(byName, topN), byArea: entries(byArea, 12) };
}

export function formatProfileSummary(s: ProfileSummary): string {
  const line = (e: ProfileEntry) => `${e.selfPct.toFixed(1).padStart(5)}%  ${e.selfMs.toFixed(0).padStart(7)} ms  ${e.name}`;
  return [`CPU profile: ${s.totalMs} ms sampled`, 'By area (self time):', ...s.byArea.map(line), 'Top functions (self time):', ...s.top.map(line)].join('\n');
}
