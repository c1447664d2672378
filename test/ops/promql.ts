/** The metric names a PromQL expression reads. Enough PromQL for rules and panels, not a parser. */

/** Words that stand where a metric name could: operators and modifiers. */
const KEYWORDS = new Set(["and", "or", "unless", "bool", "offset", "inf", "nan"]);

export function metricNames(expr: string): string[] {
  const bare = expr
    .replace(/"(?:[^"\\]|\\.)*"/g, '""') // strings (label values) first: they may hold braces
    .replace(/\{[^}]*\}/g, "") // label matchers
    .replace(/\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, "") // label lists
    .replace(/\b(?:group_left|group_right)\b/g, "") // and the matching modifiers without one
    .replace(/\[[^\]]*\]/g, ""); // range and subquery durations
  // A name followed by "(" is a function.
  const words = [...bare.matchAll(/\b[a-zA-Z_:][a-zA-Z0-9_:]*\b(?!\s*\()/g)].map(([word]) => word);
  return [...new Set(words.filter((word) => !KEYWORDS.has(word)))];
}

/**
 * The sample names an exposition offers: those it has samples of, and every family it declares
 * (`# TYPE`), with a histogram's `_bucket`, `_sum` and `_count` (a labelled counter shows no sample
 * until first counted).
 */
export function exposedNames(exposition: string): Set<string> {
  const names = new Set<string>();
  for (const line of exposition.split("\n")) {
    const declared = /^# TYPE (\S+) (\S+)$/.exec(line);
    if (declared) {
      const [, family, type] = declared;
      // The server has counters, gauges and histograms (no summaries).
      const suffixes = type === "histogram" ? ["_bucket", "_sum", "_count"] : [""];
      for (const suffix of suffixes) names.add(family + suffix);
    } else if (line && !line.startsWith("#")) {
      names.add(/^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(line)![0]);
    }
  }
  return names;
}
