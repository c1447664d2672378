import { mkdir, writeFile } from "node:fs/promises";
import { chartSvg, fixed } from "./chart.js";

export interface ScenarioRow {
  scenario: string;
  server: { rps: number; p50Ms: number; p99Ms: number };
  baseline: { label: string; rps: number; p50Ms?: number; p99Ms?: number };
  /** server / baseline throughput (or the scenario's own ratio, e.g. growth). */
  ratio: number;
  ratioLabel: string;
  target?: string;
  met?: boolean;
  /** A memory figure and the most it may be, charted in the memory panel. */
  memoryMb?: { value: number; limit: number };
}

/** The table printed at the end of a run. */
export function printTable(rows: ScenarioRow[]): void {
  const header = [
    "scenario",
    "server req/s",
    "p50 ms",
    "p99 ms",
    "baseline",
    "baseline req/s",
    "ratio",
    "target",
    "met",
  ];
  const lines = rows.map((row) => [
    row.scenario,
    fixed(row.server.rps, 0),
    fixed(row.server.p50Ms, 2),
    fixed(row.server.p99Ms, 2),
    row.baseline.label,
    fixed(row.baseline.rps, 0),
    `${fixed(row.ratio, 2)} ${row.ratioLabel}`,
    row.target ?? "",
    row.met === undefined ? "" : row.met ? "yes" : "NO",
  ]);
  const widths = header.map((title, i) => Math.max(title.length, ...lines.map((line) => line[i]!.length)));
  const format = (cells: string[]) => cells.map((cell, i) => cell.padEnd(widths[i]!)).join(" | ");
  console.log(format(header));
  console.log(widths.map((width) => "-".repeat(width)).join("-|-"));
  for (const line of lines) console.log(format(line));
}

/** Writes results.json and a bar chart (throughput, p99 and memory per scenario, server next to baseline). */
export async function writeResults(dir: string, results: object, rows: ScenarioRow[]): Promise<void> {
  await mkdir(dir, { recursive: true });
  await writeFile(`${dir}/results.json`, JSON.stringify(results, null, 2));
  await writeFile(`${dir}/results.svg`, await chartSvg(rows));
}
