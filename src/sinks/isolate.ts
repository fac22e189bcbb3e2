/**
 * Poison isolation by halving, the one implementation every sink uses: a part the
 * server refuses for its content is split in halves, recursively, until the refused
 * items stand alone; each of those is handed to `alone` (to be rejected or recorded),
 * every other item is written. Any other failure is thrown (the caller retries). With
 * `done`, finished parts are remembered by their path (`<id>.0.1`...), so a retry after
 * a failure halfway redoes nothing that committed.
 */
export interface Halving<P, R> {
  /** Writes the whole part; throws when it fails. */
  attempt(part: P, path: string): Promise<R>;
  /** A failure of the part's content (isolate it), as opposed to one of the server (throw). */
  isContentError(err: unknown): boolean;
  size(part: P): number;
  split(part: P): [P, P];
  /** A single item the server refused. */
  alone(part: P, path: string, err: unknown): Promise<R>;
  combine(a: R, b: R): R;
  /** Runs before a refused part is split (to undo what its attempt left behind). */
  refused?(part: P, path: string, err: unknown): Promise<void>;
  /** Finished parts by path, kept across retries. */
  done?: Map<string, R>;
}

export async function isolateByHalving<P, R>(part: P, path: string, h: Halving<P, R>): Promise<R> {
  const finished = h.done?.get(path);
  if (finished !== undefined) return finished;
  let result: R;
  try {
    result = await h.attempt(part, path);
  } catch (err) {
    if (!h.isContentError(err)) throw err;
    await h.refused?.(part, path, err);
    if (h.size(part) <= 1) {
      result = await h.alone(part, path, err);
    } else {
      const [a, b] = h.split(part);
      result = h.combine(await isolateByHalving(a, `${path}.0`, h), await isolateByHalving(b, `${path}.1`, h));
    }
  }
  h.done?.set(path, result);
  return result;
}

/** Halves of an array (the first gets the odd one). Pure. */
export function halves<T>(items: readonly T[]): [T[], T[]] {
  const mid = Math.ceil(items.length / 2);
  return [items.slice(0, mid), items.slice(mid)];
}
