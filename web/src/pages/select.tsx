import { get } from '../api.js';
import { usePoll } from '../hooks.js';
import type { Overview } from '../types.js';

/** The stream keys (a partitioned stream's partitions) and their groups found on the servers, to pick one. */
export function PipelineSelect(props: { stream: string; group: string; onChange: (stream: string, group: string) => void }) {
  const { result } = usePoll(() => get<Overview>('/api/overview'), 10_000);
  const options: Array<{ stream: string; group: string }> = [];
  if (result?.ok) {
    for (const p of result.data.pipelines) for (const part of p.parts) for (const g of p.groups) options.push({ stream: part.key, group: g });
  }
  if (!options.some((o) => o.stream === props.stream && o.group === props.group)) options.unshift({ stream: props.stream, group: props.group });
  const value = `${props.stream}\u0000${props.group}`;
  return (
    <label class="select">
      pipeline{' '}
      <select
        value={value}
        data-testid="pipeline-select"
        onChange={(e) => {
          const [s, g] = (e.target as HTMLSelectElement).value.split('\u0000');
          props.onChange(s!, g!);
        }}
      >
        {options.map((o) => (
          <option value={`${o.stream}\u0000${o.group}`}>
            {o.stream} · group {o.group}
          </option>
        ))}
      </select>
    </label>
  );
}

/** Puts the page's parameters in the address (so a reload or a link keeps them). */
export function setHashParams(page: string, params: Record<string, string>): void {
  const q = new URLSearchParams(Object.entries(params).filter(([, v]) => v !== '')).toString();
  history.replaceState(null, '', `#/${page}${q ? `?${q}` : ''}`);
}
