import { describe, expect, it } from 'vitest';
import { halves, isolateByHalving, type Halving } from '../../src/sinks/isolate.js';

/** A fake server that refuses any part containing a poison item (and, when told, fails once for another reason). */
function fakeServer(poison: Set<number>, options: { failOnceAt?: string } = {}) {
  const attempts: string[] = [];
  const written: number[] = [];
  let failed = false;
  const h: Halving<number[], { written: number[]; refused: number[] }> = {
    async attempt(part, path) {
      attempts.push(path);
      if (options.failOnceAt === path && !failed) {
        failed = true;
        throw Object.assign(new Error('connection lost'), { content: false });
      }
      if (part.some((n) => poison.has(n))) throw Object.assign(new Error('refused'), { content: true });
      written.push(...part);
      return { written: [...part], refused: [] };
    },
    isContentError: (err) => (err as { content?: boolean }).content === true,
    size: (part) => part.length,
    split: (part) => halves(part),
    alone: async (part) => ({ written: [], refused: [...part] }),
    combine: (a, b) => ({ written: [...a.written, ...b.written], refused: [...a.refused, ...b.refused] }),
  };
  return { h, attempts, written };
}

describe('isolateByHalving', () => {
  it('writes everything but the refused items, which end up alone', async () => {
    const items = Array.from({ length: 10 }, (_, i) => i);
    const { h, written } = fakeServer(new Set([3, 7]));
    const r = await isolateByHalving(items, 'b', h);
    expect(r.refused).toEqual([3, 7]);
    expect(r.written.sort((a, b) => a - b)).toEqual([0, 1, 2, 4, 5, 6, 8, 9]);
    expect(written.sort((a, b) => a - b)).toEqual([0, 1, 2, 4, 5, 6, 8, 9]);
  });

  it('one try when nothing is refused; halves are named by path', async () => {
    const { h, attempts } = fakeServer(new Set([0]));
    await isolateByHalving([0, 1, 2, 3], 'b', h);
    expect(attempts).toEqual(['b', 'b.0', 'b.0.0', 'b.0.1', 'b.1']);
    const clean = fakeServer(new Set());
    await isolateByHalving([0, 1, 2, 3], 'b', clean.h);
    expect(clean.attempts).toEqual(['b']);
  });

  it('a failure that is not about content is thrown; with `done`, the retry redoes only what did not finish', async () => {
    const server = fakeServer(new Set([0]), { failOnceAt: 'b.1' });
    const done = new Map();
    server.h.done = done;
    await expect(isolateByHalving([0, 1, 2, 3], 'b', server.h)).rejects.toThrow('connection lost');
    expect(server.written).toEqual([1]);
    const r = await isolateByHalving([0, 1, 2, 3], 'b', server.h);
    expect(r).toEqual({ written: [1, 2, 3], refused: [0] });
    expect(server.written).toEqual([1, 2, 3]);
    // b.0 (and below) were done: the retry tried only b (refused again) and b.1.
    expect(server.attempts.slice(5)).toEqual(['b', 'b.1']);
  });
});
