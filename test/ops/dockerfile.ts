/** Reads a Dockerfile into its stages and instructions: enough for the tests of ours, not every Dockerfile. */

export interface Instruction {
  keyword: string;
  args: string;
}

export interface Stage {
  /** The `FROM` line's arguments (image, and `AS name`). */
  from: string;
  instructions: Instruction[];
}

export function parseDockerfile(text: string): Stage[] {
  const stages: Stage[] = [];
  // Continuation lines join their instruction; comments are dropped.
  const lines = text
    .replace(/\\\n/g, " ")
    .split("\n")
    .map((line) => line.trim())
    .filter((line) => line && !line.startsWith("#"));
  for (const line of lines) {
    const [, keyword, args] = /^(\S+)\s+(.*)$/.exec(line) ?? [];
    if (!keyword || args === undefined) throw new Error(`not an instruction: ${line}`);
    if (keyword.toUpperCase() === "FROM") stages.push({ from: args, instructions: [] });
    else if (!stages.length) throw new Error(`${keyword} before FROM`);
    else stages.at(-1)!.instructions.push({ keyword: keyword.toUpperCase(), args });
  }
  return stages;
}

/** The last instruction `keyword` of a stage, or undefined. */
export const lastOf = (stage: Stage, keyword: string) =>
  stage.instructions.findLast((i) => i.keyword === keyword)?.args;

/** The exec (JSON array) form of CMD and HEALTHCHECK CMD; the shell form is refused (signals would reach a shell). */
export function execForm(args: string): string[] {
  const json = args.replace(/^(?:--\S+\s+)*CMD\s+/, "");
  const command = JSON.parse(json) as unknown;
  if (!Array.isArray(command) || !command.every((part) => typeof part === "string")) {
    throw new Error(`not the exec form: ${args}`);
  }
  return command;
}

/** `ENV A=1 B=2` of a stage as variables (no quoting: ours need none). */
export function envOf(stage: Stage): Record<string, string> {
  const env: Record<string, string> = {};
  for (const { keyword, args } of stage.instructions) {
    if (keyword !== "ENV") continue;
    for (const pair of args.split(/\s+/)) {
      const [name, ...value] = pair.split("=");
      env[name!] = value.join("=");
    }
  }
  return env;
}
