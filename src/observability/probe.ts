/** One check of a readiness probe: ok, or why not. */
export interface ProbeCheck {
  ok: boolean;
  error?: string;
}

/** Runs one readiness check; never throws (a failure is `{ ok: false, error }`). */
export async function probeCheck(fn: () => Promise<unknown>): Promise<ProbeCheck> {
  try {
    await fn();
    return { ok: true };
  } catch (err) {
    return { ok: false, error: err instanceof Error ? err.message : String(err) };
  }
}
