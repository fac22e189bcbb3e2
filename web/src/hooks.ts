import { useEffect, useRef, useState } from 'preact/hooks';
import type { Result } from './api.js';

/** Calls `load` now and every `everyMs` (one call at a time); the latest result, and whether the first is still coming. */
export function usePoll<T>(load: () => Promise<Result<T>>, everyMs: number, deps: readonly unknown[] = []): { result: Result<T> | undefined; reload: () => void } {
  const [result, setResult] = useState<Result<T> | undefined>(undefined);
  const [tick, setTick] = useState(0);
  const loadRef = useRef(load);
  loadRef.current = load;
  useEffect(() => {
    let stopped = false;
    let timer: number | undefined;
    const run = async () => {
      const r = await loadRef.current();
      if (stopped) return;
      setResult(r);
      timer = window.setTimeout(run, everyMs);
    };
    void run();
    return () => {
      stopped = true;
      window.clearTimeout(timer);
    };
  }, [everyMs, tick, ...deps]);
  return { result, reload: () => setTick((t) => t + 1) };
}
