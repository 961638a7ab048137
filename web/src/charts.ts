/** Charts: uPlot for the time series (small, canvas, no dependencies), a plain SVG polyline for sparklines. */
import { html } from 'htm/preact';
import { useEffect, useRef } from 'preact/hooks';
import uPlot from 'uplot';
import { rate, size } from './format.js';

export interface SeriesSpec {
  readonly label: string;
  readonly stroke: string;
  readonly fill?: string;
  readonly bars?: boolean;
}

export interface ChartProps {
  readonly title: string;
  /** x in seconds since the epoch, then one array per series. */
  readonly data: uPlot.AlignedData;
  readonly series: readonly SeriesSpec[];
  readonly unit: 'rate' | 'bytes' | 'count';
  readonly height?: number;
  readonly testId?: string;
  /** Seconds of room left and right of the data (hourly bars would be cut in half at the edges). */
  readonly padX?: number;
}

const formatValue = (unit: ChartProps['unit'], v: number | null): string =>
  v === null ? '–' : unit === 'rate' ? rate(v) : unit === 'bytes' ? size(v) : String(Math.round(v));

export function Chart(props: ChartProps) {
  const box = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  const seriesKey = props.series.map((s) => s.label).join('|');

  useEffect(() => {
    const el = box.current;
    if (el === null) return undefined;
    const bars = uPlot.paths.bars?.({ size: [0.6, 40] });
    const opts: uPlot.Options = {
      width: Math.max(200, el.clientWidth),
      height: props.height ?? 180,
      legend: { show: true },
      cursor: { drag: { x: false, y: false } },
      scales: {
        x: props.padX === undefined ? { time: true } : { time: true, range: (_u, min, max) => [min - (props.padX ?? 0), max + (props.padX ?? 0)] },
        y: { range: (_u, _min, max) => [0, Math.max(1, max * 1.1)] },
      },
      axes: [
        { stroke: 'currentColor', grid: { stroke: 'rgba(128,128,128,0.15)' } },
        {
          stroke: 'currentColor',
          grid: { stroke: 'rgba(128,128,128,0.15)' },
          size: 80,
          values: (_u, splits) => splits.map((v) => formatValue(props.unit, v)),
        },
      ],
      series: [
        {},
        ...props.series.map((s) => ({
          label: s.label,
          stroke: s.stroke,
          fill: s.fill,
          width: 2,
          points: { show: false },
          value: (_u: uPlot, v: number | null) => formatValue(props.unit, v),
          ...(s.bars && bars !== undefined ? { paths: bars } : {}),
        })),
      ],
    };
    const u = new uPlot(opts, props.data, el);
    plot.current = u;
    const resize = new ResizeObserver(() => u.setSize({ width: Math.max(200, el.clientWidth), height: props.height ?? 180 }));
    resize.observe(el);
    return () => {
      resize.disconnect();
      u.destroy();
      plot.current = null;
    };
  }, [seriesKey, props.unit, props.height, props.padX]);

  useEffect(() => {
    plot.current?.setData(props.data);
  }, [props.data]);

  return html`<figure class="chart" data-testid=${props.testId}>
    <figcaption>${props.title}</figcaption>
    <div ref=${box} class="chart-box" role="img" aria-label=${props.title}></div>
  </figure>`;
}

/** A tiny line of the last samples (in and out), scaled to its own maximum. */
export function Sparkline({ a, b, label }: { a: readonly number[]; b: readonly number[]; label: string }) {
  const w = 96;
  const h = 24;
  const max = Math.max(1, ...a, ...b);
  const n = Math.max(a.length, b.length, 2);
  const points = (values: readonly number[]): string =>
    values.map((v, i) => `${((i + n - values.length) / (n - 1)) * w},${h - 1 - (v / max) * (h - 2)}`).join(' ');
  return html`<svg class="spark" viewBox="0 0 ${w} ${h}" width=${w} height=${h} role="img" aria-label=${label}>
    <polyline class="spark-in" fill="none" points=${points(a)} />
    <polyline class="spark-out" fill="none" points=${points(b)} />
  </svg>`;
}
