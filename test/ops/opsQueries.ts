/** Every PromQL expression of the operations kit: the alerting rules' and the dashboard panels'. */
import { readFile } from "node:fs/promises";
import { parse } from "yaml";

const OPS = new URL("../../ops/", import.meta.url);

export interface OpsQuery {
  /** Where it comes from: `alert <name>` or `panel <title>`. */
  source: string;
  expr: string;
}

interface RuleFile {
  groups: { rules: { alert: string; expr: string }[] }[];
}
interface Dashboard {
  panels: { title: string; targets: { expr: string }[] }[];
}

export async function opsQueries(): Promise<OpsQuery[]> {
  const rules = parse(await readFile(new URL("prometheus/alerts.yaml", OPS), "utf8")) as RuleFile;
  const dashboard = JSON.parse(await readFile(new URL("grafana/dashboard.json", OPS), "utf8")) as Dashboard;
  return [
    ...rules.groups.flatMap((group) => group.rules.map((rule) => ({ source: `alert ${rule.alert}`, expr: rule.expr }))),
    ...dashboard.panels.flatMap((panel) => panel.targets.map(({ expr }) => ({ source: `panel ${panel.title}`, expr }))),
  ];
}
