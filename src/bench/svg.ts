/**
 * A small hand-written SVG bar chart (no dependency): a group of bars per category,
 * one per series, each value written above its bar, labelled axes with "nice" ticks
 * and a legend when there are several series. Pure: options in, SVG text out.
 */

/** One series of bars: a value per category. */
export interface ChartSeries {
  name: string;
  values: readonly number[];
  /** Bar colour (default: a fixed palette in order). */
  color?: string;
}

export interface BarChartOptions {
  title: string;
  /** Second title line (e.g. the machine and event count). */
  subtitle?: string;
  xLabel: string;
  yLabel: string;
  /** The categories along the x axis (e.g. the setting's values), in order. */
  categories: readonly string[];
  /** One bar per category per series, grouped by category; a legend when there are several. */
  series: readonly ChartSeries[];
  /** Default 720. */
  width?: number;
  /** Default 420. */
  height?: number;
  /** How a value is written above its bar and on the axis (default: whole number with thousands separators). */
  format?: (value: number) => string;
}

export const PALETTE = ['#4a78b5', '#e08a2c', '#5aa469', '#b54a6f'] as const;

export function escapeXml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&apos;' })[c]!);
}

/** A round tick step (1, 2 or 5 × 10^k) giving about `ticks` steps up to `max`. */
export function niceStep(max: number, ticks = 5): number {
  if (!(max > 0)) return 1;
  const raw = max / ticks;
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  const f = raw / magnitude;
  return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * magnitude;
}

const defaultFormat = (v: number) => Math.round(v).toLocaleString('en-US');
const fixed = (n: number) => Number(n.toFixed(1)).toString();

export function renderBarChart(options: BarChartOptions): string {
  const width = options.width ?? 720;
  const height = options.height ?? 420;
  const format = options.format ?? defaultFormat;
  const series = options.series;
  const legend = series.length > 1;
  const margin = { top: (options.subtitle ? 64 : 48) + (legend ? 22 : 0), right: 24, bottom: 64, left: 88 };
  const plotW = width - margin.left - margin.right;
  const plotH = height - margin.top - margin.bottom;
  const clean = (v: number | undefined) => (v !== undefined && Number.isFinite(v) && v > 0 ? v : 0);
  const highest = Math.max(0, ...series.flatMap((s) => s.values.map(clean)));
  const step = niceStep(highest);
  const yMax = Math.max(step, Math.ceil(highest / step) * step);
  const y = (v: number) => margin.top + plotH - (v / yMax) * plotH;
  const baseline = margin.top + plotH;

  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="Helvetica, Arial, sans-serif" font-size="12">`,
    `<title>${escapeXml(options.title)}</title>`,
    `<rect x="0" y="0" width="${width}" height="${height}" fill="#ffffff"/>`,
    `<text x="${width / 2}" y="22" text-anchor="middle" font-size="15" font-weight="bold">${escapeXml(options.title)}</text>`,
  );
  if (options.subtitle) out.push(`<text x="${width / 2}" y="42" text-anchor="middle" fill="#555555">${escapeXml(options.subtitle)}</text>`);
  if (legend) {
    const legendY = (options.subtitle ? 64 : 48) - 2;
    let x = margin.left;
    series.forEach((s, i) => {
      out.push(
        `<rect x="${x}" y="${legendY - 10}" width="12" height="12" fill="${s.color ?? PALETTE[i % PALETTE.length]}"/>`,
        `<text x="${x + 18}" y="${legendY}" fill="#333333">${escapeXml(s.name)}</text>`,
      );
      x += 18 + 7 * s.name.length + 24;
    });
  }

  // Grid lines and y ticks.
  for (let v = 0; v <= yMax + step / 2; v += step) {
    const ty = fixed(y(v));
    out.push(
      `<line x1="${margin.left}" y1="${ty}" x2="${margin.left + plotW}" y2="${ty}" stroke="#e4e4e4"/>`,
      `<text x="${margin.left - 8}" y="${ty}" text-anchor="end" dominant-baseline="middle" fill="#333333">${escapeXml(format(v))}</text>`,
    );
  }

  // Bars grouped by category, each value above its bar, the category below the group.
  const n = options.categories.length;
  const slot = n > 0 ? plotW / n : plotW;
  const groupW = Math.min(slot * 0.8, 90 * Math.max(1, series.length));
  const barW = Math.max(3, groupW / Math.max(1, series.length));
  const valueSize = series.length > 1 ? 10 : 12;
  options.categories.forEach((category, i) => {
    const cx = margin.left + slot * (i + 0.5);
    series.forEach((s, k) => {
      const value = s.values[i];
      const x = cx - groupW / 2 + k * barW;
      const top = y(clean(value));
      const shown = value === undefined || !Number.isFinite(value) ? '–' : format(value);
      out.push(
        `<rect x="${fixed(x + 1)}" y="${fixed(top)}" width="${fixed(barW - 2)}" height="${fixed(baseline - top)}" fill="${s.color ?? PALETTE[k % PALETTE.length]}"><title>${escapeXml(`${category}, ${s.name}: ${shown}`)}</title></rect>`,
        `<text x="${fixed(x + barW / 2)}" y="${fixed(top - 5)}" text-anchor="middle" font-size="${valueSize}" fill="#111111">${escapeXml(shown)}</text>`,
      );
    });
    out.push(`<text x="${fixed(cx)}" y="${baseline + 18}" text-anchor="middle" fill="#333333">${escapeXml(category)}</text>`);
  });

  // Axes and their titles.
  out.push(
    `<line x1="${margin.left}" y1="${margin.top}" x2="${margin.left}" y2="${baseline}" stroke="#333333"/>`,
    `<line x1="${margin.left}" y1="${baseline}" x2="${margin.left + plotW}" y2="${baseline}" stroke="#333333"/>`,
    `<text x="${margin.left + plotW / 2}" y="${height - 16}" text-anchor="middle" font-weight="bold">${escapeXml(options.xLabel)}</text>`,
    `<text x="18" y="${margin.top + plotH / 2}" text-anchor="middle" font-weight="bold" transform="rotate(-90 18 ${margin.top + plotH / 2})">${escapeXml(options.yLabel)}</text>`,
    '</svg>',
  );
  return `${out.join('\n')}\n`;
}
