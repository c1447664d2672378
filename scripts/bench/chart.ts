import { parse, View } from "vega";
import { compile, type TopLevelSpec } from "vega-lite";
import type { ScenarioRow } from "./report.js";

/** One bar: a figure of one scenario in one panel, the server's or its baseline's. */
export interface Bar {
  panel: string;
  scenario: string;
  who: "server" | "baseline";
  value: number;
  text: string;
}

const PANELS = [
  { title: "Throughput (req/s)", unit: "req/s", digits: 0 },
  { title: "p99 latency (ms)", unit: "ms", digits: 1 },
  { title: "Memory (MB): server vs its limit", unit: "MB", digits: 0 },
] as const;

/**
 * The bars of the chart: throughput and p99 of every row that has them, server next to baseline, and
 * the memory rows' figure next to its limit. A figure that was not measured (NaN, absent) has no bar.
 */
export function chartBars(rows: ScenarioRow[]): Bar[] {
  const bars: Bar[] = [];
  for (const row of rows) {
    const scenario = `${row.scenario}: ${fixed(row.ratio, 2)} ${row.ratioLabel}`;
    const add = (panel: (typeof PANELS)[number], who: Bar["who"], value: number | undefined, label?: string) => {
      if (value === undefined || !Number.isFinite(value)) return;
      const text = `${fixed(value, panel.digits)}${label ? ` ${label}` : ""}`;
      bars.push({ panel: panel.title, scenario, who, value, text });
    };
    const [throughput, latency, memory] = PANELS;
    add(throughput, "server", row.server.rps);
    add(throughput, "baseline", row.baseline.rps, row.baseline.label);
    add(latency, "server", row.server.p99Ms);
    add(latency, "baseline", row.baseline.p99Ms, row.baseline.label);
    if (row.memoryMb) {
      add(memory, "server", row.memoryMb.value);
      add(memory, "baseline", row.memoryMb.limit, "limit");
    }
  }
  return bars;
}

/** The chart as SVG, rendered headlessly by Vega from a Vega-Lite spec: one panel per measure that has bars. */
export async function chartSvg(rows: ScenarioRow[]): Promise<string> {
  const bars = chartBars(rows);
  const panels = PANELS.filter((panel) => bars.some((bar) => bar.panel === panel.title));
  const spec: TopLevelSpec = {
    $schema: "https://vega.github.io/schema/vega-lite/v6.json",
    config: { font: "sans-serif", axis: { labelLimit: 600 } },
    vconcat: panels.map((panel) => ({
      title: panel.title,
      data: { values: bars.filter((bar) => bar.panel === panel.title) },
      width: 520,
      height: { step: 12 },
      encoding: {
        // sort null keeps the table's order
        y: { field: "scenario", type: "nominal", sort: null, title: null },
        yOffset: { field: "who", sort: ["server", "baseline"] },
        x: { field: "value", type: "quantitative", title: panel.unit },
      },
      layer: [
        {
          mark: "bar",
          encoding: {
            color: {
              field: "who",
              title: null,
              scale: { domain: ["server", "baseline"], range: ["#3b6ea8", "#b0b0b0"] },
            },
          },
        },
        {
          mark: { type: "text", align: "left", dx: 3, fontSize: 9, aria: false },
          encoding: { text: { field: "text" } },
        },
      ],
    })),
  };
  const view = new View(parse(compile(spec).spec), { renderer: "none" });
  try {
    return `${await view.toSVG()}\n`;
  } finally {
    view.finalize();
  }
}

export const fixed = (value: number, digits = 1) => (Number.isFinite(value) ? value.toFixed(digits) : "-");
