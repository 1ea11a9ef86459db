/**
 * A job's stages as bars (SVG, so no inline styles for the CSP to refuse): one row per stage,
 * its length its seconds, cache hits marked. The job record has each stage's duration, not its
 * start, so stages are drawn one after another in plan order, not as they overlapped.
 */
import type { JobRecord } from "../records.js";
import { seconds } from "../format.js";

const ROW = 22;
const LABEL = 170;
const WIDTH = 720;

export function StageTimeline(props: { stages: JobRecord["kiln"]["stages"] }) {
  const stages = props.stages;
  if (stages.length === 0) return <p>No stages recorded yet.</p>;
  const total = stages.reduce((a, s) => a + s.seconds, 0) || 1;
  const scale = (WIDTH - LABEL - 80) / total;
  let at = 0;
  return (
    <svg class="timeline" viewBox={`0 0 ${WIDTH} ${stages.length * ROW + 4}`} role="img" aria-label={`Stage timeline: ${stages.length} stages, ${seconds(total)} in all`}>
      {stages.map((s, n) => {
        const x = LABEL + at * scale;
        const w = Math.max(2, s.seconds * scale);
        at += s.seconds;
        const y = n * ROW + 2;
        return (
          <g key={s.name + n}>
            <title>{`${s.name}: ${seconds(s.seconds)}${s.cached ? " (cache hit)" : ""}`}</title>
            <text x={0} y={y + 15} class="label">
              {s.name}
            </text>
            <rect x={x} y={y + 3} width={w} height={ROW - 6} class={s.cached ? "bar cached" : "bar"} />
            <text x={x + w + 4} y={y + 15} class="value">
              {seconds(s.seconds)}
              {s.cached ? " cached" : ""}
            </text>
          </g>
        );
      })}
    </svg>
  );
}
