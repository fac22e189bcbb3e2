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

/**
 * A check that also fails while its server refuses the work for a fault that is not an
 * outage (the runner's `fault(server)`: a missing table, a permission, a read-only
 * server, a full disk): `SELECT 1` still answers then, but nothing can be written.
 */
export function unlessFault(check: ProbeCheck, fault: { code: string; message: string } | undefined): ProbeCheck {
  return fault ? { ok: false, error: `${fault.code}: ${fault.message}` } : check;
}
