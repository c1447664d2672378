/** Runs the client smoke scenario under Deno: its input as JSON in SMOKE_INPUT, its report as JSON on stdout. */
import { clientSmoke } from "./scenario.js";

declare const Deno: { env: { get(name: string): string | undefined } };

console.log(JSON.stringify(await clientSmoke(JSON.parse(Deno.env.get("SMOKE_INPUT")!))));
