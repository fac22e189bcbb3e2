/** 850 ms, 12.3 s, 4m 05s, 2h 10m, 3d 04h (as the CLI prints them). */
export function ms(v: number | null | undefined): string {
  if (v === null || v === undefined) return '–';
  if (v < 0) return 'never';
  if (v < 1000) return `${Math.round(v)} ms`;
  if (v < 60_000) return `${(v / 1000).toFixed(1)} s`;
  const s = Math.floor(v / 1000);
  const two = (n: number) => String(n).padStart(2, '0');
  if (s < 3600) return `${Math.floor(s / 60)}m ${two(s % 60)}s`;
  if (s < 86_400) return `${Math.floor(s / 3600)}h ${two(Math.floor(s / 60) % 60)}m`;
  return `${Math.floor(s / 86_400)}d ${two(Math.floor(s / 3600) % 24)}h`;
}

export function n(v: number | null | undefined, digits = 0): string {
  if (v === null || v === undefined) return '–';
  return v.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: 0 });
}

export function when(iso: string | number | null | undefined): string {
  if (iso === null || iso === undefined) return '–';
  const d = new Date(iso);
  return `${d.toISOString().slice(0, 19).replace('T', ' ')}Z`;
}

export function bytes(b: number): string {
  if (b < 1024) return `${b} B`;
  if (b < 1024 ** 2) return `${(b / 1024).toFixed(0)} kB`;
  return `${(b / 1024 ** 2).toFixed(1)} MB`;
}

export function usd(v: number): string {
  return v.toLocaleString('en-US', { style: 'currency', currency: 'USD' });
}
