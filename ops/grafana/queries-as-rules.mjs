// Prints the dashboard's queries as a Prometheus rule file (one recording rule each), so that
// `promtool check rules` checks their syntax as it does the alerts': node ops/grafana/queries-as-rules.mjs > f.json
import { readFileSync } from "node:fs";

const dashboard = JSON.parse(readFileSync(new URL("dashboard.json", import.meta.url), "utf8"));
const rules = dashboard.panels.flatMap((panel) =>
  panel.targets.map((target) => ({ record: `panel_${panel.id}_${target.refId}`, expr: target.expr })),
);
console.log(JSON.stringify({ groups: [{ name: "dashboard", rules }] }, null, 2));
