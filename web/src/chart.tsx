import { useEffect, useRef } from 'preact/hooks';
import uPlot from 'uplot';

export interface ChartSeries {
  label: string;
  color: string;
  values: ReadonlyArray<number | null>;
}

/** A uPlot line chart of a few series over time (`times` in ms); resized with its box, updated in place. */
export function Chart(props: { times: readonly number[]; series: readonly ChartSeries[]; height?: number; testId?: string }) {
  const box = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  const shape = props.series.map((s) => s.label).join('|');

  useEffect(() => {
    const el = box.current!;
    const opts: uPlot.Options = {
      width: Math.max(200, el.clientWidth),
      height: props.height ?? 160,
      legend: { show: true },
      cursor: { drag: { x: false, y: false } },
      scales: { x: { time: true }, y: { range: (_u, _min, max) => [0, Math.max(1, max * 1.1)] } },
      axes: [{ stroke: '#8a94a6', grid: { stroke: '#eef1f5' } }, { stroke: '#8a94a6', grid: { stroke: '#eef1f5' }, size: 60 }],
      series: [{}, ...props.series.map((s) => ({ label: s.label, stroke: s.color, width: 2, spanGaps: false, points: { show: false } }))],
    };
    const u = new uPlot(opts, data(props.times, props.series), el);
    plot.current = u;
    const resize = new ResizeObserver(() => u.setSize({ width: Math.max(200, el.clientWidth), height: props.height ?? 160 }));
    resize.observe(el);
    return () => {
      resize.disconnect();
      u.destroy();
      plot.current = null;
    };
  }, [shape, props.height]);

  useEffect(() => {
    plot.current?.setData(data(props.times, props.series));
  }, [props.times, props.series]);

  return <div class="chart" ref={box} data-testid={props.testId} />;
}

function data(times: readonly number[], series: readonly ChartSeries[]): uPlot.AlignedData {
  return [times.map((t) => t / 1000), ...series.map((s) => s.values.map((v) => (v === null ? null : v)))] as uPlot.AlignedData;
}
